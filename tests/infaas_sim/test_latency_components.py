"""Where a served query's time goes (queueing, loading, batching, execution), what loading
and a worker's start-up cost a query, and what a run costs in VM time."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from infaas_sim.executor import make_executor
from infaas_sim.hardware import DEFAULT_INSTANCE_TYPES, HardwareKind
from infaas_sim.policy import AddWorker, Load, LoadThenServe, Serve, make_policy
from infaas_sim.simulation import ClusterSpec, RunResult
from infaas_sim.view import WorkerState

COMPONENTS = ["queueing_ms", "loading_ms", "batching_ms", "execution_ms"]


def _identity_holds(q: pd.DataFrame) -> None:
    served = q[q["status"] == "served"]
    assert len(served) > 0
    total = served[COMPONENTS].sum(axis=1)
    assert np.abs(total - served["latency_ms"]).max() < 1e-6
    assert (served[COMPONENTS] >= 0).all().all()
    assert np.allclose(served["latency_ms"], (served["completion"] - served["arrival"]) * 1000)
    unserved = q[q["status"] != "served"]
    assert unserved["latency_ms"].isna().all()
    assert (unserved[COMPONENTS] == 0).all().all()


def _load_on_first_use(variant_id: str, worker_id: int | None = None) -> Any:
    """A route function: LoadThenServe the variant the first time, then serve on it."""

    def route(query: Any, candidates: Any, view: Any) -> Any:
        vi = view.catalog.index_of[variant_id]
        insts = view.instances_of(vi)
        if not insts:
            return LoadThenServe(variant_id, worker_id)
        return Serve(min(insts, key=lambda i: i.queued_inputs + i.inflight_inputs))

    return route


@pytest.fixture(scope="module")
def mixed_run(h: Any) -> RunResult:
    # Loading on first use, a start-up, batching with a wait, two GPU variants sharing one
    # device, and latency noise: every component is non-zero somewhere.
    t, idx = h.merge(
        (h.poisson_times(400, 12.0, seed=1, start=0.5), 0),
        (h.poisson_times(150, 12.0, seed=2, start=0.5), 1),
        (h.poisson_times(60, 12.0, seed=3, start=0.5), 2),
    )
    apps = [h.pinned_app("gpu-a", 0), h.pinned_app("gpu-b", 1), h.pinned_app("cpu-batch", 2)]

    def route(query: Any, candidates: Any, view: Any) -> Any:
        vid = view.catalog.variants[candidates.indices[0]].variant_id
        wid = 0 if vid.startswith("gpu") else None
        return _load_on_first_use(vid, wid)(query, candidates, view)

    policy = h.Scripted(setup=[AddWorker("gpu")], route=route, tick_s=None)
    return h.simulate(
        h.VARIANTS,
        h.workload(apps, t, idx),
        policy,
        12.5,
        executor=make_executor("sim", noise_cv=0.2),
        spec=h.spec(max_wait_s=0.003),
    )


def test_latency_is_the_sum_of_its_components(mixed_run: RunResult, conserved: Any) -> None:
    q = mixed_run.queries
    conserved(mixed_run, len(q))
    assert (q["status"] == "served").all()
    _identity_holds(q)
    for col in COMPONENTS:
        assert (q[col] > 0).any(), col
    # The CPU variant waited for a worker to start (5 s) and then to load (0.2 s).
    cpu = q[q["variant"] == "cpu-batch"]
    first = cpu.sort_values("arrival").iloc[0]
    assert first["loading_ms"] == pytest.approx(5000 + 200, abs=1e-6)


def test_served_records_name_where_they_ran(mixed_run: RunResult) -> None:
    q = mixed_run.queries
    assert set(q["variant"].astype(str)) == {"gpu-a", "gpu-b", "cpu-batch"}
    gpu = q[q["variant"].isin(["gpu-a", "gpu-b"])]
    assert (gpu["worker"] == 0).all() and (gpu["hardware"] == "gpu").all()
    assert (q.loc[q["variant"] == "cpu-batch", "hardware"] == "cpu").all()
    assert np.allclose(gpu.loc[gpu["variant"] == "gpu-a", "accuracy"], 0.76)
    assert (q["exec_batch"] >= q["batch"]).all()
    assert (q["slo_met"]).all()  # pinned variants: no SLO (inf)


def test_a_query_routed_to_a_loading_instance_pays_the_rest_of_the_load(h: Any, conserved: Any) -> None:
    # A GPU worker is up; gpu-a is not loaded. The query at 1.0 s loads it (1000 ms); those
    # at 1.2 s and 1.5 s join the loading instance and pay the rest. All three then run
    # together at 2.0 s as a batch of 3 (latency(3) = 3.5 ms).
    t = np.array([1.0, 1.2, 1.5, 2.5, 3.0])
    policy = h.Scripted(setup=[AddWorker("gpu")], route=_load_on_first_use("gpu-a", 0), tick_s=None)
    res = h.simulate(h.VARIANTS, h.workload([h.pinned_app("gpu-a")], t), policy, 4.0)
    q = res.queries.set_index("qid")
    conserved(res, len(t))
    assert np.allclose(q["loading_ms"], [1000, 800, 500, 0, 0], atol=1e-6)
    assert np.allclose(q["execution_ms"], [3.5, 3.5, 3.5, 2.5, 2.5])
    assert np.allclose(q["latency_ms"], [1003.5, 803.5, 503.5, 2.5, 2.5], atol=1e-6)
    assert (q["queueing_ms"] == 0).all() and (q["batching_ms"] == 0).all()
    assert any("load gpu-a as instance 0 on worker 0" in a for _, a in res.actions)


def test_a_workers_start_up_delays_service_and_its_billing_starts_at_the_request(h: Any) -> None:
    # No workers at first. The query at 1.0 s asks for cpu-d10: a CPU worker is requested
    # (5 s start-up), then the variant loads (100 ms): the query runs at 6.1 s. The query at
    # 3.0 s joins it and runs next, 10 ms later.
    t = np.array([1.0, 3.0])
    policy = h.Scripted(route=_load_on_first_use("cpu-d10"), tick_s=None)
    res = h.simulate(h.VARIANTS, h.workload([h.pinned_app("cpu-d10")], t), policy, 100.0)
    q = res.queries.set_index("qid")
    assert np.allclose(q["loading_ms"], [5100, 3100], atol=1e-6)
    assert np.allclose(q["queueing_ms"], [0, 10], atol=1e-6)
    assert np.allclose(q["latency_ms"], [5110, 3120], atol=1e-6)
    assert np.allclose(q["completion"], [6.11, 6.12])
    price = h.TYPES["cpu"].price_per_second
    assert res.summary["total_cost"] == pytest.approx(price * (100.0 - 1.0), rel=1e-9)
    tl = res.timeline.set_index("t")
    assert tl.loc[2, "workers_cpu"] == 1
    assert tl.loc[2, "cost_rate_per_hour"] == pytest.approx(0.384)


def test_a_worker_added_by_autoscale_is_starting_until_its_start_up_has_passed(h: Any) -> None:
    def state(view: Any) -> tuple[int, list[str]]:
        return view.pending_workers(HardwareKind.GPU), [w.state.value for w in view.workers(HardwareKind.GPU)]

    policy = h.Scripted(at={2.0: lambda v: [Load("gpu-a")]}, watch=state)
    t = np.array([0.5, 9.0])
    res = h.simulate(h.VARIANTS, h.workload([h.pinned_app("gpu-a")], t), policy, 10.0)
    log = dict(policy.log)
    assert log[2.0] == (0, [])
    assert log[3.0] == (1, [WorkerState.STARTING.value])
    assert log[6.0] == (1, [WorkerState.STARTING.value])
    assert log[7.0] == (0, [WorkerState.READY.value])
    q = res.queries.set_index("qid")
    assert q.loc[0, "status"] == "rejected"  # nothing loaded yet
    assert q.loc[1, "status"] == "served" and q.loc[1, "loading_ms"] == 0


# --- cost -------------------------------------------------------------------------------------------
def _static_cost_run(h: Any, variant_id: str, replicas: int, duration: float) -> RunResult:
    t = h.periodic_times(0.1, duration)
    return h.simulate(
        h.VARIANTS,
        h.workload([h.pinned_app(variant_id)], t),
        make_policy("static", replicas=replicas),
        duration,
        spec=ClusterSpec(),  # the default AWS types and prices
    )


@pytest.mark.parametrize(
    ("variant_id", "replicas", "itype", "workers"),
    [("cpu-d10", 1, "m5.2xlarge", 1), ("cpu-d10", 4, "m5.2xlarge", 1), ("cpu-d10", 5, "m5.2xlarge", 2),
     ("gpu-a", 1, "p3.2xlarge", 1), ("inf-a", 5, "inf1.2xlarge", 2)],
)  # fmt: skip
def test_static_run_costs_price_times_duration_per_worker(
    variant_id: str, replicas: int, itype: str, workers: int, h: Any
) -> None:
    # Per-second billing from request (t = 0, pre-provisioned) to release (the run's end).
    # 2-core CPU replicas: 4 per 8-vCPU m5.2xlarge; 1-NeuronCore ones: 4 per inf1.2xlarge.
    res = _static_cost_run(h, variant_id, replicas, 300.0)
    price = DEFAULT_INSTANCE_TYPES[itype].price_per_hour
    assert res.summary["peak_workers"][DEFAULT_INSTANCE_TYPES[itype].kind.value] == workers
    assert res.summary["total_cost"] == pytest.approx(workers * price * 300.0 / 3600, rel=1e-6)
    assert res.timeline["cost_rate_per_hour"].iloc[5] == pytest.approx(workers * price)


def test_a_short_run_is_billed_the_one_minute_minimum(h: Any) -> None:
    res = _static_cost_run(h, "cpu-d10", 1, 10.0)
    assert res.summary["total_cost"] == pytest.approx(0.384 * 60 / 3600, rel=1e-9)
    served = res.summary["served"]
    assert res.summary["cost_per_1k_queries"] == pytest.approx(1000 * 0.384 * 60 / 3600 / served)
