"""The fidelity experiment end to end, at toy scale: one trace real and simulated, every query
accounted for in every arm, the table and outputs written."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import simpy

from experiments.fidelity import ResampledServiceExecutor, load_config, main, run_fidelity, sim_catalog
from infaas_sim.catalog import Catalog
from infaas_sim.clock import Clock
from infaas_sim.errors import ConfigError


@pytest.fixture(scope="module")
def fidelity(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    pytest.importorskip("onnxruntime", reason="the real-execution extra (onnxruntime) is not installed")
    pytest.importorskip("sklearn", reason="the real-execution extra (scikit-learn) is not installed")
    tmp = tmp_path_factory.mktemp("fidelity")
    cfg = load_config([
        "model=resnet-tiny", "max_batch=2", "loads=[0.3]", "duration_s=1.5", "profile_repeats=5", "figures=false",
        f"variants_dir={tmp / 'variants'}", f"out={tmp / 'out'}", "slo_ms=20", "serving_repeats=10",
        "calibration_s=0.5",
    ])  # fmt: skip
    return tmp / "out", run_fidelity(cfg)


def test_every_arm_replays_the_same_trace_and_writes_its_outputs(fidelity: tuple[Path, dict]) -> None:
    out, summary = fidelity
    (res,) = summary["results"]
    assert res["queries"] > 10
    executors = {"real": "onnxruntime", "sim_raw": "sim", "sim_calibrated": "sim", "sim_served": "sim-replay",
                 "sim_replay": "sim-replay"}  # fmt: skip
    for arm, executor in executors.items():
        s = json.loads((out / "load0.3" / arm / "summary.json").read_text())
        assert s["queries"] == res["queries"]
        assert s["served"] + s["rejected"] + s["failed"] == res["queries"]
        assert s["executor"] == executor


def test_the_table_compares_each_metric(fidelity: tuple[Path, dict]) -> None:
    out, summary = fidelity
    rows = summary["results"][0]["rows"]
    assert [r["metric"] for r in rows] == ["p50 latency (ms)", "p99 latency (ms)", "SLO violation rate",
                                           "throughput (q/s)"]  # fmt: skip
    p50 = rows[0]
    assert p50["real"] > 0 and p50["sim_raw"] > 0
    assert p50["diff_raw"] == pytest.approx(100 * (p50["sim_raw"] - p50["real"]) / p50["real"])
    # The serving-path profile (through the executor and the loop) is slower than the runtime
    # alone at batch 1, which is what the raw arm simulates.
    assert summary["serving_b1_ms"] > 0 and summary["serving_cv"] >= 0
    assert p50["sim_calibrated"] > 0 and p50["sim_served"] > 0
    table = (out / "fidelity.md").read_text()
    assert "| 0.30 |" in table and "calibrated - real" in table


def test_replay_resamples_the_measured_service_times(h: Any) -> None:
    # Batches of 2 measured at 10 and 20 ms: a batch of 2 takes one of them (+1 ms overhead);
    # a batch of 4, never measured, takes one scaled from the nearest size (x2).
    ex = ResampledServiceExecutor([(2, 0.010), (2, 0.020)], overhead_ms=1.0)
    env = simpy.Environment()
    ex.bind(Clock(env), seed=1)
    inst = SimpleNamespace(variant=h.VARIANTS[1])
    took = []
    for n in (2, 2, 2, 4, 4):
        t0 = env.now
        env.run(until=ex.run(inst, n, []))  # type: ignore[arg-type]
        took.append(round((env.now - t0) * 1000, 6))
    assert set(took[:3]) <= {11.0, 21.0} and set(took[3:]) <= {21.0, 41.0}
    with pytest.raises(ConfigError, match="no batch"):
        ResampledServiceExecutor([], 0.0)


def test_the_calibrated_catalog_takes_the_serving_profile_for_the_variant() -> None:
    cat = Catalog.load("default")
    v0, other = cat.variants[0], cat.variants[1]
    points = [(b, 2.0 + 3.0 * b) for b in range(1, v0.max_batch + 1)]
    served = sim_catalog(cat, v0.variant_id, points)
    v1 = served[v0.variant_id]
    assert v1.latency_ms(1) == pytest.approx(5.0)
    assert v1.latency_ms(v0.max_batch) == pytest.approx(2.0 + 3.0 * v0.max_batch)
    assert (v1.latency_intercept_ms, v1.latency_slope_ms) == pytest.approx((2.0, 3.0))
    assert served[other.variant_id] == other  # the others as profiled
    with pytest.raises(ConfigError, match="misses batch sizes"):
        sim_catalog(cat, v0.variant_id, [(1, 5.0)])


def test_bad_settings_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="sim_mappings"):
        run_fidelity(load_config(["sim_mappings=[exact]", f"variants_dir={tmp_path}/v", f"out={tmp_path}/o"]))
    assert not (tmp_path / "v").exists()  # checked before any work
    assert main(["model=nope", f"variants_dir={tmp_path}/v", f"out={tmp_path}/o"]) == 2
    assert "unknown built-in model" in capsys.readouterr().err
