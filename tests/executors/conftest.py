"""Fixtures for the executor tests: a small generated and profiled family, built once per
session (a few seconds) by the onnxruntime/tensorrt/neuron tests that ask for ``built``."""

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

    # resnet-s (about 2 ms a query on one core) is slow enough to overload in a short test.
    models = builtin_family(["digits-linear", "resnet-tiny", "resnet-s"])
    folder = tmp_path_factory.mktemp("variants")
    path, report = build_catalog(
        models, folder, cores=[1], max_batch=4, ort_precisions=["fp32", "fp32-opt"], warmup=1, repeats=4
    )
    return Built(folder, path, report, {m.name: m for m in models})
