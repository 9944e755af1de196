"""Pipelines: a query as a chain of model-less stages sharing one end-to-end SLO. Each stage
is routed when the previous one completes; the record keeps every stage's timing; a stage
rejected or failed ends the query with that outcome; every query has one record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from infaas_sim.catalog import Catalog
from infaas_sim.errors import ConfigError
from infaas_sim.executor import make_executor
from infaas_sim.policy import Load, Reject
from infaas_sim.query import Application, Level, Pipeline, Query, Requirement
from infaas_sim.simulation import Fault, RunSpec, run_simulation

# Stage 1 detects (det-cpu: 5 + b ms, accuracy 0.5), stage 2 classifies (the tiny catalog).
DETECT = Requirement(Level.TASK, "det", "ds", slo_ms=50)
CLASSIFY = Requirement(Level.TASK, "cls", "ds", slo_ms=50)


@pytest.fixture(scope="module")
def catalog(pipeline_catalog: Catalog) -> Catalog:
    return pipeline_catalog


def _app(second: Requirement = CLASSIFY, slo_ms: float = 60.0, index: int = 0, name: str = "vid") -> Application:
    return Application.of_pipeline(name, Pipeline((DETECT, second), slo_ms=slo_ms), index=index)


def _policy(h: Any, seen: list[tuple[int, int, float]] | None = None, **kw: Any) -> Any:
    """Join-shortest-queue on the fastest loaded candidate; notes (qid, stage, budget left)."""

    def route(query: Query, cands: Any, view: Any) -> Any:
        if seen is not None:
            seen.append((query.qid, query.stage, query.remaining_slo_ms(view.now)))
        for vi in cands.indices:
            d = h.jsq(view, vi)
            if d is not None:
                return d
        return Reject(f"nothing loaded for {query.requirement.describe()}")

    return h.Scripted(setup=[Load("det-cpu"), Load("cpu-d10")], route=route, **kw)


def test_the_helper_builds_the_same_pipeline(h: Any) -> None:
    app = h.pipeline_app(60.0, stage_slo_ms=(50, 50))
    assert app.stages == (DETECT, CLASSIFY) and app.slo_ms == 60.0


def test_the_types_describe_a_pipeline() -> None:
    app = _app()
    assert app.stages == (DETECT, CLASSIFY) and app.requirement == DETECT and app.slo_ms == 60.0
    assert "pipeline [task det/ds within 50 ms -> task cls/ds within 50 ms] within 60 ms" in app.describe()
    q = Query(0, 1.0, app, 1)
    assert (q.stage, q.requirement, q.last_stage) == (0, DETECT, False)
    assert q.remaining_slo_ms(1.02) == pytest.approx(40.0)
    q.next_stage(1.01)
    assert (q.stage, q.requirement, q.submitted, q.last_stage) == (1, CLASSIFY, 1.01, True)
    with pytest.raises(ValueError, match="no stage after 1"):
        q.next_stage(1.02)
    with pytest.raises(ConfigError, match="first stage"):
        Application("x", CLASSIFY, pipeline=Pipeline((DETECT, CLASSIFY), 60.0))
    with pytest.raises(ConfigError, match="at least one stage"):
        Pipeline((), 60.0)
    with pytest.raises(ConfigError, match="slo_ms must be > 0"):
        Pipeline((DETECT,), 0.0)


def test_each_stage_runs_when_the_previous_completes_and_the_record_keeps_its_timing(
    h: Any, catalog: Catalog, conserved: Any
) -> None:
    # Every 100 ms a query: detection on det-cpu (6 ms), then classification on the fastest
    # loaded classifier, cpu-d10 (10 ms): 16 ms end to end, within the 60 ms SLO.
    seen: list[tuple[int, int, float]] = []
    t = h.periodic_times(0.1, 3.0, start=0.05)
    policy = _policy(h, seen, watch=lambda v: (v.stage_rate(0, 0, 1.0), v.stage_rate(0, 1, 1.0)))
    res = h.simulate(catalog, h.workload([_app()], t), policy, 3.0)
    conserved(res, len(t))
    q = res.queries
    assert (q["status"] == "served").all()
    assert (q["stages"] == 2).all()
    assert q["stage_variants"].map(list).tolist() == [["det-cpu", "cpu-d10"]] * len(t)
    lat = np.array(q["stage_latency_ms"].tolist())
    assert np.allclose(lat, [6.0, 10.0])
    assert np.allclose(np.array(q["stage_execution_ms"].tolist()), [6.0, 10.0])
    assert np.allclose(q["latency_ms"], 16.0) and q["slo_met"].all() and (q["slo_ms"] == 60.0).all()
    assert np.allclose(q["execution_ms"], 16.0) and (q["variant"] == "cpu-d10").all()
    assert np.allclose(q["completion"] - q["arrival"], 0.016)
    # Accuracy of a served pipeline query: the mean of its stages' accuracies.
    assert np.allclose(q["accuracy"], (0.5 + 0.70) / 2)
    # Ten queries a second reach each stage.
    rates = [r for when, r in policy.log if when >= 1.0]
    assert len(rates) >= 2 and all(r == pytest.approx((10.0, 10.0)) for r in rates)
    # The policy routed stage 1 of each query 6 ms after its arrival, with 54 ms left.
    second = [(qid, left) for qid, stage, left in seen if stage == 1]
    assert len(second) == len(t) and np.allclose([left for _, left in second], 54.0)


def test_a_rejected_or_failed_stage_ends_the_query_with_that_outcome(h: Any, catalog: Catalog, conserved: Any) -> None:
    # App "acc" needs accuracy 0.75 at stage 2: only GPU variants, none loaded: rejected at
    # stage 2 after detection ran. App "vid" is served until worker 0 crashes at 2 s; later
    # queries find nothing loaded and are rejected at stage 1.
    acc = _app(Requirement(Level.TASK, "cls", "ds", slo_ms=50, min_accuracy=0.75), index=1, name="acc")
    t, idx = h.merge((h.periodic_times(0.1, 4.0, start=0.05), 0), (h.periodic_times(0.1, 4.0, start=0.07), 1))
    res = h.simulate(catalog, h.workload([_app(), acc], t, idx), _policy(h), 4.0,
                     faults=[Fault(at_s=2.0, kind="crash", worker=0)])  # fmt: skip
    conserved(res, len(t))
    q = res.queries
    a = q[q["app"] == "acc"]
    early = a[a["arrival"] < 2.0]
    assert (early["status"] == "rejected").all()
    assert early["reason"].str.startswith("stage 2 of 2 (task cls/ds within 50 ms at accuracy >= 0.75)").all()
    assert early["stage_variants"].map(list).tolist() == [["det-cpu"]] * len(early)
    assert np.allclose(np.array(early["stage_latency_ms"].tolist()), [[6.0]])
    v = q[q["app"] == "vid"]
    late = v[v["arrival"] > 2.0]
    assert (v.loc[v["arrival"] < 1.9, "status"] == "served").all()
    assert (late["status"] == "rejected").all() and late["reason"].str.startswith("stage 1 of 2").all()
    assert late["stage_latency_ms"].map(len).eq(0).all()


def test_a_stage_nothing_can_serve_is_a_config_error_naming_the_stage(h: Any, catalog: Catalog) -> None:
    impossible = _app(Requirement(Level.TASK, "cls", "ds", slo_ms=1.0))
    with pytest.raises(ConfigError, match="application 'vid' stage 2: no variant meets"):
        run_simulation(catalog, h.workload([impossible], np.array([0.1])), _policy(h), make_executor("sim"),
                       h.spec(), RunSpec(duration_s=1.0))  # fmt: skip


def test_pipeline_records_round_trip_through_parquet_and_runs_repeat(h: Any, catalog: Catalog, tmp_path: Path) -> None:
    t = h.poisson_times(50, 3.0, seed=5)
    runs = [h.simulate(catalog, h.workload([_app()], t), _policy(h), 3.0, seed=3).queries for _ in range(2)]
    pd.testing.assert_frame_equal(runs[0], runs[1])
    runs[0].to_parquet(tmp_path / "q.parquet", index=False)
    back = pd.read_parquet(tmp_path / "q.parquet")
    assert back["stage_variants"].map(list).tolist() == runs[0]["stage_variants"].map(list).tolist()
    assert np.allclose(np.array(back["stage_latency_ms"].tolist()), np.array(runs[0]["stage_latency_ms"].tolist()))


def test_single_model_records_have_no_stage_lists(h: Any) -> None:
    res = h.simulate(h.VARIANTS, h.workload([h.pinned_app("cpu-d10")], np.array([0.1])),
                     h.Scripted(setup=[Load("cpu-d10")]), 1.0)  # fmt: skip
    row = res.queries.iloc[0]
    assert row["stages"] == 1 and row["stage_variants"] is None and row["stage_latency_ms"] is None
