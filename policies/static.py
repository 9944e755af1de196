"""``static``: TF Serving-like fixed provisioning. No scaling, no switching.

Each application (each stage of a pipeline) gets one variant (named, or ``auto``: the cheapest that meets its SLO and
accuracy at the sizing load) and a fixed replica count (a number, or sized to the workload's
``peak`` or ``mean`` rate: the over- and under-provisioned operator). Provisioned before
traffic starts. Queries go to the replica with the least backlog (join-shortest-queue).

Deviations from an operator's TF Serving deployment, each with its reason
  - The variant and the count are chosen knowing the run's own mean or peak rate (the
    workload hints): an operator sizes from past traffic. This makes ``static`` (and the
    baselines sharing the choice) an oracle in its offline choice, the strongest fixed
    configuration, so a policy that beats it wins by adapting, not by a better guess.
  - The cheapest variant is picked across all hardware kinds the cluster offers (an operator
    usually fixes the hardware first); with the default catalog that is Inferentia.
  - Replicas are packed by the cluster's placement (most free memory); TF Serving would run
    one server per machine or pod.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from infaas_sim.catalog import Candidates
from infaas_sim.errors import ConfigError
from infaas_sim.policy import Action, Decision, Load, Policy, Reject, Serve, WorkloadHint, register_policy
from infaas_sim.query import Application, Query, Requirement
from infaas_sim.sizing import cheapest_variant, replicas_needed
from infaas_sim.view import ClusterView


@register_policy("static")
class StaticPolicy(Policy):
    tick_s = None

    def __init__(
        self,
        variants: Mapping[str, str | Sequence[str]] | None = None,
        replicas: int | str = "peak",
        target_util: float = 0.8,
    ) -> None:
        if isinstance(replicas, str) and replicas not in ("peak", "mean"):
            raise ConfigError(f"policy static: replicas must be a number, 'peak' or 'mean', got {replicas!r}")
        if isinstance(replicas, int) and replicas < 1:
            raise ConfigError(f"policy static: replicas must be >= 1, got {replicas}")
        if not 0 < target_util <= 1:
            raise ConfigError(f"policy static: target_util must be in (0, 1], got {target_util}")
        self.variants = dict(variants or {})
        self.replicas = replicas
        self.target_util = target_util
        self.chosen: dict[tuple[int, int], int] = {}  # (app index, stage) -> variant index

    def setup(self, view: ClusterView, apps: Sequence[Application], hints: Mapping[str, WorkloadHint]) -> list[Action]:
        catalog = view.catalog
        unknown = set(self.variants) - {a.name for a in apps}
        if unknown:
            raise ConfigError(f"policy static: variants given for unknown application(s) {sorted(unknown)}")
        actions: list[Action] = []
        for app in apps:
            hint = hints.get(app.name, WorkloadHint(0.0, 0.0))
            qps = hint.mean_qps if self.replicas == "mean" else hint.peak_qps
            named = self.variants.get(app.name, "auto")
            names = list(named) if isinstance(named, list | tuple) else [named] * len(app.stages)
            if len(names) != len(app.stages) or (len(app.stages) > 1 and isinstance(named, str) and named != "auto"):
                raise ConfigError(
                    f"policy static: application {app.name!r} has {len(app.stages)} stage(s): give its variants "
                    "as a list, one per stage"
                )
            # A pipeline is provisioned stage by stage, each for the application's whole rate.
            for k, req in enumerate(app.stages):
                vi, n = self._choose(view, app, req, str(names[k]), qps)
                self.chosen[(app.index, k)] = vi
                actions += [Load(catalog.variants[vi].variant_id)] * n
        return actions

    def _choose(self, view: ClusterView, app: Application, req: Requirement, named: str, qps: float) -> tuple[int, int]:
        catalog = view.catalog
        cands = catalog.candidates(req, app.batch).indices
        if named == "auto":
            types = view.instance_types
            by_kind = {k: view.instance_type_for(k).name for k in {catalog.variants[i].hardware for i in cands}}
            vi, n = cheapest_variant(catalog, cands, qps * app.batch, req.slo_ms, types, by_kind, self.target_util)
        else:
            vi = catalog.index_of.get(named, -1)
            if vi not in cands:
                raise ConfigError(f"policy static: variant {named!r} does not meet application {app.name!r}")
            n = replicas_needed(catalog.variants[vi], qps * app.batch, req.slo_ms, self.target_util)
        if isinstance(self.replicas, int):
            n = self.replicas
        return vi, n

    def route(self, query: Query, candidates: Candidates, view: ClusterView) -> Decision:
        vi = self.chosen.get((query.app.index, query.stage))
        if vi is None:
            return Reject(f"policy static has no variant for application {query.app.name}")
        # Join-shortest-queue. All replicas run the same variant and are pre-loaded, so
        # outstanding inputs order them as their backlog in seconds would, at less cost.
        best = None
        best_load = 0
        for inst in view.instances_of(vi):
            load = inst.queued_inputs + inst.inflight_inputs
            if best is None or load < best_load:
                best, best_load = inst, load
                if load == 0:
                    break
        if best is None:
            return Reject(f"no replica of {view.catalog.variants[vi].variant_id} is running")
        return Serve(best)
