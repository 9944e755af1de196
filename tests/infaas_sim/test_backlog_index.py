"""The least-backlog index (:mod:`infaas_sim.backlog_index`): on long routable lists the
cluster answers ``view.least_backlog`` in O(log n), with the full scan's choice, always."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infaas_sim import cluster as cluster_mod
from infaas_sim.catalog import Candidates
from infaas_sim.dispatch import least_backlog
from infaas_sim.executor import make_executor
from infaas_sim.policy import Action, Decision, Load, Reject, Resize, Serve, SetBatch, Unload
from infaas_sim.query import Query
from infaas_sim.view import ClusterView


def _compare(vid: str, seen: list[int], wrong: list[tuple[float, int | None, int | None]]) -> Any:
    """A route that asks the index and the scan, notes any difference, and serves the scan's."""

    def route(query: Query, candidates: Candidates, view: ClusterView) -> Decision:
        vi = view.catalog.index_of[vid]
        scan = least_backlog(view.pool_instances(vi, None), view.now)
        indexed = view.least_backlog(vi, None)
        seen.append(len(view.pool_instances(vi, None)))
        if indexed is not scan:
            wrong.append((view.now, None if scan is None else scan.iid, None if indexed is None else indexed.iid))
        return Reject("nothing runs") if scan is None else Serve(scan)

    return route


def _changes(vid: str, rng: np.random.Generator, ticks: int) -> dict[float, Any]:
    """At each tick, a random change of the replicas: load or unload some, a new batch limit
    or wait, a resize (CPU)."""

    def change(view: ClusterView) -> list[Action]:
        vi = view.catalog.index_of[vid]
        insts = list(view.pool_instances(vi, None))
        acts: list[Action] = []
        for _ in range(int(rng.integers(0, 3))):
            what = int(rng.integers(0, 4))
            if what == 0 or not insts:
                acts.append(Load(vid))
            elif what == 1 and len(insts) > 1:
                acts.append(Unload(insts[int(rng.integers(len(insts)))].iid))
            elif what == 2:
                inst = insts[int(rng.integers(len(insts)))]
                wait = None if rng.random() < 0.5 else float(rng.choice([0.0, 0.002, 0.01]))
                acts.append(SetBatch(inst.iid, int(rng.integers(1, 9)), wait))
            else:
                inst = insts[int(rng.integers(len(insts)))]
                acts.append(Resize(inst.iid, float(rng.choice([1.0, 2.0, 4.0]))))
        return acts

    return {float(t): change for t in range(1, ticks)}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    vid=st.sampled_from(["cpu-d10", "cpu-batch", "gpu-a"]),
    replicas=st.integers(1, 10),
    load=st.floats(0.3, 1.6),
    noise=st.sampled_from([0.0, 0.3]),
    max_wait_ms=st.sampled_from([0.0, 3.0]),
    seed=st.integers(0, 2**16),
)
def test_the_index_picks_what_the_scan_picks(
    h: Any, monkeypatch: pytest.MonkeyPatch, vid: str, replicas: int, load: float, noise: float,
    max_wait_ms: float, seed: int,
) -> None:  # fmt: skip
    # From the first replica on, every query goes through the index (a long list's path),
    # under arrivals that keep replicas idle, busy and queued by turns; loads (on starting
    # workers too), unloads, new batch limits and resizes come at random between; the
    # sim executor's noise makes batches end before and after their estimates.
    monkeypatch.setattr(cluster_mod, "INDEX_FROM", 1)
    per_replica_qps = {"cpu-d10": 100.0, "cpu-batch": 150.0, "gpu-a": 400.0}[vid]
    rate = load * per_replica_qps * replicas
    t = h.poisson_times(rate, 8.0, seed=seed)
    seen: list[int] = []
    wrong: list[tuple[float, int | None, int | None]] = []
    rng = np.random.default_rng(seed)
    policy = h.Scripted(setup=[Load(vid) for _ in range(replicas)], route=_compare(vid, seen, wrong),
                        at=_changes(vid, rng, 8), tick_s=1.0)  # fmt: skip
    spec = h.spec(max_wait_s=max_wait_ms / 1000, max_queue_s=0.5)
    res = h.simulate(h.VARIANTS, h.workload([h.pinned_app(vid)], t), policy, 8.0, spec=spec,
                     executor=make_executor("sim", noise_cv=noise), seed=seed)  # fmt: skip
    assert len(res.queries) == len(t)
    assert seen and max(seen) >= 1
    assert wrong == []


def test_a_long_list_is_dispatched_through_the_index_and_a_short_one_by_the_scan(h: Any) -> None:
    # 40 replicas (over INDEX_FROM) get an index at the first query; 4 do not. Either way
    # the 1,000 queries at 1 ms spacing are served by the 10 ms replicas without waiting.
    assert cluster_mod.INDEX_FROM <= 40
    for n, indexed in ((40, True), (4, False)):
        had: list[bool] = []

        def route(query: Query, candidates: Candidates, view: ClusterView, had: list[bool] = had) -> Decision:
            vi = view.catalog.index_of["cpu-d10"]
            best = view.least_backlog(vi, None)
            had.append(any(getattr(i, "bix", None) is not None for i in view.pool_instances(vi, None)))
            return Reject("none") if best is None else Serve(best)

        t = h.periodic_times(0.001, 1.0, start=10.0)  # after the workers' 5 s start-up
        policy = h.Scripted(setup=[Load("cpu-d10") for _ in range(n)], route=route, tick_s=None)
        res = h.simulate(h.VARIANTS, h.workload([h.pinned_app("cpu-d10")], t), policy, 12.0)
        assert (res.queries["status"] == "served").all()
        assert all(had) if indexed else not any(had)
        if indexed:
            assert res.queries["queueing_ms"].max() < 1e-6
