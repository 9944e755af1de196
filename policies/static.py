"""``static``: TF Serving-like fixed provisioning. No scaling, no switching.

Each application (each stage of a pipeline) gets one variant (named, or ``auto``: the cheapest that
meets its SLO and accuracy at the sizing load, on the hardware family ``hardware``: ``any``, ``cpu``,
``gpu`` or ``inferentia``) and a fixed replica count (a number, or sized to the application's
declared ``peak`` or ``mean`` rate: the over- and under-provisioned operator). Provisioned before
traffic starts. Queries go to a replica of their application's deployment by ``dispatch``
(:mod:`infaas_sim.dispatch`: ``least_backlog`` by default, ``shortest_queue``, ``round_robin``).

``deployment: dedicated`` (the default), as TF Serving is deployed: one deployment per application
(and pipeline stage), even where two pick the same variant, on VMs of its own (a worker pool):
no VM serves two deployments. ``deployment: shared``: applications that pick the same variant share
its replicas, and replicas of different variants pack onto the same VMs (what INFaaS does by design,
so ``shared`` credits the baseline with INFaaS's hardware sharing).

Deviations from an operator's TF Serving deployment, each with its reason
  - The variant and the count are chosen from each application's declared expected rate (the
    workload hints: ``expected_qps``, or what the trace's declared parameters give), what a
    developer knows before the run; the run's own arrivals are not consulted.
  - With ``hardware: any`` the cheapest variant is picked across the hardware kinds the cluster
    has workers for (an operator usually fixes the hardware first: ``hardware`` does that); with
    the default catalog that is Inferentia.
  - Within a deployment's VMs, replicas are packed by the cluster's placement (most free
    memory); TF Serving would run one server per machine or pod.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from infaas_sim.catalog import Candidates
from infaas_sim.dispatch import LEAST_BACKLOG, check_dispatch
from infaas_sim.policy import Action, Decision, Load, Policy, Reject, Serve, WorkloadHint, register_policy
from infaas_sim.query import Application, Query, Requirement
from infaas_sim.sizing import replicas_needed
from infaas_sim.view import ClusterView
from policies.baseline_common import (
    DEDICATED,
    Deployment,
    app_pool,
    check_deployment,
    choose_variant,
    dispatch_to,
    hardware_family,
    named_variant,
)


@register_policy("static")
class StaticPolicy(Policy):
    tick_s = None

    def __init__(
        self,
        variants: Mapping[str, str | Sequence[str]] | None = None,
        replicas: int | str = "peak",
        target_util: float = 0.8,
        dispatch: str = LEAST_BACKLOG,
        deployment: str = DEDICATED,
        hardware: str = "any",
    ) -> None:
        if isinstance(replicas, str) and replicas not in ("peak", "mean"):
            raise self.error(f"replicas must be a number, 'peak' or 'mean', got {replicas!r}")
        given: object = replicas  # a config may hand over a float (2.0) or a bool
        whole = isinstance(given, int | str) or (isinstance(given, float) and given.is_integer())
        if isinstance(given, bool) or not whole:
            # 2.5 replicas is a typo, not a request to round: say so rather than pick one
            raise self.error(f"replicas must be a whole number, 'peak' or 'mean', got {given!r}")
        if isinstance(given, float):
            replicas = int(given)
        if isinstance(replicas, int) and replicas < 1:
            raise self.error(f"replicas must be >= 1, got {replicas}")
        if not 0 < target_util <= 1:
            raise self.error(f"target_util must be in (0, 1], got {target_util}")
        self.variants = dict(variants or {})
        self.replicas = replicas
        self.target_util = target_util
        self.dispatch = check_dispatch("policy static", dispatch)
        self.deployment = check_deployment("policy static", deployment)
        self.hardware = hardware_family("policy static", hardware)
        self.deployments: dict[tuple[int, int], Deployment] = {}  # (app index, stage) -> its deployment

    def setup(self, view: ClusterView, apps: Sequence[Application], hints: Mapping[str, WorkloadHint]) -> list[Action]:
        catalog = view.catalog
        unknown = set(self.variants) - {a.name for a in apps}
        if unknown:
            raise self.error(f"variants given for unknown application(s) {sorted(unknown)}")
        actions: list[Action] = []
        for app in apps:
            hint = hints.get(app.name, WorkloadHint(0.0, 0.0))
            qps = hint.mean_qps if self.replicas == "mean" else hint.peak_qps
            named = self.variants.get(app.name, "auto")
            names = list(named) if isinstance(named, list | tuple) else [named] * len(app.stages)
            if len(names) != len(app.stages) or (len(app.stages) > 1 and isinstance(named, str) and named != "auto"):
                raise self.error(
                    f"application {app.name!r} has {len(app.stages)} stage(s): give its variants as a list, "
                    "one per stage"
                )
            # A pipeline is provisioned stage by stage, each for the application's whole rate.
            for k, req in enumerate(app.stages):
                vi, n = self._choose(view, app, req, str(names[k]), qps)
                pool = None
                if self.deployment == DEDICATED:
                    pool = app_pool(app, k if len(app.stages) > 1 else None)
                dep = Deployment(vi, catalog.variants[vi], [app], req.slo_ms, app.batch, qps, qps * app.batch, n,
                                 key=len(self.deployments), pool=pool)  # fmt: skip
                self.deployments[(app.index, k)] = dep
                actions += [Load(dep.variant_id, pool=pool)] * n
        return actions

    def _choose(self, view: ClusterView, app: Application, req: Requirement, named: str, qps: float) -> tuple[int, int]:
        catalog = view.catalog
        cands = catalog.candidates(req, app.batch).indices
        if named == "auto":
            vi, n = choose_variant(view, app.name, cands, qps * app.batch, req.slo_ms, self.hardware, self.target_util,
                                   self.error)  # fmt: skip
        else:
            vi = named_variant(view, app.name, cands, named, self.hardware, self.error)
            n = replicas_needed(catalog.variants[vi], qps * app.batch, req.slo_ms, self.target_util)
        if isinstance(self.replicas, int):
            n = self.replicas
        return vi, n

    def route(self, query: Query, candidates: Candidates, view: ClusterView) -> Decision:
        dep = self.deployments.get((query.app.index, query.stage))
        if dep is None:
            return Reject(f"policy static has no variant for application {query.app.name}")
        best = dispatch_to(self.dispatch, dep, view)
        if best is None:
            return Reject(f"no replica of {dep.variant_id} is running")
        return Serve(best)
