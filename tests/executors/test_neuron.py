"""The neuron executor: models compiled per NeuronCore count from a PyTorch module, and a real
replay on Inferentia. Skips with the reason when the Neuron SDK is absent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infaas_sim.catalog import Catalog
from infaas_sim.clock import WallClockEnvironment
from infaas_sim.errors import ConfigError
from infaas_sim.executor import make_executor
from infaas_sim.policy import make_policy
from infaas_sim.query import Application, Level, Requirement
from infaas_sim.realtime import backend_absent
from infaas_sim.simulation import RunSpec, Workload, run_simulation

ABSENT = backend_absent("neuron")


def test_absent_neuron_is_a_clear_error(tmp_path: Path) -> None:
    if ABSENT is None:
        pytest.skip("the Neuron SDK is installed here: the absent path cannot be shown")
    with pytest.raises(ConfigError, match=r"executor neuron: the AWS Neuron SDK"):
        make_executor("neuron", catalog=str(tmp_path / "catalog.csv"))


@pytest.mark.skipif(ABSENT is not None, reason=f"neuron backend absent: {ABSENT}")
def test_compiled_models_profile_and_serve(tmp_path: Path, h: Any, conserved: Any) -> None:
    import torch

    from infaas_sim.profiling.build import build_catalog
    from infaas_sim.profiling.zoo import from_torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(16, 10))  # fmt: skip
    model = from_torch(net, torch.rand(4, 3, 32, 32), "tiny-cnn", "t", "d", declared_accuracy=0.5)
    path, _ = build_catalog([model], tmp_path, cores=[1], max_batch=4, backends=["onnxruntime", "neuron"],
                                 ort_precisions=["fp32"], warmup=2, repeats=5)  # fmt: skip
    cat = Catalog.load(path)
    vid = "tiny-cnn-neuron-1nc"
    assert cat[vid].hardware.value == "inferentia"
    t = h.poisson_times(50, 2.0, seed=1)
    app = Application("a", Requirement(Level.VARIANT, vid))
    ex = make_executor("neuron", catalog=str(path), preload=[vid])
    res = run_simulation(cat, Workload([app], t, np.zeros(len(t), dtype=np.int64)),
                         make_policy("static", variants={"a": vid}, replicas=1), ex, h.spec(),
                         RunSpec(duration_s=2.0), env=WallClockEnvironment())  # fmt: skip
    conserved(res, len(t))
    assert (res.queries["status"] == "served").all()
