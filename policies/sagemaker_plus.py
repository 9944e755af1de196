"""``sagemaker+``: an Amazon SageMaker endpoint with target-tracking auto scaling, as INFaaS's
baseline: a fixed variant per application, horizontal scaling of its instances on
invocations per instance.

What follows SageMaker / Application Auto Scaling (AWS documentation)
  - One variant per application, chosen once, offline (named, or the cheapest meeting the
    application's SLO and accuracy at its declared mean rate, ``sizing``, on the hardware
    family ``hardware``), as a user picks an instance type and a model for an endpoint. Each
    application has an endpoint of its own on instances of its own (``deployment:
    dedicated``); ``shared``: applications that pick the same variant share one endpoint, and
    VMs hold instances of several endpoints.
  - The metric is ``SageMakerVariantInvocationsPerInstance``: requests per minute per
    in-service instance, one datapoint per ``metric_period_s`` (60 s, CloudWatch's 1-minute
    metric). Requests count as sent, including those turned away.
  - The target: ``target_invocations`` per instance per minute, or by default AWS's
    recommended formula, ``MAX_RPS x SAFETY_FACTOR x 60`` with ``safety_factor`` 0.5, where
    MAX_RPS is what one instance sustains (the saturation throughput of the variant at the
    batch whose latency fits half the SLO, per query of the application's batch size).
  - Target tracking's alarms: scale out when ``scale_out_periods`` (3) consecutive datapoints
    are above the target; scale in when ``scale_in_periods`` (15) consecutive datapoints are
    below ``scale_in_ratio`` (0.9) x the target. The new capacity is proportional:
    ceil(in-service instances x metric / target), i.e. the request rate over the target,
    within ``min_instances``..``max_instances``. While an alarm holds, it is re-evaluated
    every period.
  - Cool-downs: AWS's defaults for SageMaker variants are 300 s for both scale-in and
    scale-out (Application Auto Scaling, ``TargetTrackingScalingPolicyConfiguration``). A
    scale-in waits ``scale_in_cooldown_s`` (300 s) after the previous scale-in. The
    scale-out cool-down never delays a scale-out to a larger capacity, and counts the
    capacity already being added; here every scale-out is to a larger capacity computed from
    the request rate (instances still starting are counted), which is what it protects, so
    it needs no timer.
  - Each new instance pays the model load, and a VM's start-up when no worker has room.
    Endpoint creation is pre-provisioned: ``initial_instances`` (default: the target-tracking
    capacity at the sizing rate) before traffic.

Deviations, each with its reason
  - Instances are model replicas on the cluster's workers, as in INFaaS's emulation of
    SageMaker+ on its own workers: a replica goes to a worker with room when one has it, and
    only otherwise starts a VM; a worker left empty by scale-in is released after
    ``idle_worker_s`` (0: at once, as SageMaker terminates an instance).
  - Each instance batches up to the batch whose profiled latency fits half the SLO (SageMaker
    leaves batching to the serving container; this gives it the same batching as the other
    baselines).
  - The load balancer sends each request to an instance of the application's endpoint by
    ``dispatch``: ``least_backlog`` (the shortest estimated wait) by default; SageMaker's is
    not documented in that detail (least-outstanding-requests is its option, close to
    ``shortest_queue``).
  - Datapoints are taken on the policy's 1 s tick; the tick is 1 s (not the 60 s period) so
    that GPU replicas are placed one second after their worker is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from infaas_sim.hysteresis import Cooldown
from infaas_sim.placement import Room
from infaas_sim.policy import Action, WorkloadHint, register_policy
from infaas_sim.query import Application
from infaas_sim.sizing import replica_throughput
from infaas_sim.view import ClusterView, InstanceState
from policies.baseline_common import BaselinePolicy, Deployment, reconcile, release_idle_workers


@register_policy("sagemaker+")
class SageMakerPlusPolicy(BaselinePolicy):
    def __init__(
        self,
        variants: Mapping[str, str] | None = None,
        sizing: str = "mean",
        target_invocations: float | None = None,
        safety_factor: float = 0.5,
        initial_instances: int | None = None,
        min_instances: int = 1,
        max_instances: int = 100,
        metric_period_s: float = 60.0,
        scale_out_periods: int = 3,
        scale_in_periods: int = 15,
        scale_in_ratio: float = 0.9,
        scale_in_cooldown_s: float = 300.0,
        idle_worker_s: float = 0.0,
        dispatch: str = "least_backlog",
        deployment: str = "dedicated",
        hardware: str = "any",
    ) -> None:
        self.check_number("safety_factor", safety_factor, 0, 1, low_open=True)
        # instances are sized at the safety factor
        super().__init__(variants, sizing, safety_factor, dispatch, deployment, hardware)
        if target_invocations is not None:
            self.check_number("target_invocations", target_invocations, 0, low_open=True)
        if initial_instances is not None:
            self.check_number("initial_instances", initial_instances, 1, integer=True)
        self.check_number("min_instances", min_instances, 1, integer=True)
        self.check_number("max_instances", max_instances, min_instances, integer=True)
        self.check_number("metric_period_s", metric_period_s, 1)
        self.check_number("scale_out_periods", scale_out_periods, 1, integer=True)
        self.check_number("scale_in_periods", scale_in_periods, 1, integer=True)
        self.check_number("scale_in_ratio", scale_in_ratio, 0, 1, low_open=True)
        self.check_number("scale_in_cooldown_s", scale_in_cooldown_s, 0)
        self.check_number("idle_worker_s", idle_worker_s, 0)
        self.target_invocations = target_invocations
        self.safety_factor = float(safety_factor)
        self.initial_instances = initial_instances
        self.min_instances = min_instances
        self.max_instances = max_instances
        self.metric_period_s = float(metric_period_s)
        self.scale_out_periods = scale_out_periods
        self.scale_in_periods = scale_in_periods
        self.scale_in_ratio = float(scale_in_ratio)
        self.scale_in_cooldown_s = float(scale_in_cooldown_s)
        self.idle_worker_s = float(idle_worker_s)
        self.target: dict[int, float] = {}  # deployment key -> invocations per instance per minute
        self.desired: dict[int, int] = {}
        self.datapoints: dict[int, list[float]] = {}
        self.scale_in_cooldown: Cooldown[int] = Cooldown(self.scale_in_cooldown_s)
        self.next_eval = self.metric_period_s
        self.empty_since: dict[int, float] = {}

    def target_for(self, dep: Deployment) -> float:
        if self.target_invocations is not None:
            return float(self.target_invocations)
        max_rps = replica_throughput(dep.variant, dep.slo_ms) / dep.batch
        return max_rps * self.safety_factor * 60.0

    def capacity_for(self, key: int, per_minute: float) -> int:
        """Target tracking's capacity for a request rate (per minute) of deployment ``key``."""
        n = math.ceil(per_minute / self.target[key] - 1e-9)
        return max(self.min_instances, min(self.max_instances, n))

    def setup(self, view: ClusterView, apps: Sequence[Application], hints: Mapping[str, WorkloadHint]) -> list[Action]:
        self.plan(view, apps, hints)
        actions: list[Action] = []
        for key, dep in self.deployments.items():
            self.target[key] = self.target_for(dep)
            n = self.initial_instances if self.initial_instances is not None else self.capacity_for(key, dep.qps * 60)
            n = max(self.min_instances, min(self.max_instances, n))
            self.desired[key] = n
            self.datapoints[key] = []
            actions += self.provision(view, dep, n, max_batch=dep.serving_batch)
        return actions

    def autoscale(self, view: ClusterView) -> list[Action]:
        now = view.now
        if now + 1e-9 >= self.next_eval:
            self.next_eval += self.metric_period_s
            for dep in self.deployments.values():
                self._evaluate(view, dep)
        room = Room(view)
        actions: list[Action] = []
        for key, dep in self.deployments.items():
            actions += reconcile(view, room, dep, self.desired[key], max_batch=dep.serving_batch)
        return release_idle_workers(view, room, self.empty_since, self.idle_worker_s) + actions

    def _evaluate(self, view: ClusterView, dep: Deployment) -> None:
        key = dep.key
        in_service = sum(1 for i in dep.instances(view) if i.state is InstanceState.READY)
        per_minute = dep.arrival_rate(view, self.metric_period_s) * 60.0
        points = self.datapoints[key]
        if in_service == 0:
            return  # no datapoint: CloudWatch has nothing to divide by
        points.append(per_minute / in_service)
        del points[: -max(self.scale_out_periods, self.scale_in_periods)]
        target = self.target[key]
        want = self.capacity_for(key, per_minute)
        high = points[-self.scale_out_periods :]
        if len(high) == self.scale_out_periods and all(p > target for p in high):
            if want > self.desired[key]:
                self.desired[key] = want
            return
        low = points[-self.scale_in_periods :]
        if len(low) == self.scale_in_periods and all(p < self.scale_in_ratio * target for p in low):
            cooled = self.scale_in_cooldown.ready(key, view.now)
            if cooled and want < self.desired[key]:
                self.desired[key] = want
                self.scale_in_cooldown.acted(key, view.now)
