"""Dispatch rules (:mod:`infaas_sim.dispatch`): least backlog in time, join-shortest-queue by
count, round robin; and the ``dispatch`` parameter of the policies that use them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from infaas_sim.dispatch import DISPATCH_RULES, least_backlog, round_robin, shortest_queue
from infaas_sim.errors import ConfigError
from infaas_sim.policy import make_policy
from infaas_sim.view import InstanceState

D_MS = 10.0  # per-query latency of the replicas below


@dataclass(frozen=True)
class Replica:
    """The part of an InstanceView the rules read: a batch-1 replica of D_MS per query."""

    name: str
    queued_inputs: int = 0
    inflight_inputs: int = 0
    busy_until: float = 0.0
    state: InstanceState = InstanceState.READY

    def backlog_s(self, now: float) -> float:
        running = max(0.0, self.busy_until - now) if self.inflight_inputs else 0.0
        return running + self.queued_inputs * D_MS / 1000


def test_least_backlog_sends_a_query_to_the_replica_that_frees_first_where_counts_tie() -> None:
    # Both replicas run one query (10 ms); b started 8 ms after a. At t = 9 ms, a frees in
    # 1 ms and b in 9 ms. Counting outstanding inputs (1 each) cannot tell them apart and
    # takes the first in list order, b: the query waits 8 ms longer than it needs to. This
    # was the static policy's routing: at utilisation 0.8, 4 replicas waited about 20%
    # longer than the M/D/4 queue they should equal.
    now = 0.009
    a = Replica("a", inflight_inputs=1, busy_until=0.010)
    b = Replica("b", inflight_inputs=1, busy_until=0.018)
    assert least_backlog([b, a], now) is a
    assert least_backlog([a, b], now) is a
    assert shortest_queue([b, a]) is b


def test_least_backlog_weighs_queued_work_against_the_running_batch() -> None:
    now = 0.0
    queued = Replica("queued", queued_inputs=2, inflight_inputs=1, busy_until=0.001)  # 21 ms
    long_batch = Replica("long", inflight_inputs=1, busy_until=0.015)  # 15 ms
    assert least_backlog([queued, long_batch], now) is long_batch
    assert shortest_queue([queued, long_batch]) is long_batch  # 3 inputs against 1


def test_an_idle_replica_is_taken_at_once_and_ties_go_to_list_order() -> None:
    busy = Replica("busy", inflight_inputs=1, busy_until=0.004)
    idle1, idle2 = Replica("idle1"), Replica("idle2")
    assert least_backlog([busy, idle1, idle2], 0.0) is idle1
    assert shortest_queue([busy, idle1, idle2]) is idle1
    # A replica still loading has no queue, yet is not idle: its backlog is its load time.
    loading = Replica("loading", state=InstanceState.LOADING)
    assert least_backlog([loading, idle2], 0.0) is idle2
    assert least_backlog([], 0.0) is None and shortest_queue([]) is None


def test_round_robin_cycles_through_the_replicas_in_order() -> None:
    reps = [Replica("a"), Replica("b", queued_inputs=5), Replica("c")]
    picked = [r.name for r in (round_robin(reps, turn) for turn in range(7)) if r is not None]
    assert picked == ["a", "b", "c", "a", "b", "c", "a"]  # blind to the queue b holds
    assert round_robin([], 3) is None


@pytest.mark.parametrize("rule", DISPATCH_RULES)
def test_static_routes_by_its_dispatch_rule(rule: str, h: Any, conserved: Any) -> None:
    # Three replicas of a 10 ms model, one query every 20 ms: every replica is idle when a
    # query arrives. least_backlog and shortest_queue take the first idle one each time;
    # round_robin cycles through all three.
    t = h.periodic_times(0.020, 0.6)
    res = h.simulate(h.VARIANTS, h.workload([h.pinned_app("cpu-d10")], t),
                     make_policy("static", replicas=3, dispatch=rule), 1.0)  # fmt: skip
    conserved(res, len(t))
    inst = res.queries.sort_values("qid")["instance"].to_numpy()
    if rule == "round_robin":
        assert np.array_equal(inst, np.resize(np.unique(inst), len(inst))) and len(np.unique(inst)) == 3
    else:
        assert len(np.unique(inst)) == 1


@pytest.mark.parametrize("policy", ["static", "clipper+", "sagemaker+", "hpa", "vpa"])
def test_an_unknown_dispatch_rule_is_a_one_line_config_error(policy: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_policy(policy, dispatch="random")
    msg = str(err.value)
    assert "\n" not in msg and "dispatch" in msg and policy in msg and "least_backlog" in msg
