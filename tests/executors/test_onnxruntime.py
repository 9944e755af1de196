"""The onnxruntime executor: a real replay on ONNX Runtime sessions, on wall-clock time, with
every query accounted for; overload bounded; failures recorded; the Hydra app's path."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import simpy

from experiments.outputs import write_run
from infaas_sim.catalog import Catalog
from infaas_sim.clock import Clock, WallClockEnvironment
from infaas_sim.errors import CatalogError, ConfigError
from infaas_sim.executor import make_executor
from infaas_sim.experiment import run_experiment
from infaas_sim.policy import make_policy
from infaas_sim.query import Application, Level, Requirement
from infaas_sim.simulation import ClusterSpec, RunResult, RunSpec, Workload, run_simulation

FAST = "resnet-tiny-ort-fp32-opt-1c"
SLOW = "resnet-s-ort-fp32-opt-1c"


def _spec(h: Any, **kw: Any) -> ClusterSpec:
    return h.spec(**kw)


def _replay(
    built: Any,
    h: Any,
    vid: str,
    times: np.ndarray,
    spec: ClusterSpec,
    replicas: int = 1,
    preload: bool = True,
    slo_ms: float | None = None,
    duration: float | None = None,
) -> tuple[RunResult, Any]:
    catalog = Catalog.load(built.catalog)
    app = Application("a", Requirement(Level.VARIANT, vid, slo_ms=slo_ms))
    ex = make_executor("onnxruntime", catalog=str(built.catalog), preload=[vid] * replicas if preload else [])
    policy = make_policy("static", variants={"a": vid}, replicas=replicas)
    wl = Workload([app], times, np.zeros(len(times), dtype=np.int64))
    run = RunSpec(duration_s=duration or float(np.ceil(times[-1] + 0.1)), drain_s=5.0)
    return run_simulation(catalog, wl, policy, ex, spec, run, env=WallClockEnvironment()), ex


@pytest.fixture(scope="module")
def replay(built: Any, h: Any) -> tuple[np.ndarray, RunResult, Any]:
    t = h.poisson_times(150, 2.0, seed=5)
    res, ex = _replay(built, h, FAST, t, _spec(h), replicas=2, slo_ms=50)
    return t, res, ex


def test_a_real_replay_accounts_for_every_query(replay: Any, conserved: Any) -> None:
    t, res, ex = replay
    conserved(res, len(t))
    q = res.queries
    assert (q["status"] == "served").all()
    assert set(q["variant"]) == {FAST} and q["instance"].nunique() == 2
    assert res.summary["executor"] == "onnxruntime"
    # Both instances took a preloaded session: no session was opened while serving.
    assert ex.stats.lazy_opens == 0 and ex.stats.loads == 0
    assert ex.stats.batches == q.groupby(["instance", "completion"]).ngroups
    assert 1 <= ex.stats.max_inflight <= 2  # one batch per instance at most


def test_real_latencies_contain_the_runtime(replay: Any) -> None:
    t, res, ex = replay
    q = res.queries
    runtime_ms = np.array([s for _, s in ex.stats.service]) * 1000
    assert len(runtime_ms) == ex.stats.batches and (runtime_ms > 0).all()
    # A batch's recorded execution is the runtime plus the hand-offs: never less.
    assert q["execution_ms"].min() >= runtime_ms.min() * 0.999
    assert np.all(q["arrival"].to_numpy() - t >= -1e-9)
    cols = ["queueing_ms", "loading_ms", "batching_ms", "execution_ms"]
    assert np.abs(q[cols].sum(axis=1) - q["latency_ms"]).max() < 1e-6
    assert q["latency_ms"].median() < 50  # a sub-millisecond model at light load


def test_an_instance_loaded_while_serving_opens_a_real_session(built: Any, h: Any, conserved: Any) -> None:
    from infaas_sim.policy import AddWorker, LoadThenServe, Serve

    catalog = Catalog.load(built.catalog)
    vi = catalog.index_of[FAST]

    def route(query: Any, cands: Any, view: Any) -> Any:
        insts = view.instances_of(vi)
        return Serve(insts[0]) if insts else LoadThenServe(FAST, 0)

    t = h.periodic_times(0.02, 1.0)
    ex = make_executor("onnxruntime", catalog=str(built.catalog))
    policy = h.Scripted(setup=[AddWorker("cpu")], route=route, tick_s=None)
    app = Application("a", Requirement(Level.VARIANT, FAST))
    wl = Workload([app], t, np.zeros(len(t), dtype=np.int64))
    res = run_simulation(catalog, wl, policy, ex, h.spec(), RunSpec(duration_s=1.0), env=WallClockEnvironment())
    conserved(res, len(t))
    q = res.queries
    assert (q["status"] == "served").all()
    assert ex.stats.loads == 1 and ex.stats.lazy_opens == 0
    assert q.iloc[0]["loading_ms"] > 0  # the first query waited for the real load
    threads = {th.name for th in threading.enumerate()}
    assert not any(n.startswith("onnxruntime-exec") for n in threads)  # the pool was shut down


def test_a_set_up_load_without_a_preloaded_session_opens_one_before_traffic(
    built: Any, h: Any, conserved: Any
) -> None:
    t = h.periodic_times(0.05, 0.5)
    res, ex = _replay(built, h, FAST, t, _spec(h), preload=False)
    conserved(res, len(t))
    assert (res.queries["status"] == "served").all()
    assert ex.stats.loads == 1 and ex.stats.lazy_opens == 0


def test_overload_queues_then_rejects_with_a_reason_and_stays_bounded(built: Any, h: Any, conserved: Any) -> None:
    # About 4x what one replica of resnet-s serves, with a 0.1 s queue bound.
    catalog = Catalog.load(built.catalog)
    capacity = 1000 * 4 / catalog[SLOW].latency_ms(4)
    t = h.poisson_times(4 * capacity, 1.5, seed=9)
    res, ex = _replay(built, h, SLOW, t, _spec(h, max_queue_s=0.1), slo_ms=100, duration=2.0)
    conserved(res, len(t))
    q = res.queries
    s = res.summary
    assert s["failed"] == 0
    assert s["rejected"] > 0.3 * len(t)
    reasons = q.loc[q["status"] == "rejected", "reason"]
    assert reasons.str.contains(r"exceeds cluster\.max_queue_s 0\.1 s|over cluster\.max_queue_s 0\.1 s").all()
    assert s["served"] > 0 and ex.stats.max_inflight == 1
    assert (q.loc[q["status"] == "served", "exec_batch"] <= 4).all()
    # No served query waited longer than the bound (a slower-than-profiled one is dropped).
    served = q[q["status"] == "served"]
    assert (served["queueing_ms"] + served["batching_ms"] + served["loading_ms"]).max() <= 100 + 1e-6


def test_a_failing_batch_fails_its_queries_with_the_fault(built: Any, h: Any, conserved: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from executors.onnxruntime import OrtModelRunner

    calls = {"n": 0}
    real = OrtModelRunner.run_batch

    def flaky(self: OrtModelRunner, n: int) -> float:
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("injected runtime fault")
        return real(self, n)

    monkeypatch.setattr(OrtModelRunner, "run_batch", flaky)
    t = h.periodic_times(0.02, 0.5)
    res, _ = _replay(built, h, FAST, t, _spec(h))
    conserved(res, len(t))
    failed = res.queries[res.queries["status"] == "failed"]
    assert len(failed) >= 1
    assert failed["reason"].str.contains("injected runtime fault").all()
    assert res.summary["served"] == len(t) - len(failed)


def test_executor_errors_are_clear(built: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"params\.catalog"):
        make_executor("onnxruntime")
    with pytest.raises(ConfigError, match="not found"):
        make_executor("onnxruntime", catalog=str(tmp_path / "none.csv"))
    with pytest.raises(CatalogError, match="not a profiled catalog"):
        make_executor("onnxruntime", catalog=str(Path(__file__).parents[2] / "infaas_sim/catalogs/default.csv"))
    with pytest.raises(ConfigError, match="no onnxruntime artifact"):
        make_executor("onnxruntime", catalog=str(built.catalog), preload=["nope"])
    ex = make_executor("onnxruntime", catalog=str(built.catalog))
    with pytest.raises(ConfigError, match="WallClockEnvironment"):
        ex.bind(Clock(simpy.Environment()), 0)


def test_the_experiment_config_path_writes_the_usual_outputs(built: Any, tmp_path: Path, conserved: Any) -> None:
    cfg = {
        "trace": {"name": "poisson", "qps": 60},
        "workload": {"apps": [{"name": "img", "level": "task", "target": "image-classification",
                               "dataset": "synthetic-images", "slo_ms": 30, "batch": 1}]},
        "catalog": {"path": str(built.catalog)},
        "cluster": {"workers": {"cpu": "local"}, "min_workers": {"cpu": 1}, "max_workers": {"cpu": 1},
                    "instance_types": {"local": {"kind": "cpu", "vcpus": 2, "memory_mb": 8192,
                                                 "price_per_hour": 0.096, "startup_s": 0.0}}},
        "policy": {"name": "static", "params": {"replicas": 1}},
        "executor": {"name": "onnxruntime", "params": {"catalog": str(built.catalog)}},
        "run": {"duration_s": 1.5, "seed": 3, "drain_s": 5},
    }  # fmt: skip
    res = run_experiment(cfg)
    conserved(res, len(res.queries))
    assert res.summary["executor"] == "onnxruntime" and res.summary["served"] > 40
    out = write_run(res, tmp_path / "run")
    for name in ("queries.parquet", "timeline.parquet", "instances.parquet", "summary.json",
                 "figures/timeline.png", "figures/latency_cdf.png"):  # fmt: skip
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text())["queries"] == len(res.queries)


def test_slowdown_and_drift_faults_slow_real_batches_too(built: Any, h: Any, conserved: Any) -> None:
    # run.faults' slowdown is not a simulator-only fault: a real batch on the slowed worker
    # takes factor x its runtime (the executor holds it the extra time).
    from infaas_sim.simulation import Fault

    catalog = Catalog.load(built.catalog)
    app = Application("a", Requirement(Level.VARIANT, SLOW))
    t = h.periodic_times(0.05, 2.0)
    wl = Workload([app], t, np.zeros(len(t), dtype=np.int64))

    def run(faults: tuple[Any, ...]) -> RunResult:
        ex = make_executor("onnxruntime", catalog=str(built.catalog), preload=[SLOW])
        policy = make_policy("static", variants={"a": SLOW}, replicas=1)
        spec = RunSpec(duration_s=2.1, drain_s=5.0, faults=faults)
        return run_simulation(catalog, wl, policy, ex, h.spec(), spec, env=WallClockEnvironment())

    plain = run(())
    slowed = run((Fault(at_s=0.0, kind="slowdown", worker=0, factor=4.0, length_s=60.0),))
    conserved(slowed, len(t))
    ratio = slowed.queries["execution_ms"].median() / plain.queries["execution_ms"].median()
    # 4x the runtime; the hand-offs around it (not slowed) pull the ratio of whole batches below 4.
    assert 2.5 < ratio < 5.0, ratio
    # A drift (the variant's hardware runs slower than its profile from then on) too.
    drifted = run((Fault(at_s=0.0, kind="drift", variant=SLOW, factor=4.0),))
    conserved(drifted, len(t))
    ratio = drifted.queries["execution_ms"].median() / plain.queries["execution_ms"].median()
    assert 2.5 < ratio < 5.0, ratio


def test_a_corrupt_model_file_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the real-execution extra (onnx, onnxruntime) is not installed")
    from infaas_sim.realtime import open_runner

    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"this is not an ONNX protobuf")
    with pytest.raises(ConfigError) as exc:
        open_runner("onnxruntime", bad, 1, 4, {})
    assert "backend onnxruntime: cannot open model.onnx (" in str(exc.value) and "\n" not in str(exc.value)
