"""Outcome records, the per-second timeline, the summary, and the rate meters policies read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from infaas_sim.catalog import Catalog
from infaas_sim.hardware import HardwareKind
from infaas_sim.meter import RateMeter
from infaas_sim.metrics import QUERY_COLUMNS
from infaas_sim.policy import Load, Reject, make_policy
from infaas_sim.simulation import Fault, RunResult, Workload
from infaas_sim.variant import Variant

CPU = HardwareKind.CPU


@pytest.fixture(scope="module")
def mixed(h: Any) -> RunResult:
    return mixed_run(h)


def mixed_run(h: Any, records_to: Path | None = None) -> RunResult:
    # 60 s: app "a" (SLO 15 ms) on one cpu-d10 at rho 0.5, app "b" (pinned gpu-a) whose
    # every third query the policy rejects, and a crash of the GPU worker at 40 s.
    t, idx = h.merge((h.poisson_times(50, 60.0, seed=1), 0), (h.periodic_times(0.1, 60.0, start=0.05), 1))
    apps = [h.task_app(slo_ms=15, index=0, name="a"), h.pinned_app("gpu-a", 1, name="b")]
    cat_idx = {v.variant_id: i for i, v in enumerate(h.VARIANTS)}

    def route(query: Any, candidates: Any, view: Any) -> Any:
        if query.app.name == "b" and query.qid % 3 == 0:
            return Reject("every third")
        vi = cat_idx["cpu-d10"] if query.app.name == "a" else cat_idx["gpu-a"]
        return h.jsq(view, vi) or Reject("not loaded")

    def watch(view: Any) -> tuple[float, float, float]:
        return view.utilisation(0, 10.0), view.app_rate(0, 10.0), view.variant_rate(cat_idx["cpu-d10"], 10.0)

    policy = h.Scripted(setup=[Load("cpu-d10"), Load("gpu-a")], route=route, watch=watch)
    res = h.simulate(h.VARIANTS, h.workload(apps, t, idx), policy, 60.0, faults=[Fault(at_s=40.0, worker=1)],
                     records_to=records_to)  # fmt: skip
    res.summary["_policy_log"] = policy.log
    return res


def test_query_records_have_the_documented_columns_and_types(mixed: RunResult) -> None:
    q = mixed.queries
    assert list(q.columns) == QUERY_COLUMNS
    assert q["qid"].tolist() == list(range(len(q)))
    assert isinstance(q["status"].dtype, pd.CategoricalDtype)
    assert list(q["status"].cat.categories) == ["served", "rejected", "failed"]
    assert list(q["app"].cat.categories) == ["a", "b"]
    served = q[q["status"] == "served"]
    assert served["reason"].isna().all()
    assert (served["worker"] >= 0).all() and (served["instance"] >= 0).all()
    unserved = q[q["status"] != "served"]
    assert (unserved["worker"] == -1).all() and (unserved["variant"].astype(str) == "").all()
    assert unserved["accuracy"].isna().all() and unserved["latency_ms"].isna().all()
    assert (q.loc[q["app"] == "a", "slo_ms"] == 15).all()
    assert np.isinf(q.loc[q["app"] == "b", "slo_ms"]).all()


def test_summary_numbers_follow_from_the_records(mixed: RunResult) -> None:
    q, s = mixed.queries, mixed.summary
    served = q[q["status"] == "served"]
    lat = served["latency_ms"].to_numpy()
    assert s["queries"] == len(q)
    assert s["served"] == len(served)
    assert s["rejected"] == (q["status"] == "rejected").sum() > 0
    assert s["failed"] == (q["status"] == "failed").sum()
    met = served["latency_ms"] <= served["slo_ms"]
    assert (served["slo_met"] == met).all()
    assert s["slo_met"] == met.sum() and s["late"] == (~met).sum() > 0
    # A violation is every query without an answer within its SLO: late, rejected or failed.
    assert s["slo_violations"] == s["late"] + s["rejected"] + s["failed"] == (~q["slo_met"]).sum()
    assert s["slo_violations"] / s["queries"] == s["slo_violation_rate"]
    assert s["throughput_qps"] == pytest.approx(len(served) / 60.0)
    assert s["goodput_qps"] == pytest.approx(met.sum() / 60.0)
    assert s["latency_mean_ms"] == pytest.approx(lat.mean())
    for p in (50, 95, 99):
        assert s[f"latency_p{p}_ms"] == pytest.approx(np.percentile(lat, p))
    assert s["mean_accuracy"] == pytest.approx(served["accuracy"].mean())
    assert s["cost_per_1k_queries"] == pytest.approx(1000 * s["total_cost"] / len(served))
    assert s["policy"] == "test-scripted" and s["executor"] == "sim" and s["seed"] == 0
    assert s["peak_workers"] == {"cpu": 1, "gpu": 1, "inferentia": 0}


def test_the_slo_met_share_matches_md1_waits(mixed: RunResult) -> None:
    # App "a" is M/D/1 at rho 0.5 (10 ms service): latency <= 15 ms iff the wait is <= 5 ms.
    q = mixed.queries
    a = q[q["app"] == "a"]
    assert (a["status"] == "served").all()
    assert (a["slo_met"] == (a["queueing_ms"] <= 5.0 + 1e-9)).all()
    assert 0.5 < a["slo_met"].mean() < 0.95


def test_timeline_counts_match_the_records(mixed: RunResult) -> None:
    q, tl = mixed.queries, mixed.timeline
    assert tl["t"].tolist() == list(range(60))
    assert tl["arrivals"].sum() == len(q)
    served = q[q["status"] == "served"]
    assert tl["completions"].sum() == (served["completion"] < 60).sum()
    assert tl["rejections"].sum() == (q["status"] == "rejected").sum()
    assert tl["failures"].sum() == ((q["status"] == "failed") & (q["completion"] < 60)).sum()
    per_sec = np.bincount(np.floor(q["arrival"]).astype(int), minlength=60)
    assert (tl["arrivals"].to_numpy() == per_sec).all()
    # The GPU worker crashed at 40 s: it is gone from the timeline afterwards.
    assert (tl.loc[tl["t"] < 39, "workers_gpu"] == 1).all()
    assert (tl.loc[tl["t"] >= 41, "workers_gpu"] == 0).all()
    assert np.allclose(tl.loc[tl["t"] >= 41, "cost_rate_per_hour"], 0.384)
    assert (tl["workers_cpu"] == 1).all()


def test_cpu_utilisation_is_the_busy_share_of_the_workers_cores(mixed: RunResult) -> None:
    # One 2-core replica at rho 0.5 on an 8-vCPU worker: a quarter of it, half busy.
    tl = mixed.timeline
    assert tl["util_cpu"].iloc[5:].mean() == pytest.approx(0.125, rel=0.1)
    assert mixed.summary["utilisation"]["cpu"] == pytest.approx(0.125, rel=0.1)
    log = dict(mixed.summary["_policy_log"])
    util, app_rate, variant_rate = log[30.0]
    assert util == pytest.approx(0.125, rel=0.25)
    assert app_rate == pytest.approx(50, rel=0.25)
    assert variant_rate == pytest.approx(app_rate)


def test_instances_frame_lists_loaded_instances_per_second(mixed: RunResult) -> None:
    inst = mixed.instances
    assert list(inst.columns) == ["t", "variant", "instances"]
    assert set(inst.loc[inst["t"] < 39, "variant"]) == {"cpu-d10", "gpu-a"}
    assert set(inst.loc[inst["t"] > 41, "variant"]) == {"cpu-d10"}
    assert (inst["instances"] == 1).all()


def test_an_empty_workload_runs_and_summarises(h: Any) -> None:
    wl = Workload([h.pinned_app("cpu-d10")], np.array([]), np.array([], dtype=np.int64))
    res = h.simulate(h.VARIANTS, wl, make_policy("static", replicas=1), 10.0)
    assert len(res.queries) == 0 and list(res.queries.columns) == QUERY_COLUMNS
    s = res.summary
    assert s["queries"] == s["served"] == 0 and s["slo_violation_rate"] == 0.0
    assert np.isnan(s["latency_mean_ms"]) and np.isnan(s["cost_per_1k_queries"])
    assert s["total_cost"] == pytest.approx(h.TYPES["cpu"].price_per_second * 60)
    assert len(res.timeline) == 10 and res.timeline["arrivals"].sum() == 0


def test_workload_hints_are_per_second_mean_and_peak(h: Any) -> None:
    t = np.array([0.1, 0.2, 0.3, 1.5, 3.2])
    hints = h.workload([h.pinned_app("cpu-d10", name="x")], t).hints(5.0)
    assert hints["x"].mean_qps == pytest.approx(1.0)
    assert hints["x"].peak_qps == 3.0


def test_rate_meter_counts_finished_seconds() -> None:
    m = RateMeter()
    for t in (0.1, 0.5, 1.2, 1.3, 1.9, 3.0):
        m.add(7, t)
    m.add(7, 3.5, 4)
    assert m.series(7, 4.2, 4) == [2, 3, 0, 5]
    assert m.series(7, 2.0, 4) == [0, 0, 2, 3]  # zero-padded before the start
    assert m.rate(7, 4.9, 2) == pytest.approx(2.5)  # seconds 2 and 3
    assert m.rate(7, 2.0, 10) == pytest.approx(2.5)  # only 2 finished seconds so far
    assert m.rate(7, 0.5, 10) == 0.0 and m.rate(8, 3.0, 2) == 0.0
    assert m.total(7) == 10


def test_rate_meter_spreads_an_interval_over_the_seconds_it_covers() -> None:
    m = RateMeter()
    m.add_span(0, 0.5, 3.25, 8.0)  # 2.75 s at 8 units: 4 + 8 + 8 + 2 unit-seconds
    assert m.counts(0) == pytest.approx([4.0, 8.0, 8.0, 2.0])
    m.add_span(0, 3.25, 3.75, 8.0)  # within one second: all of it there
    assert m.counts(0)[3] == pytest.approx(6.0)
    assert m.total(0) == pytest.approx(8.0 * 3.25)
    assert m.counts(1) == []


def test_timeline_counts_each_miss_once_in_the_second_it_ended(mixed: RunResult) -> None:
    q, tl, s = mixed.queries, mixed.timeline, mixed.summary
    assert (tl["violations"] == tl["late"] + tl["rejections"] + tl["failures"]).all()
    assert (tl["violations"] <= tl["completions"] + tl["rejections"] + tl["failures"]).all()
    assert tl["violations"].sum() == (~q["slo_met"]).sum() == s["slo_violations"]
    assert tl["late"].sum() == s["late"] and tl["rejections"].sum() == s["rejected"]
    assert tl["failures"].sum() == s["failed"]
    late = q[(q["status"] == "served") & ~q["slo_met"]]
    per_sec = np.bincount(np.floor(late["completion"]).astype(int), minlength=len(tl))
    assert (tl["late"].to_numpy() == per_sec).all()


@pytest.fixture(scope="module")
def pipeline_run(h: Any, pipeline_catalog: Any) -> RunResult:
    return run_pipeline(h, pipeline_catalog)


def run_pipeline(h: Any, pipeline_catalog: Any, records_to: Path | None = None) -> RunResult:
    # Detect (det-cpu, 6 ms) then classify (cpu-d10, 10 ms) within 20 ms: Poisson arrivals at
    # 40/s queue enough for some to be late; and every 0.1 s a query arriving at k + 0.997 s,
    # whose second stage, routed at k + 1.003 s, is rejected: it ends a second after it came.
    # The last of them ends after the 20 s run, in the drain.
    t, idx = h.merge((h.poisson_times(40, 20.0, seed=3), 0), (h.periodic_times(1.0, 20.0, start=0.997), 0))
    marked = set(np.flatnonzero(np.isclose(t % 1.0, 0.997)).tolist())
    cat_idx = {v.variant_id: i for i, v in enumerate(pipeline_catalog.variants)}

    def route(query: Any, candidates: Any, view: Any) -> Any:
        if query.stage == 1 and query.qid in marked:
            return Reject("second stage refused")
        vi = cat_idx["det-cpu"] if query.stage == 0 else cat_idx["cpu-d10"]
        return h.jsq(view, vi) or Reject("not loaded")

    policy = h.Scripted(setup=[Load("det-cpu"), Load("cpu-d10")], route=route)
    res = h.simulate(pipeline_catalog, h.workload([h.pipeline_app(20.0)], t, idx), policy, 20.0,
                     records_to=records_to)  # fmt: skip
    res.summary["_marked"] = sorted(marked)
    return res


def test_a_pipeline_query_is_one_outcome_counted_in_the_second_it_ended(pipeline_run: RunResult) -> None:
    q, tl, s = pipeline_run.queries, pipeline_run.timeline, pipeline_run.summary
    rejected = q[q["status"] == "rejected"]
    assert sorted(rejected["qid"]) == s["_marked"] and len(rejected) == 20
    assert (np.floor(rejected["completion"]) == np.floor(rejected["arrival"]) + 1).all()
    assert rejected["completion"].max() > 20.0  # in the drain: the timeline reaches it
    assert tl["t"].tolist() == list(range(21))
    ends = np.bincount(np.floor(rejected["completion"]).astype(int), minlength=21)
    assert (tl["rejections"].to_numpy() == ends).all()
    assert s["late"] > 0 and s["slo_violations"] == s["late"] + len(rejected)
    assert tl["violations"].sum() == (~q["slo_met"]).sum() == s["slo_violations"]
    assert tl["late"].sum() == s["late"] and tl["completions"].sum() == s["served"]
    assert (tl["violations"] <= tl["completions"] + tl["rejections"] + tl["failures"]).all()


def test_utilisation_stays_within_one_when_batches_outlast_a_second(h: Any) -> None:
    # One 8-core replica of a 2.5 s model on an 8-vCPU worker, 12 queries queued at once: the
    # worker is fully busy from 0.5 s to 30.5 s. Charged in the second each batch ended, a
    # second would read 2.5 and its neighbours 0.
    slow = Variant("cpu-slow", "m", "cls", "ds", "fw", CPU, "fp32", 8, 1, 0.7, 100, 100, 2500.0, 0.0)
    wl = h.workload([h.pinned_app("cpu-slow")], np.full(12, 0.5))
    res = h.simulate([slow], wl, make_policy("static", replicas=1), 40.0)
    assert (res.queries["status"] == "served").all()
    util = res.timeline.set_index("t")["util_cpu"]
    assert ((util >= 0) & (util <= 1)).all()
    assert util.loc[1:29].to_numpy() == pytest.approx(1.0)
    assert util.loc[0] == pytest.approx(0.5) and util.loc[30] == pytest.approx(0.5)
    assert (util.loc[31:] == 0).all()
    assert res.summary["utilisation"]["cpu"] == pytest.approx(30 / 40)


def test_allocated_cores_give_core_hours(h: Any) -> None:
    # Three replicas of a 2-core variant (one 8-vCPU worker) for 30 s: 6 cores held throughout.
    wl = h.workload([h.pinned_app("cpu-d10")], h.periodic_times(0.5, 29.0))
    res = h.simulate(h.VARIANTS, wl, make_policy("static", replicas=3), 30.0)
    tl, s = res.timeline, res.summary
    assert len(tl) == 30 and (tl["allocated_cpu"] == 6).all()
    assert (tl["allocated_gpu"] == 0).all() and (tl["allocated_inferentia"] == 0).all()
    assert s["core_hours"] == pytest.approx(2 * 3 * 30 / 3600, rel=1 / 30)
    assert s["allocated_unit_hours"] == {"cpu": s["core_hours"], "gpu": 0.0, "inferentia": 0.0}


def test_records_packed_into_columns_as_the_run_goes_read_back_the_same(
    h: Any, mixed: RunResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The recorder packs its tuples into typed columns every CHUNK outcomes (bounded in-loop
    # memory): with chunks of 7 the same run gives the same records, bit for bit.
    import infaas_sim.records as records

    monkeypatch.setattr(records, "CHUNK", 7)
    again = mixed_run(h)
    pd.testing.assert_frame_equal(again.queries, mixed.queries)
    assert again.summary["queries"] == mixed.summary["queries"]


def test_a_rejection_costs_a_reference_to_one_string_per_distinct_reason(h: Any) -> None:
    # Sustained overload rejects with the same few texts over and over: each distinct text is
    # kept once, whatever the number of queries (bounded memory), and reads back unchanged.
    from infaas_sim.metrics import Recorder
    from infaas_sim.query import Query

    app = h.task_app(slo_ms=15, index=0, name="a")
    rec = Recorder(Catalog(h.VARIANTS), [app])
    for i in range(1000):
        rec.arrival()
        rec.rejected(Query(i, 0.0, app, 1), "".join(["expected wait ", f"{30 + i % 3} s"]), 0.0)  # a fresh str each
    reasons = rec._columns()[4]
    assert len({id(r) for r in reasons}) == 3
    assert sorted(set(rec.frame()["reason"])) == ["expected wait 30 s", "expected wait 31 s", "expected wait 32 s"]
