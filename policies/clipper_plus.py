"""``clipper+``: Clipper (Crankshaw et al., NSDI'17) as INFaaS's baseline: a fixed variant per
application, Clipper's adaptive batching, and replication when the queue grows.

What follows Clipper (the paper) and INFaaS's use of it
  - One variant per application, chosen once, offline: the named one, or the cheapest that
    meets the application's SLO and accuracy at its declared mean (``sizing: peak``: peak)
    rate on the hardware family ``hardware`` (:func:`policies.baseline_common.choose_variant`),
    pre-provisioned with enough replicas for that rate at ``target_util``. Never switched
    (INFaaS's point: Clipper leaves the choice of variant and hardware to the user).
  - Adaptive batching by AIMD on each replica's batch limit: while a batch at the limit takes
    no longer than the latency target, the limit grows by ``additive_step``; when it takes
    longer, the limit is cut by 10% (``decrease_factor`` 0.9, the paper's "small
    multiplicative backoff"), by at least one, never below 1 nor above the variant's max
    batch. Under a steady load the limit settles in a sawtooth just around the largest batch
    that meets the target.
  - Replication: when the replicas' queues keep growing (a new query would wait more than
    ``queue_slo_share`` of its SLO before its batch starts, for ``scale_out_ticks`` ticks in a
    row), add replicas of the same variant: enough for the recent input rate at the replicas'
    current batch limits and ``target_util``, at least one, at most ``max_replicas``. New
    replicas start at the deployment's median limit and pay the load (and a worker's
    start-up when no worker has room). While replicas are still loading, more are added only
    when the input rate needs more than already asked for.
  - Each application has a model container of its own on instances of its own
    (``deployment: dedicated``); ``shared``: applications that pick one variant share its
    replicas, on VMs shared with other variants. Queries go to a replica of the application's
    container by ``dispatch`` (``least_backlog``: the shortest estimated wait; ``round_robin``:
    how INFaaS's released baselines dispatched).

Deviations, each with its reason
  - The AIMD step is taken once per tick (``tick_s``, 1 s), not after every batch as in
    Clipper: policies act per tick, and the view exposes no per-batch latency, only each
    replica's cumulative busy time, batches and inputs. So the limit moves by one step per
    tick, and a backoff cuts 10% per tick however many batches ran over.
  - The latency of a batch at the limit is estimated, not observed: the replica's profiled
    latency at the limit, scaled by the ratio of the tick's observed mean batch latency to
    the profile at the tick's mean batch size (noise, a slowed-down worker and a resize show
    in that ratio). Clipper observes it when a full batch runs; under light load no batch
    fills, and with the observed latency of the small batches alone the limit would walk up
    to the variant's maximum unchecked, and a burst would then run oversized batches.
  - The latency target is ``slo_share`` (0.5) of the SLO, not the whole SLO: a query may wait
    for the batch in flight before its own runs, so batches of up to half the SLO keep the
    end-to-end latency within it. ``slo_share: 1.0`` is Clipper's literal rule.
  - The limit starts at the profiled batch that fits the target (``initial_batch: null``)
    rather than 1, so that a run does not begin with a replication storm while the limits
    climb; ``initial_batch: 1`` starts from scratch.
  - Clipper's released code sizes batches differently (average throughput x the time left to
    the deadline); this follows the paper's AIMD, which INFaaS names as Clipper's.
  - Replicas are never removed (Clipper has no scale-in; replicas added in a burst stay, as an
    operator's would). A replica lost to a crashed worker is replaced.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import median

from infaas_sim.placement import Room
from infaas_sim.policy import Action, SetBatch, WorkloadHint, register_policy
from infaas_sim.query import Application
from infaas_sim.view import ClusterView, InstanceState, InstanceView
from policies.baseline_common import BaselinePolicy, Counters, Deployment, reconcile


def aimd_step(limit: int, latency_at_limit_ms: float, target_ms: float, max_batch: int, step: int = 1,
              decrease_factor: float = 0.9) -> int:  # fmt: skip
    """Clipper's AIMD on one replica's batch limit: a batch at the limit within the target
    grows the limit by ``step``; one over it cuts the limit to ``decrease_factor`` of itself
    (by at least one). Within 1..``max_batch``."""
    if latency_at_limit_ms > target_ms * (1 + 1e-9):
        return max(1, min(limit - 1, math.floor(limit * decrease_factor)))
    return min(max_batch, limit + step)


def latency_at_limit(inst: InstanceView, limit: int, observed_ms: float, mean_batch: float) -> float:
    """What a batch at ``limit`` takes on ``inst``: its profiled latency, scaled by how the
    batches that ran compare with their profile (noise, a slowed-down worker, a resize)."""
    lo = max(1, min(limit, math.floor(mean_batch)))
    hi = max(1, min(limit, math.ceil(mean_batch)))
    profiled = inst.latency_ms(lo) + (inst.latency_ms(hi) - inst.latency_ms(lo)) * (mean_batch - lo)
    scale = observed_ms / profiled if profiled > 0 and mean_batch >= 1 else 1.0
    return inst.latency_ms(limit) * scale


@register_policy("clipper+")
class ClipperPlusPolicy(BaselinePolicy):
    def __init__(
        self,
        variants: Mapping[str, str] | None = None,
        sizing: str = "mean",
        target_util: float = 0.8,
        slo_share: float = 0.5,
        initial_batch: int | None = None,
        additive_step: int = 1,
        decrease_factor: float = 0.9,
        queue_slo_share: float = 0.5,
        scale_out_ticks: int = 2,
        rate_window_s: float = 5.0,
        max_replicas: int = 64,
        tick_s: float = 1.0,
        dispatch: str = "least_backlog",
        deployment: str = "dedicated",
        hardware: str = "any",
    ) -> None:
        super().__init__(variants, sizing, target_util, dispatch, deployment, hardware)
        self.check_number("slo_share", slo_share, 0, 1, low_open=True)
        if initial_batch is not None:
            self.check_number("initial_batch", initial_batch, 1, integer=True)
        self.check_number("additive_step", additive_step, 1, integer=True)
        self.check_number("decrease_factor", decrease_factor, 0, 1, low_open=True)
        if decrease_factor == 1:
            raise self.error("decrease_factor must be < 1, got 1")
        self.check_number("queue_slo_share", queue_slo_share, 0, low_open=True)
        self.check_number("scale_out_ticks", scale_out_ticks, 1, integer=True)
        self.check_number("rate_window_s", rate_window_s, 1)
        self.check_number("max_replicas", max_replicas, 1, integer=True)
        self.check_number("tick_s", tick_s, 0, low_open=True)
        self.slo_share = float(slo_share)
        self.initial_batch = initial_batch
        self.additive_step = additive_step
        self.decrease_factor = float(decrease_factor)
        self.queue_slo_share = float(queue_slo_share)
        self.scale_out_ticks = scale_out_ticks
        self.rate_window_s = float(rate_window_s)
        self.max_replicas = max_replicas
        self.tick_s = float(tick_s)
        self.desired: dict[int, int] = {}  # deployment key -> replicas
        self.backed_up: dict[int, int] = {}  # deployment key -> consecutive backed-up ticks
        self.counters = Counters()

    def target_ms(self, dep: Deployment) -> float:
        return math.inf if dep.slo_ms is None else self.slo_share * dep.slo_ms

    def start_batch(self, dep: Deployment) -> int:
        if self.initial_batch is not None:
            return min(self.initial_batch, dep.variant.max_batch)
        target = self.target_ms(dep)
        best = 1
        for b in range(1, dep.variant.max_batch + 1):
            if dep.variant.latency_by_batch[b] <= target:
                best = b
        return best

    def setup(self, view: ClusterView, apps: Sequence[Application], hints: Mapping[str, WorkloadHint]) -> list[Action]:
        self.plan(view, apps, hints)
        actions: list[Action] = []
        for key, dep in self.deployments.items():
            n = min(dep.replicas, self.max_replicas)
            self.desired[key] = n
            self.backed_up[key] = 0
            actions += self.provision(view, dep, n, max_batch=self.start_batch(dep))
        return actions

    def autoscale(self, view: ClusterView) -> list[Action]:
        now = view.now
        room = Room(view)
        actions: list[Action] = []
        live: list[int] = []
        for key, dep in self.deployments.items():
            insts = list(dep.instances(view))
            target = self.target_ms(dep)
            limits: list[int] = []
            for inst in insts:
                live.append(inst.iid)
                d = self.counters.delta(inst, now)
                limit = inst.max_batch
                if d is not None and d.batches > 0 and inst.state is InstanceState.READY:
                    at_limit = latency_at_limit(inst, limit, d.batch_latency_ms, d.mean_batch)
                    limit = aimd_step(limit, at_limit, target, dep.variant.max_batch, self.additive_step,
                                      self.decrease_factor)  # fmt: skip
                    if limit != inst.max_batch:
                        actions.append(SetBatch(inst.iid, limit))
                limits.append(limit)
            self._replicate(view, dep, insts)
            join = round(median(limits)) if limits else self.start_batch(dep)
            actions += reconcile(view, room, dep, self.desired[key], max_batch=join)
        self.counters.prune(live)
        return actions

    def _replicate(self, view: ClusterView, dep: Deployment, insts: Sequence[InstanceView]) -> None:
        """Raise the replica count when the queues keep growing: to what the recent input rate
        needs at the replicas' batch limits, and by at least one once the replicas asked for
        earlier are all serving."""
        key = dep.key
        now = view.now
        ready = [i for i in insts if i.state is InstanceState.READY]
        if dep.slo_ms is None or not ready:
            self.backed_up[key] = 0
            return
        wait = min(i.backlog_s(now) for i in ready)
        if wait <= self.queue_slo_share * dep.slo_ms / 1000:
            self.backed_up[key] = 0
            return
        self.backed_up[key] += 1
        if self.backed_up[key] < self.scale_out_ticks or self.desired[key] >= self.max_replicas:
            return
        per_replica = sum(1000.0 * i.max_batch / i.latency_ms(i.max_batch) for i in ready) / len(ready)
        need = math.ceil(dep.input_rate(view, self.rate_window_s) / (per_replica * self.target_util) - 1e-9)
        settled = len(ready) == len(insts) >= self.desired[key]
        if settled:
            need = max(need, self.desired[key] + 1)
        if need > self.desired[key]:
            self.desired[key] = min(self.max_replicas, need)
            self.backed_up[key] = 0
