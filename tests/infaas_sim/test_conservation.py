"""Nothing disappears: every arrival ends in exactly one record, served, rejected or failed,
and the record says why when it is not served."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from infaas_sim.errors import ConfigError
from infaas_sim.executor import make_executor
from infaas_sim.hardware import HardwareKind, InstanceType
from infaas_sim.policy import AddWorker, Load, Unload, make_policy
from infaas_sim.simulation import Fault

# A CPU type that holds one 2-core replica: static's replicas land on separate workers.
SMALL_CPU = {"cpu": InstanceType("cpu", HardwareKind.CPU, 2, 4096, 0.096, 5.0)}


def test_per_query_batches_no_variant_takes_are_rejected_with_the_reason(h: Any, conserved: Any) -> None:
    # The application asks for batch-1 queries (which the catalog serves), but some queries
    # carry 12 or 40 inputs: 12 fits only the GPU variants (max batch 16), 40 fits nothing.
    app = h.task_app(slo_ms=200, name="mix")
    t = h.periodic_times(0.01, 5.0)
    batches = np.ones(len(t), dtype=np.int64)
    batches[::10] = 40
    batches[5::10] = 12
    policy = h.Scripted(setup=[Load("cpu-d10"), Load("gpu-a")])
    res = h.simulate(h.VARIANTS, h.workload([app], t, batches=batches), policy, 5.0)
    q = res.queries
    conserved(res, len(t))
    big = q[q["batch"] == 40]
    assert (big["status"] == "rejected").all()
    assert big["reason"].str.contains("takes a batch of 40 inputs").all()
    # The rest run on the fastest loaded candidate: gpu-a, the only one taking 12 inputs.
    rest = q[q["batch"] != 40]
    assert (rest["status"] == "served").all()
    assert (rest["variant"] == "gpu-a").all()
    assert (rest.loc[rest["batch"] == 12, "exec_batch"] >= 12).all()


def test_impossible_accuracy_mix_is_rejected_per_query(h: Any, conserved: Any) -> None:
    # Two applications, one satisfiable; the other asks per query for more inputs than any
    # variant meeting its accuracy takes (gpu-b, max batch 16, is the only one >= 0.8).
    ok = h.task_app(slo_ms=100, index=0, name="ok")
    picky = h.task_app(slo_ms=100, index=1, name="picky", min_accuracy=0.8)
    t, idx = h.merge((h.periodic_times(0.02, 4.0), 0), (h.periodic_times(0.05, 4.0, start=0.001), 1))
    batches = np.where(idx == 1, 20, 1).astype(np.int64)
    policy = make_policy("static", replicas=1, variants={"ok": "cpu-d10", "picky": "gpu-b"})
    res = h.simulate(h.VARIANTS, h.workload([ok, picky], t, idx, batches), policy, 4.0)
    q = res.queries
    conserved(res, len(t))
    assert (q.loc[q["app"] == "ok", "status"] == "served").all()
    bad = q[q["app"] == "picky"]
    assert (bad["status"] == "rejected").all()
    assert bad["reason"].str.contains("takes a batch of 20").all()


def _crash_run(h: Any, fault: Fault) -> tuple[np.ndarray, Any]:
    # Two replicas of cpu-d10 on two workers at 95 % for 5 s (queues build), then 50/s.
    t = np.concatenate([h.poisson_times(190, 5.0, seed=3), h.poisson_times(50, 15.0, seed=4, start=5.0)])
    res = h.simulate(
        h.VARIANTS,
        h.workload([h.pinned_app("cpu-d10")], t),
        make_policy("static", replicas=2),
        20.0,
        spec=h.spec(instance_types=SMALL_CPU, type_by_kind={HardwareKind.CPU: "cpu"}),
        faults=[fault],
    )
    return t, res


def test_a_crashed_workers_queries_fail_with_the_crash_and_nothing_is_lost(h: Any, conserved: Any) -> None:
    t, res = _crash_run(h, Fault(at_s=4.9995, kind="crash"))
    q = res.queries
    conserved(res, len(t))
    assert res.summary["peak_workers"]["cpu"] == 2
    failed = q[q["status"] == "failed"]
    assert len(failed) > 0
    assert failed["reason"].str.contains("crash").all()
    assert failed["reason"].str.contains("worker").all()
    # Those that failed were queued or running at the crash, and fail at that moment.
    assert (failed["arrival"] <= 4.9995).all()
    assert np.allclose(failed["completion"], 4.9995)
    crashed = int(failed["reason"].iloc[0].split("worker ")[1].split()[0])
    # After the crash the other worker serves everything; the crashed one serves nothing.
    after = q[q["arrival"] > 5.0]
    assert (after["status"] == "served").all()
    assert (after["worker"] != crashed).all()
    assert not ((q["worker"] == crashed) & (q["completion"] > 4.9995)).any()
    assert any("crash worker" in a for _, a in res.actions)


def test_a_crash_of_a_named_worker_fails_only_its_queries(h: Any, conserved: Any) -> None:
    t, res = _crash_run(h, Fault(at_s=2.0, kind="crash", worker=1))
    q = res.queries
    conserved(res, len(t))
    failed = q[q["status"] == "failed"]
    assert failed["reason"].str.contains("worker 1 crashed").all()
    assert (q.loc[q["completion"] > 2.0, "worker"].isin([0, -1])).all()


def test_slowdown_fault_stretches_execution_for_its_length(h: Any, conserved: Any) -> None:
    t = h.periodic_times(0.05, 20.0)
    res = h.simulate(
        h.VARIANTS,
        h.workload([h.pinned_app("cpu-d10")], t),
        make_policy("static", replicas=1),
        20.0,
        faults=[Fault(at_s=5.0, kind="slowdown", worker=0, factor=3.0, length_s=5.0)],
    )
    q = res.queries
    conserved(res, len(t))
    start = q["completion"] - q["execution_ms"] / 1000
    slow = (start >= 5.0) & (start < 10.0)
    assert np.allclose(q.loc[slow, "execution_ms"], 30.0)
    assert np.allclose(q.loc[~slow, "execution_ms"], 10.0)


def test_overload_far_beyond_capacity_is_turned_away_and_the_queue_stays_bounded(h: Any, conserved: Any) -> None:
    # 1000/s on one replica that serves 100/s, with 0.5 s of queue allowed.
    max_queue_s = 0.5
    t = h.poisson_times(1000, 30.0, seed=9)
    res = h.simulate(
        h.VARIANTS,
        h.workload([h.pinned_app("cpu-d10")], t),
        make_policy("static", replicas=1),
        30.0,
        spec=h.spec(max_queue_s=max_queue_s),
    )
    q = res.queries
    conserved(res, len(t))
    served = q[q["status"] == "served"]
    rejected = q[q["status"] == "rejected"]
    assert res.summary["failed"] == 0
    assert len(served) == pytest.approx(100 * 30, rel=0.03)
    assert len(rejected) == len(t) - len(served)
    expected = r"expected wait 0\.5\d* s for cpu-d10 on worker 0 exceeds cluster\.max_queue_s 0\.5 s"
    assert rejected["reason"].str.match(expected).all()
    # The queue never holds more than max_queue_s of work (plus the query that crossed it).
    bound = max_queue_s / 0.010 + 1
    assert res.timeline["queued_inputs"].max() <= bound
    # No served query waited longer than the bound before its batch started.
    assert (served["queueing_ms"] + served["batching_ms"] + served["loading_ms"]).max() <= max_queue_s * 1000 + 1e-6
    # Once full, it stays full: the served queries' wait is about max_queue_s.
    late = served[served["arrival"] > 5.0]
    assert late["queueing_ms"].mean() == pytest.approx(max_queue_s * 1000, rel=0.05)


def test_queries_still_queued_when_the_drain_ends_fail_with_that_reason(h: Any, conserved: Any) -> None:
    # 150/s on a replica serving 100/s for 10 s, with no admission limit and 1 s of drain:
    # a backlog of about 500 queries cannot finish.
    t = h.poisson_times(150, 10.0, seed=2)
    res = h.simulate(
        h.VARIANTS,
        h.workload([h.pinned_app("cpu-d10")], t),
        make_policy("static", replicas=1),
        10.0,
        spec=h.spec(max_queue_s=1e6),
        drain_s=1.0,
    )
    q = res.queries
    conserved(res, len(t))
    failed = q[q["status"] == "failed"]
    assert len(failed) > 300
    assert failed["reason"].str.contains("still queued when the run ended").all()
    assert np.allclose(failed["completion"], failed["completion"].iloc[0])
    assert failed["completion"].iloc[0] <= 11.0 + 1e-9


def test_every_arrival_of_the_workload_is_accounted_or_the_run_is_refused(h: Any) -> None:
    # A trace longer than the run: either every arrival has a record, or the run refuses the
    # workload up front. Here 40 arrivals over 20 s, a 10 s run with 5 s of drain.
    t = h.periodic_times(0.5, 20.0)
    try:
        res = h.simulate(
            h.VARIANTS, h.workload([h.pinned_app("cpu-d10")], t), make_policy("static", replicas=1), 10.0, drain_s=5.0
        )
    except ConfigError:
        return
    assert res.summary["queries"] == len(t)


def test_conservation_holds_with_loads_unloads_and_noise(h: Any, conserved: Any) -> None:
    # A busy mixed run: queries routed to loading instances, unloads mid-stream, GPU sharing,
    # latency noise. The run's own accounting check passes and every record is complete.
    def drop_first(view: Any) -> list[Any]:
        return [Unload(i.iid) for i in view.all_instances()[:1]]

    policy = h.Scripted(
        setup=[AddWorker("gpu"), Load("cpu-batch")],
        at={3.0: lambda v: [Load("gpu-a", worker_id=0), Load("gpu-b", worker_id=0)], 6.0: drop_first},
    )
    t = h.poisson_times(300, 10.0, seed=11)
    res = h.simulate(
        h.VARIANTS,
        h.workload([h.task_app(slo_ms=100)], t),
        policy,
        10.0,
        executor=make_executor("sim", noise_cv=0.3),
        spec=h.spec(max_wait_s=0.002),
    )
    q = res.queries
    conserved(res, len(t))
    assert set(q.loc[q["status"] == "served", "variant"].astype(str)) >= {"cpu-batch", "gpu-a"}
    assert res.summary["failed"] == 0


def test_a_query_larger_than_the_static_variants_max_batch_is_accounted(h: Any, conserved: Any) -> None:
    # The application's queries are batch 1 and static pins cpu-d10 (max batch 1); one query
    # carries 4 inputs, which only other variants take. It must end in a record (rejected
    # with a reason, or served by a variant that takes 4), not crash the run.
    app = h.task_app(slo_ms=100, name="a")
    t = h.periodic_times(0.1, 5.0)
    batches = np.ones(len(t), dtype=np.int64)
    batches[10] = 4
    policy = make_policy("static", replicas=1, variants={"a": "cpu-d10"})
    res = h.simulate(h.VARIANTS, h.workload([app], t, batches=batches), policy, 5.0)
    conserved(res, len(t))
    row = res.queries.set_index("qid").loc[10]
    assert row["status"] == "rejected" or row["variant"] != "cpu-d10"


def test_a_stop_request_ends_the_run_at_the_next_second_with_every_query_accounted(h: Any) -> None:
    # What SIGINT / SIGTERM do (infaas_sim.interrupt): the loop stops between events, fails
    # what is queued or running with the reason, and the summary says the run is not complete.
    from infaas_sim import interrupt
    from infaas_sim.executor import make_executor
    from infaas_sim.policy import make_policy

    apps = [h.task_app(slo_ms=50, index=0, name="a")]
    times = h.poisson_times(500, 60.0, seed=3)
    interrupt.request_stop("interrupted by SIGINT")
    try:
        res = h.simulate(h.VARIANTS, h.workload(apps, times, np.zeros(len(times), dtype=np.int64)),
                         make_policy("static", replicas=2), 60.0, executor=make_executor("sim"))  # fmt: skip
    finally:
        interrupt.clear()
    s = res.summary
    assert s["complete"] is False and s["interrupted"].startswith("interrupted by SIGINT at t = 1 s of 60 s")
    assert 0 < s["queries"] < len(times) / 10  # the first second's arrivals, not the hour's
    assert s["served"] + s["rejected"] + s["failed"] == s["queries"] == len(res.queries)
    failed = res.queries[res.queries["status"] == "failed"]
    assert failed["reason"].str.startswith("run interrupted by SIGINT at t = 1 s").all()
    # Rates are over the second that ran, not the minute asked for.
    assert s["throughput_qps"] == pytest.approx(s["served"] / 1.0, rel=0.01)


@pytest.mark.parametrize("factor", [5.0, 20.0])
def test_the_wait_bound_holds_through_a_slowdown_the_profile_does_not_know(
    h: Any, conserved: Any, factor: float
) -> None:
    # A worker slowed x5 / x20 for 20 s, 10 s of queue allowed: admission reads the pace the
    # instance really runs at, and a queued query that has waited past the bound anyway is
    # dropped with the reason; no query that runs waited longer than the bound.
    max_queue_s = 10.0
    t = h.poisson_times(60, 60.0, seed=4)
    res = h.simulate(
        h.VARIANTS, h.workload([h.pinned_app("cpu-d10")], t), make_policy("static", replicas=1), 60.0,
        spec=h.spec(max_queue_s=max_queue_s),
        faults=[Fault(at_s=10.0, kind="slowdown", worker=0, factor=factor, length_s=20.0)],
    )  # fmt: skip
    conserved(res, len(t))
    q = res.queries
    served = q[q["status"] == "served"]
    waited = served["queueing_ms"] + served["batching_ms"] + served["loading_ms"]
    assert waited.max() <= max_queue_s * 1000 + 1e-6
    rejected = q[q["status"] == "rejected"]
    assert len(rejected) > 0
    assert rejected["reason"].str.contains(r"exceeds cluster\.max_queue_s 10 s|over cluster\.max_queue_s 10 s").all()


def test_queries_are_not_admitted_to_a_replica_whose_worker_boots_past_the_bound(h: Any, conserved: Any) -> None:
    # A replica loading on a worker still starting (60 s) with 5 s of queue allowed: an
    # expected wait of a minute is over the bound, so its queries are turned away at once
    # (before: queued behind the start-up and served a minute late).
    from dataclasses import replace

    types = {**h.TYPES, "cpu": replace(h.TYPES["cpu"], startup_s=60.0)}
    t = h.periodic_times(0.1, 20.0)
    policy = h.Scripted(at={1.0: lambda view: [Load("cpu-d10")]})  # loaded at 1 s, on a new worker
    res = h.simulate(h.VARIANTS, h.workload([h.pinned_app("cpu-d10")], t), policy, 20.0,
                     spec=h.spec(max_queue_s=5.0, instance_types=types))  # fmt: skip
    conserved(res, len(t))
    q = res.queries
    after = q[q["arrival"] > 1.0]
    assert len(after) > 150 and (after["status"] == "rejected").all()
    assert after["reason"].str.match(r"expected wait \d+(\.\d+)? s for cpu-d10 on worker 0 exceeds").all()
    assert after["reason"].str.extract(r"expected wait ([\d.]+) s")[0].astype(float).min() > 40  # the boot ends at 61 s
