"""``vpa``: the Kubernetes Vertical Pod Autoscaler, resizing each replica's cores toward its
observed usage, with a fixed variant and a fixed replica count; the floor InfAdapter compares
with.

What follows VPA (its recommender and updater)
  - Every ``recommender_interval_s`` (60 s, the recommender's loop) each ready replica's CPU
    usage over the interval is added to one usage histogram per Deployment (all replicas of
    a variant share it, as VPA aggregates by container), each sample weighted by the
    replica's request and by an exponential decay with ``half_life_s`` (24 h, VPA's CPU
    histogram half-life).
  - The target recommendation is the ``percentile`` (0.9) of that histogram x (1 +
    ``safety_margin``) (0.15), within ``min_cores``..``max_cores`` (the VPA object's
    minAllowed / maxAllowed; default max: the CPU worker's vCPUs), in millicores.
  - The updater applies it to a replica whose request differs from it by more than
    ``min_change`` (10%, the updater's significant-change threshold).
  - ``update_mode: in_place`` is VPA's ``InPlaceOrRecreate``: the replica's cores are
    resized in place (the cluster's ``Resize``; the new cores, and so the new latency, take
    effect after the cluster's ``resize_delay_s``, the restart cost; CPU resizes need no
    container restart in Kubernetes), and when its worker lacks the cores the replica is
    evicted and recreated. ``update_mode: recreate`` is VPA's ``Recreate``/``Auto``: every
    update evicts the replica and a new one is created with the new request, paying the
    model load (and a node's start-up when no worker has room; a node left empty is removed
    after ``node_idle_s``). Evictions follow the updater's safeguards: none for a Deployment
    of fewer than 2 replicas, at most half of its replicas at once.
  - New replicas (a replacement after a crash, a recreated one) get the current
    recommendation as their request, as VPA's admission controller sets it.

Deviations, each with its reason
  - Usage is the replica's busy share over the interval x its cores (the view's busy-time
    counter): a replica running a batch uses all its cores (the cluster model's Amdahl
    latency), so a saturated replica shows usage equal to its request, as a CPU-throttled
    container does, and VPA grows it by the safety margin per interval until it is no longer
    saturated.
  - The histogram keeps exact samples rather than VPA's exponential buckets (5% wide), and
    VPA's confidence-scaled lower/upper bounds (which gate its updater on young histories)
    are replaced by the 10% threshold alone: the simulated runs are hours, not days.
  - Only CPU replicas are resized: accelerated variants have no cores to resize (VPA manages
    CPU and memory requests, not devices), so on GPU/Inferentia variants ``vpa`` is static.
  - The variant and the replica count are chosen offline as the other baselines do (the
    cheapest meeting the SLO and accuracy at the declared mean rate on the hardware family
    ``hardware``, ``replicas`` for that rate at ``target_util``, or a fixed number); each
    replica batches up to the batch whose profiled latency fits half the SLO.
    ``deployment: shared`` by default, as for ``hpa`` (Kubernetes nodes hold pods of every
    Deployment); queries go to a replica by ``dispatch``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from infaas_sim.hardware import HardwareKind
from infaas_sim.placement import Room
from infaas_sim.policy import Action, Load, Resize, Unload, WorkloadHint, register_policy
from infaas_sim.query import Application
from infaas_sim.view import ClusterView, InstanceState, InstanceView
from policies.baseline_common import BaselinePolicy, Counters, Deployment, reconcile, release_idle_workers

UPDATE_MODES = ("in_place", "recreate")
#: The updater evicts at most this share of a Deployment's replicas at once ...
EVICTION_TOLERANCE = 0.5
#: ... and none of a Deployment with fewer replicas than this (``--min-replicas``).
MIN_REPLICAS_TO_EVICT = 2


class UsageHistogram:
    """Weighted usage samples with exponential decay; percentiles by cumulative weight."""

    def __init__(self, half_life_s: float) -> None:
        self.half_life_s = half_life_s
        self.samples: list[tuple[float, float, float]] = []  # (time, usage, weight)

    def add(self, t: float, usage: float, weight: float = 1.0) -> None:
        self.samples.append((t, usage, weight))

    def percentile(self, p: float, now: float) -> float | None:
        if not self.samples:
            return None
        pts = sorted((u, w * 2.0 ** ((t - now) / self.half_life_s)) for t, u, w in self.samples)
        total = sum(w for _, w in pts)
        acc = 0.0
        for u, w in pts:
            acc += w
            if acc >= p * total - 1e-12:
                return u
        return pts[-1][0]


def vpa_target(p_usage: float, safety_margin: float, min_cores: float, max_cores: float) -> float:
    """The target request: the usage percentile x (1 + margin), bounded, in millicores."""
    cores = math.ceil(p_usage * (1 + safety_margin) * 1000 - 1e-6) / 1000
    return max(min_cores, min(max_cores, cores))


@register_policy("vpa")
class VpaPolicy(BaselinePolicy):
    def __init__(
        self,
        variants: Mapping[str, str] | None = None,
        sizing: str = "mean",
        target_util: float = 0.8,
        replicas: int | None = None,
        percentile: float = 0.9,
        safety_margin: float = 0.15,
        min_cores: float = 1.0,
        max_cores: float | None = None,
        recommender_interval_s: float = 60.0,
        half_life_s: float = 86400.0,
        min_change: float = 0.1,
        update_mode: str = "in_place",
        node_idle_s: float = 600.0,
        dispatch: str = "least_backlog",
        deployment: str = "shared",
        hardware: str = "any",
    ) -> None:
        super().__init__(variants, sizing, target_util, dispatch, deployment, hardware)
        if replicas is not None:
            self.check_number("replicas", replicas, 1, integer=True)
        self.check_number("percentile", percentile, 0, 1, low_open=True)
        self.check_number("safety_margin", safety_margin, 0)
        self.check_number("min_cores", min_cores, 0, low_open=True)
        if max_cores is not None:
            self.check_number("max_cores", max_cores, min_cores)
        self.check_number("recommender_interval_s", recommender_interval_s, 1)
        self.check_number("half_life_s", half_life_s, 0, low_open=True)
        self.check_number("min_change", min_change, 0)
        if update_mode not in UPDATE_MODES:
            raise self.error(f"update_mode must be 'in_place' or 'recreate', got {update_mode!r}")
        self.check_number("node_idle_s", node_idle_s, 0)
        self.replicas = replicas
        self.percentile = float(percentile)
        self.safety_margin = float(safety_margin)
        self.min_cores = float(min_cores)
        self.max_cores = None if max_cores is None else float(max_cores)
        self.recommender_interval_s = float(recommender_interval_s)
        self.half_life_s = float(half_life_s)
        self.min_change = float(min_change)
        self.update_mode = update_mode
        self.node_idle_s = float(node_idle_s)
        self.desired: dict[int, int] = {}
        self.histograms: dict[int, UsageHistogram] = {}
        self.recommendation: dict[int, float] = {}  # deployment key -> target cores
        self.requested: dict[int, tuple[float, float]] = {}  # instance id -> (cores asked for, when)
        self.counters = Counters()
        self.next_run = self.recommender_interval_s
        self.empty_since: dict[int, float] = {}

    def setup(self, view: ClusterView, apps: Sequence[Application], hints: Mapping[str, WorkloadHint]) -> list[Action]:
        self.plan(view, apps, hints)
        actions: list[Action] = []
        for key, dep in self.deployments.items():
            n = self.replicas if self.replicas is not None else dep.replicas
            self.desired[key] = n
            self.histograms[key] = UsageHistogram(self.half_life_s)
            actions += self.provision(view, dep, n, max_batch=dep.serving_batch)
        return actions

    def cores_for(self, dep: Deployment) -> float | None:
        """The request of a new replica: the recommendation, once there is one."""
        return self.recommendation.get(dep.key) if dep.variant.hardware is HardwareKind.CPU else None

    def autoscale(self, view: ClusterView) -> list[Action]:
        now = view.now
        room = Room(view)
        actions: list[Action] = []
        for key, dep in self.deployments.items():
            for inst in dep.instances(view):
                self.counters.watch(inst, now)
            actions += reconcile(view, room, dep, self.desired[key], self.cores_for(dep), dep.serving_batch)
        if now + 1e-9 >= self.next_run:
            self.next_run += self.recommender_interval_s
            live: list[int] = []
            for dep in self.deployments.values():
                live += [i.iid for i in dep.instances(view)]
                if dep.variant.hardware is HardwareKind.CPU:
                    self._recommend(view, dep)
                    actions += self._update(view, room, dep)
            self.counters.prune(live)
            for iid in [i for i in self.requested if i not in set(live)]:
                del self.requested[iid]
        return release_idle_workers(view, room, self.empty_since, self.node_idle_s) + actions

    def _max_cores(self, view: ClusterView) -> float:
        return self.max_cores if self.max_cores is not None else float(view.instance_type_for(HardwareKind.CPU).vcpus)

    def _recommend(self, view: ClusterView, dep: Deployment) -> None:
        now = view.now
        hist = self.histograms[dep.key]
        for inst in dep.instances(view):
            d = self.counters.delta(inst, now)
            if d is not None and inst.state is InstanceState.READY and inst.ready_at <= d.since:
                hist.add(now, d.utilisation * inst.cores, inst.cores)
        p = hist.percentile(self.percentile, now)
        if p is not None:
            hi = self._max_cores(view)
            self.recommendation[dep.key] = vpa_target(p, self.safety_margin, min(self.min_cores, hi), hi)

    def _request(self, view: ClusterView, inst: InstanceView) -> float:
        """The replica's request: the cores of a resize asked for, until it applies. The view
        does not say whether a resize is pending or was refused; one not applied within a
        recommender interval (far longer than a resize delay) is taken as refused."""
        asked = self.requested.get(inst.iid)
        if asked is None or asked[0] == inst.cores or view.now - asked[1] >= self.recommender_interval_s:
            self.requested.pop(inst.iid, None)
            return inst.cores
        return asked[0]

    def _update(self, view: ClusterView, room: Room, dep: Deployment) -> list[Action]:
        target = self.recommendation.get(dep.key)
        if target is None:
            return []
        insts = list(dep.instances(view))
        n = len(insts)
        evictable = int(n * EVICTION_TOLERANCE) if n >= MIN_REPLICAS_TO_EVICT else 0
        actions: list[Action] = []
        for inst in insts:
            if inst.state is not InstanceState.READY:
                continue
            current = self._request(view, inst)
            if abs(target - current) <= self.min_change * current:
                continue
            grow = target - current
            if self.update_mode == "in_place" and grow <= room.free_cores(inst.worker_id) + 1e-9:
                actions.append(Resize(inst.iid, target))
                room.take_cores(inst.worker_id, grow)
                self.requested[inst.iid] = (target, view.now)
            elif evictable > 0:
                evictable -= 1
                room.grow(HardwareKind.CPU, dep.pool)
                actions += [
                    Unload(inst.iid),
                    Load(dep.variant_id, cores=target, max_batch=dep.serving_batch, allow_new_worker=True,
                         pool=dep.pool),
                ]  # fmt: skip
        return actions
