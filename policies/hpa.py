"""``hpa``: the Kubernetes Horizontal Pod Autoscaler on CPU utilisation, a fixed variant per
application (one Deployment per variant), as the floor that InfAdapter and Themis compare with.

What follows Kubernetes (the HPA documentation and kube-controller-manager's replica
calculator and behaviour code)
  - Every ``sync_period_s`` (15 s, ``--horizontal-pod-autoscaler-sync-period``), each ready
    replica's utilisation is measured against its request, and
    ``desired = ceil(current x mean utilisation / target)`` with ``target_utilization`` 0.7;
    no change while the ratio is within ``tolerance`` (0.1) of 1.
  - Replicas that are not ready (loading) or became ready within the last sync period have
    no usable sample: they are left out of the mean; when the ready ones call for a scale-up
    they count at 0% (so that starting replicas damp a scale-up), and a scale-up that
    vanishes with them counted, or a recomputed count that would reverse its direction,
    keeps the current count (:func:`hpa_recommendation`).
  - Stabilisation (:func:`stabilize`): the recommendation applied is at most the highest
    recommendation of the last ``scale_down_stabilization_s`` (300 s) and at least the
    lowest of the last ``scale_up_stabilization_s`` (0 s): a drop in load scales down only
    once every recommendation in the last 5 minutes agrees. The pre-provisioned replica
    count counts as a recommendation made at the start (else the first sync, with an empty
    history, could scale down at once).
  - Rate limits of the default behaviour: a sync adds at most max(100% of the current
    replicas, 4 replicas) (``scale_up_percent``, ``scale_up_pods``); scale-down is not rate
    limited (the default policy allows 100% per 15 s). Within ``min_replicas``..``max_replicas``.
  - The Deployment's replica controller converges the replicas to the desired count; a pod
    that cannot be scheduled brings up a node (the cluster autoscaler: a worker, paying its
    start-up), and a node left empty for ``node_idle_s`` (600 s, the cluster autoscaler's
    ``--scale-down-unneeded-time``) is removed.

Deviations, each with its reason
  - Utilisation is the replica's busy share over the sync period (the view's busy-time
    counter): a replica running a batch uses all its cores, so its CPU usage over its request
    is its busy share. A batch counts in the period it completes in. On GPU and Inferentia
    replicas the same busy share stands in for CPU (HPA would need a custom metric there).
  - The variant is chosen once, offline, as the other baselines do (the cheapest meeting
    the application's SLO and accuracy at its declared mean rate, at ``target_utilization``,
    on the hardware family ``hardware``); each replica batches up to the batch whose profiled
    latency fits half the SLO. ``deployment: shared`` by default: Kubernetes schedules the pods
    of all Deployments onto the same nodes (here applications that pick one variant also
    share one Deployment); ``dedicated`` gives each application a Deployment on nodes of its
    own. Queries go to a replica by ``dispatch`` (``least_backlog`` by default).
  - Scale-down removes replicas still starting first, then those on the emptiest workers
    (Kubernetes' ReplicaSet also prefers unready and newer pods; node packing is ours).
  - The cluster autoscaler removes only empty nodes; it does not move pods off under-used ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from infaas_sim.hysteresis import stabilize
from infaas_sim.placement import Room
from infaas_sim.policy import Action, WorkloadHint, register_policy
from infaas_sim.query import Application
from infaas_sim.view import ClusterView, InstanceState
from policies.baseline_common import BaselinePolicy, Counters, reconcile, release_idle_workers


def hpa_recommendation(current: int, utilisations: Sequence[float], unready: int, target: float,
                       tolerance: float = 0.1) -> int:  # fmt: skip
    """The replica calculator for a resource utilisation target: ``utilisations`` of the
    ready replicas (fractions of their request), ``unready`` replicas without a sample."""
    ready = len(utilisations)
    if ready == 0:
        return current
    usage = sum(utilisations)
    ratio = usage / ready / target
    if unready == 0 or ratio <= 1.0:
        if abs(1.0 - ratio) <= tolerance:
            return current
        return math.ceil(ratio * ready - 1e-9)
    # Scaling up with replicas not ready: count them at 0% usage and recompute.
    new_ratio = usage / (ready + unready) / target
    if abs(1.0 - new_ratio) <= tolerance or new_ratio < 1.0:
        return current
    desired = math.ceil(new_ratio * (ready + unready) - 1e-9)
    return max(desired, current)


def scale_up_limit(current: int, percent: float = 100.0, pods: int = 4) -> int:
    """The default behaviour's scale-up policies, the larger of: +``percent``% and +``pods``."""
    return max(math.ceil(current * (1 + percent / 100) - 1e-9), current + pods)


