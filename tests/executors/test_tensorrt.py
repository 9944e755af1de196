"""The tensorrt executor: engines generated per precision and max batch, profiled, and a real
replay on the GPU. Skips with the reason when TensorRT or a CUDA device is absent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infaas_sim.catalog import Catalog
from infaas_sim.clock import WallClockEnvironment
from infaas_sim.errors import ConfigError
from infaas_sim.executor import make_executor
from infaas_sim.hardware import HardwareKind
from infaas_sim.policy import make_policy
from infaas_sim.query import Application, Level, Requirement
from infaas_sim.realtime import backend_absent
from infaas_sim.simulation import RunSpec, Workload, run_simulation

ABSENT = backend_absent("tensorrt")


def test_absent_tensorrt_is_a_clear_error(tmp_path: Path) -> None:
    if ABSENT is None:
        pytest.skip("TensorRT is installed here: the absent path cannot be shown")
    with pytest.raises(ConfigError, match=r"executor tensorrt: (TensorRT is not installed|.*CUDA)"):
        make_executor("tensorrt", catalog=str(tmp_path / "catalog.csv"))


@pytest.mark.skipif(ABSENT is not None, reason=f"tensorrt backend absent: {ABSENT}")
def test_engines_generate_profile_and_serve(tmp_path: Path, h: Any, conserved: Any) -> None:
    from infaas_sim.profiling.build import build_catalog
    from infaas_sim.profiling.zoo import builtin_family

    path, _ = build_catalog(
        builtin_family(["resnet-s"]), tmp_path, cores=[1], max_batch=8, backends=["onnxruntime", "tensorrt"],
        ort_precisions=["fp32", "int8-static"], warmup=2, repeats=10,
    )  # fmt: skip
    cat = Catalog.load(path)
    trt = [v for v in cat.variants if v.framework == "tensorrt"]
    assert {v.precision for v in trt} >= {"fp32", "fp16"}
    assert all(v.hardware is HardwareKind.GPU for v in trt)
    vid = "resnet-s-trt-fp16-b8"
    assert cat[vid].latency_ms(8) < cat["resnet-s-ort-fp32-1c"].latency_ms(8)
    t = h.poisson_times(200, 2.0, seed=1)
    app = Application("a", Requirement(Level.VARIANT, vid))
    ex = make_executor("tensorrt", catalog=str(path), preload=[vid])
    res = run_simulation(cat, Workload([app], t, np.zeros(len(t), dtype=np.int64)),
                         make_policy("static", variants={"a": vid}, replicas=1), ex, h.spec(),
                         RunSpec(duration_s=2.0), env=WallClockEnvironment())  # fmt: skip
    conserved(res, len(t))
    assert (res.queries["status"] == "served").all() and ex.stats.lazy_opens == 0
