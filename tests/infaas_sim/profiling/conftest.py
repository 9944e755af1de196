"""A small generated and profiled family, built once per session (a few seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Built:
    folder: Path
    catalog: Path
    report: Any
    models: dict[str, Any]


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    pytest.importorskip("onnxruntime", reason="the real-execution extra (onnx, onnxruntime) is not installed")
    pytest.importorskip("sklearn", reason="the real-execution extra (scikit-learn) is not installed")
    from infaas_sim.profiling.build import build_catalog
    from infaas_sim.profiling.zoo import builtin_family

    models = builtin_family(["digits-mlp-s", "resnet-tiny"])
    folder = tmp_path_factory.mktemp("variants")
    path, report = build_catalog(models, folder, cores=[1, 2], max_batch=4, warmup=1, repeats=4)
    return Built(folder, path, report, {m.name: m for m in models})