@register_policy("hpa")
class HpaPolicy(BaselinePolicy):
    def __init__(
        self,
        variants: Mapping[str, str] | None = None,
        sizing: str = "mean",
        target_utilization: float = 0.7,
        tolerance: float = 0.1,
        sync_period_s: float = 15.0,
        scale_down_stabilization_s: float = 300.0,
        scale_up_stabilization_s: float = 0.0,
        scale_up_percent: float = 100.0,
        scale_up_pods: int = 4,
        min_replicas: int = 1,
        max_replicas: int = 100,
        node_idle_s: float = 600.0,
        dispatch: str = "least_backlog",
        deployment: str = "shared",
        hardware: str = "any",
    ) -> None:
        self.check_number("target_utilization", target_utilization, 0, 1, low_open=True)
        super().__init__(variants, sizing, target_utilization, dispatch, deployment, hardware)
        self.check_number("tolerance", tolerance, 0, 1)
        self.check_number("sync_period_s", sync_period_s, 1)
        self.check_number("scale_down_stabilization_s", scale_down_stabilization_s, 0, 3600)
        self.check_number("scale_up_stabilization_s", scale_up_stabilization_s, 0, 3600)
        self.check_number("scale_up_percent", scale_up_percent, 0)
        self.check_number("scale_up_pods", scale_up_pods, 0, integer=True)
        if scale_up_percent == 0 and scale_up_pods == 0:
            raise self.error("scale_up_percent and scale_up_pods cannot both be 0 (no scale-up at all)")
        self.check_number("min_replicas", min_replicas, 1, integer=True)
        self.check_number("max_replicas", max_replicas, min_replicas, integer=True)
        self.check_number("node_idle_s", node_idle_s, 0)
        self.target_utilization = float(target_utilization)
        self.tolerance = float(tolerance)
        self.sync_period_s = float(sync_period_s)
        self.scale_down_stabilization_s = float(scale_down_stabilization_s)
        self.scale_up_stabilization_s = float(scale_up_stabilization_s)
        self.scale_up_percent = float(scale_up_percent)
        self.scale_up_pods = scale_up_pods
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.node_idle_s = float(node_idle_s)
        self.desired: dict[int, int] = {}
        self.history: dict[int, list[tuple[float, int]]] = {}  # deployment key -> (time, recommendation)
        self.counters = Counters()
        self.next_sync = self.sync_period_s
        self.empty_since: dict[int, float] = {}

    def setup(self, view: ClusterView, apps: Sequence[Application], hints: Mapping[str, WorkloadHint]) -> list[Action]:
        self.plan(view, apps, hints)
        actions: list[Action] = []
        for key, dep in self.deployments.items():
            n = max(self.min_replicas, min(self.max_replicas, dep.replicas))
            self.desired[key] = n
            self.history[key] = [(0.0, n)]  # the provisioned count stands as the first recommendation
            actions += self.provision(view, dep, n, max_batch=dep.serving_batch)
        return actions

    def autoscale(self, view: ClusterView) -> list[Action]:
        now = view.now
        if now + 1e-9 >= self.next_sync:
            self.next_sync += self.sync_period_s
            self._sync(view)
        room = Room(view)
        actions: list[Action] = []
        for key, dep in self.deployments.items():
            for inst in dep.instances(view):
                self.counters.watch(inst, now)
            actions += reconcile(view, room, dep, self.desired[key], max_batch=dep.serving_batch)
        return release_idle_workers(view, room, self.empty_since, self.node_idle_s) + actions

    def _sync(self, view: ClusterView) -> None:
        now = view.now
        live: list[int] = []
        keep = max(self.scale_down_stabilization_s, self.scale_up_stabilization_s)
        for key, dep in self.deployments.items():
            utils: list[float] = []
            unready = 0
            for inst in dep.instances(view):
                live.append(inst.iid)
                d = self.counters.delta(inst, now)
                if d is not None and inst.state is InstanceState.READY and inst.ready_at <= d.since:
                    utils.append(d.utilisation)
                else:
                    unready += 1
            current = self.desired[key]
            rec = hpa_recommendation(current, utils, unready, self.target_utilization, self.tolerance)
            history = self.history[key]
            stable = stabilize(history, now, current, rec, self.scale_up_stabilization_s,
                               self.scale_down_stabilization_s)  # fmt: skip
            history.append((now, rec))
            del history[: sum(1 for t, _ in history if t <= now - keep)]
            if stable > current:
                stable = min(stable, scale_up_limit(current, self.scale_up_percent, self.scale_up_pods))
            self.desired[key] = max(self.min_replicas, min(self.max_replicas, stable))
        self.counters.prune(live)
