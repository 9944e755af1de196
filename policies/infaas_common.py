"""INFaaS arithmetic shared by the online policies (``infaas``, ``infaas-ilp``) and the
offline solvers (the greedy plan and the ILP in :mod:`policies.infaas_ilp`).

Everything here is plain functions on plain numbers, so that the online autoscaler and the
offline greedy that the benchmark compares with the ILP take *the same* decisions:

- :func:`capacity`: the one capacity rule, for a variant and the SLO it serves: its batch
  limit (the largest batch whose profiled latency fits half the SLO, as
  :mod:`infaas_sim.sizing` does) and the inputs/s one replica sustains running such batches.
  The online autoscaler sizes and batches a variant with it (at the tightest SLO the variant
  recently served), and the ILP and the greedy count capacity with it, so the three agree on
  what a replica carries; :func:`serving_batch` / :func:`saturation_throughput` are its parts;
- :func:`replicas_for`: ``ceil(slack x demand / throughput)``, at least one;
- :func:`route_key` / :func:`cold_key`: INFaaS's per-query preference among running variants
  (least slack) and among variants that are not (least load + inference latency), CPU first
  for loose SLOs in both;
- :func:`plan_scale_up`: replicate or upgrade (the 1.5x load-time rule, or when replica or
  memory limits force it);
- :func:`downgrade_due`: the GPU (10x SLO, 3% load) / Inferentia (5x, 20%) downgrade rule;
- :func:`cheapest_option`: the cheapest variant able to carry a demand (downgrade target,
  and the upgrade target among faster variants).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from infaas_sim.hardware import HardwareKind
from infaas_sim.sizing import BATCH_SLO_SHARE

#: INFaaS looks at CPU variants first for SLOs above this (ms).
LOOSE_SLO_MS = 100.0


def serving_batch(latency_by_batch: Sequence[float], slo_ms: float | None, share: float = BATCH_SLO_SHARE) -> int:
    """The largest batch whose latency fits ``share`` of the SLO (at least 1).
    ``latency_by_batch[b]`` is the batch-b latency, index 0 unused."""
    top = len(latency_by_batch) - 1
    if slo_ms is None or math.isinf(slo_ms):
        return top
    budget = slo_ms * share
    best = 1
    for b in range(1, top + 1):
        if latency_by_batch[b] <= budget:
            best = b
    return best


@dataclass(frozen=True, slots=True)
class Capacity:
    """What one replica of a variant offers under an SLO."""

    batch: int  # the batcher limit: the largest batch whose latency fits the SLO's share
    throughput: float  # inputs/s one replica sustains running batches of that size


def capacity(latency_by_batch: Sequence[float], slo_ms: float | None, share: float = BATCH_SLO_SHARE) -> Capacity:
    """A variant's batch limit and per-replica throughput for ``slo_ms``: the rule both the
    online policy (batch limit, scale-up and -down) and the ILP (capacity constraint) use.

    INFaaS's released code runs a variant at the batch its profiled latency allows within the
    SLO and counts capacity as replicas x 1000 / latency_ms x batch
    (../shared/reference/policies.md); here the batch may use half the SLO, leaving the rest
    for queueing and batching."""
    b = serving_batch(latency_by_batch, slo_ms, share)
    return Capacity(b, 1000.0 * b / latency_by_batch[b])


def saturation_throughput(latency_by_batch: Sequence[float], slo_ms: float | None) -> float:
    """Inputs per second one replica sustains running full serving batches."""
    return capacity(latency_by_batch, slo_ms).throughput


def replicas_for(demand: float, throughput: float, slack: float) -> int:
    """Replicas needed so that replicas x throughput >= slack x demand (at least 1)."""
    if demand <= 0:
        return 1
    return max(1, math.ceil(slack * demand / throughput - 1e-9))


def route_key(latency_ms: float, slo_ms: float, is_cpu: bool, loose_slo_ms: float = LOOSE_SLO_MS) -> tuple[int, float]:
    """INFaaS's preference among variants that fit: CPU first for loose SLOs, then the least
    slack (SLO - latency). Smaller is better."""
    return (0 if is_cpu or slo_ms <= loose_slo_ms else 1, slo_ms - latency_ms)


def cold_key(load_ms: float, latency_ms: float, slo_ms: float, is_cpu: bool,
             loose_slo_ms: float = LOOSE_SLO_MS) -> tuple[float, float]:  # fmt: skip
    """INFaaS's preference among variants that are not running: CPU first for loose SLOs,
    then the least load + inference latency (what the waiting query pays). Smaller is better."""
    return (0.0 if is_cpu or slo_ms <= loose_slo_ms else 1.0, load_ms + latency_ms)


def price_key(
    price_per_hour: float, throughput: float, load_ms: float, latency_ms: float, demand: float, slack: float
) -> tuple[float, float]:
    """The ``price_aware`` preference among variants that are not running (not INFaaS): the
    least price of the replicas carrying ``demand`` (inputs/s; one replica at no demand), then
    the least load + inference latency."""
    return (replicas_for(demand, throughput, slack) * price_per_hour, load_ms + latency_ms)


@dataclass(frozen=True, slots=True)
class Option:
    """A variant as the autoscaler weighs it, for one demand and SLO."""

    index: int
    throughput: float  # saturation inputs/s per replica at the SLO
    load_s: float
    price_per_hour: float  # one replica
    latency_ms: float  # batch-1


def cheapest_option(options: Sequence[Option], demand: float, slack: float) -> tuple[Option, int] | None:
    """The option (and its replicas) carrying ``demand`` at the least price; ties go to the
    fewer load seconds, then the faster variant."""
    best: tuple[float, float, float, int] | None = None
    pick: tuple[Option, int] | None = None
    for o in options:
        n = replicas_for(demand, o.throughput, slack)
        key = (n * o.price_per_hour, n * o.load_s, o.latency_ms, o.index)
        if best is None or key < best:
            best, pick = key, (o, n)
    return pick


@dataclass(frozen=True, slots=True)
class ScalePlan:
    """``action`` is "keep", "replicate" (to ``replicas`` of ``target``) or "upgrade"
    (``replicas`` of ``target``, then drop the source)."""

    action: str
    target: int
    replicas: int


def plan_scale_up(
    current: Option,
    replicas: int,
    demand: float,
    upgrades: Sequence[Option],
    slack: float,
    upgrade_load_ratio: float = 1.5,
    max_replicas: int = 32,
    room_for: int | None = None,
    price_aware: bool = False,
) -> ScalePlan:
    """INFaaS's scale-up decision for one running variant.

    ``room_for``: how many more replicas of the current variant can be placed (None: no
    limit). Upgrade to the cheapest faster option when replication's total load time
    (deficit x load time) exceeds ``upgrade_load_ratio`` x the upgrade's (its replicas x its
    load time), or when the replica limit or memory force it; otherwise replicate.
    ``price_aware`` (not INFaaS): upgrade only when the upgrade costs less per hour than the
    replicas (or limits force it)."""
    need = replicas_for(demand, current.throughput, slack)
    if need <= replicas:
        return ScalePlan("keep", current.index, replicas)
    deficit = need - replicas
    faster = [u for u in upgrades if u.throughput > current.throughput and u.index != current.index]
    up = cheapest_option(faster, demand, slack) if faster else None
    if up is not None:
        u, n_u = up
        forced = need > max_replicas or (room_for is not None and room_for < deficit)
        if price_aware:
            better = (n_u * u.price_per_hour, n_u * u.load_s) < (
                need * current.price_per_hour,
                deficit * current.load_s,
            )
        else:
            better = deficit * current.load_s > upgrade_load_ratio * n_u * u.load_s
        if forced or better:
            return ScalePlan("upgrade", u.index, n_u)
    return ScalePlan("replicate", current.index, min(need, max_replicas))


def downgrade_due(
    kind: HardwareKind,
    slo_ms: float,
    latency_ms: float,
    demand: float,
    capacity: float,
    gpu_slo_factor: float = 10.0,
    gpu_load_share: float = 0.03,
    inf_slo_factor: float = 5.0,
    inf_load_share: float = 0.20,
) -> bool:
    """An accelerated variant serving an SLO far above its latency at a small share of its
    capacity should move to a cheaper CPU variant."""
    if kind is HardwareKind.GPU:
        factor, share = gpu_slo_factor, gpu_load_share
    elif kind is HardwareKind.INFERENTIA:
        factor, share = inf_slo_factor, inf_load_share
    else:
        return False
    return slo_ms > factor * latency_ms and demand < share * capacity
