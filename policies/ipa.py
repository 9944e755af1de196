"""``ipa``: IPA's pipeline adaptation by integer programming (arXiv 2308.12871).

Every adaptation interval (10 s) the policy forecasts each application's maximum rate over
the next 20 s from its last 2 minutes of per-second arrivals, adds a margin, and solves IPA's
integer program (:mod:`policies.ipa_model`): per stage a variant, a batch size (cap 8) and a
replica count (1..100) that maximise ``alpha x accuracy - beta x cores - gamma x batches``
under the end-to-end SLA and each stage's throughput against the forecast load. It then
applies the plan with the fewest changes (load or unload the difference in replicas, set the
batcher of the replicas it keeps) and routes each query to the least-loaded ready replica of
its planned variant. Sources: reference/policies.md (IPA), from IPA's public code.

Pipelines (``app.pipeline``): one integer program per application over all its stages, with
the end-to-end SLA; every stage is planned for the same forecast load (each request runs
every stage), and a query is routed by the plan of the stage it is at (``query.stage``). A
single-model application is a one-stage pipeline.

IPA's "fixed variant + scaling" baselines (low and high accuracy): ``variant_policy``
``most_accurate`` pins each stage to its most accurate option and ``cheapest`` to its
cheapest (least base CPU), choosing among the combinations whose batch-1 latencies fit the
SLA (:func:`policies.ipa_model.pin_variants`); the integer program then chooses only batch
and replicas, so the variants never switch. ``adaptive`` (the default) is IPA.
``variants`` (a list of variant ids) restricts the options first, by hand.

How the pieces map onto this simulator, and where it deviates (and why):

- **Variants and base allocation.** IPA's variants are model sizes (YOLOv5 n..x, ResNet
  18..152) each deployed with a base CPU allocation: the smallest allocation meeting a
  per-stage SLA (IPA: 5 x the mean batch-1 latency). A catalog row here is one architecture
  on one framework at one core count, so a stage's options are the application's CPU
  candidates grouped by (architecture, framework, precision), each at its base allocation:
  the fewest cores whose batch-1 latency is within ``stage_sla_factor`` (5) x the mean,
  over the stage's options, of the batch-1 latency at their fewest cores; IPA's additional
  throughput threshold on that choice is not modelled (it only raises the base of variants
  too slow to matter). IPA is CPU-only (a Kubernetes CPU cluster): GPU and Inferentia
  candidates are not options.
- **Accuracy units.** IPA's profiles give accuracies in percent and its weights are tuned
  for that (alpha 10 vs beta 0.5 per core); the catalog's fractions are multiplied by
  ``accuracy_scale`` (100).
- **Forecast.** IPA's small LSTM over twelve 10 s maxima is the shared ``learned``
  forecaster (ridge regression on the same inputs, :mod:`policies.forecast.learned`);
  ``forecaster: window_max`` (the maximum of the last 2 minutes) is the rule-based baseline.
  IPA's deployments start with a full history; before 2 minutes have passed here, the missing
  seconds are filled with the operator's declared expected mean rate (a forecast from a few
  seconds of a quiet start sized the plan to 1 replica just before the first surge), and the
  plan never goes below the operator's hint (the expected peak) for the first interval. The
  margin (10%) is ours: the reference says "plus a margin" without a number.
- **Batch wait.** The model charges ``(b - 1) / lambda`` for gathering a batch; each kept
  replica's batcher gets that as its maximum wait, so the simulated batching delay never
  exceeds what the model charged (a replica sees lambda / n, so its batches may run short of
  b when the timeout fires first, which only shortens their latency).
- **Queue limit.** IPA drops requests that waited longer than 10 s. The core has no
  drop-from-queue, so the route rejects (with the reason) a query whose chosen replica
  already holds more than ``queue_limit_s`` of work: the same queries, dropped on arrival
  instead of after waiting.
- **Several applications** sharing a variant: their replica counts add up and the replicas
  take the smallest of their batches (the conservative choice for latency).
- **Infeasible plans** (no choice meets the SLA at the forecast load within 100 replicas):
  IPA's solver returns nothing and it keeps the old deployment; here the policy solves again
  without the SLA (the most capacity per objective) and, if the load still exceeds 100
  replicas, plans the fastest option at batch ``max_batch`` with ``max_replicas`` replicas.
- **Applying a plan**: make-before-break (IPA's Kubernetes rollout does the same). The old
  variant keeps its replicas, and keeps getting queries, until the new one has as many ready
  replicas as planned; only loads the cluster has no room for make it give up old replicas
  early (least loaded first, about as many cores as the stuck loads need).
- **Cluster capacity** (an extension): IPA's program has no cluster limit (its cluster is
  sized by hand). Here the plans' cores are bounded by the CPU workers the cluster may run
  (``max_workers x vCPUs``, shared equally among the applications, options larger than one
  worker dropped), so that a plan is one the cluster can place; ``cluster_limit: false``
  gives IPA's unbounded program (whose plans the cluster then only partly places).
- Workers (VMs) left empty for ``node_idle_s`` are released (a cluster autoscaler's job in
  IPA's deployment).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infaas_sim.catalog import Candidates
from infaas_sim.errors import ConfigError
from infaas_sim.hardware import HardwareKind
from infaas_sim.placement import Room
from infaas_sim.policy import (
    Action,
    Decision,
    Load,
    LoadThenServe,
    Policy,
    Reject,
    Serve,
    SetBatch,
    Unload,
    WorkloadHint,
    register_policy,
)
from infaas_sim.query import Application, Query
from infaas_sim.variant import Variant
from infaas_sim.view import ClusterView, InstanceState, InstanceView
from policies.baseline_common import Deployment, add_replicas, pick_victims, release_idle_workers
from policies.forecast import Forecaster, make_forecaster
from policies.ipa_model import VARIANT_POLICIES, PipelinePlan, Stage, StageOption, Weights, pin_variants, solve

UNBOUNDED_SLA_MS = 1e9  # the fallback solve's SLA: none that matters
FORECASTER_DEFAULTS: dict[str, dict[str, Any]] = {
    # IPA: the max of each of the last twelve 10 s windows predicts the next 20 s's max.
    "learned": {"horizon_s": 20, "window_s": 10, "lags": 12},
    # The rule-based baseline: the next 20 s peak where the last 2 minutes did.
    "window_max": {"horizon_s": 20, "window_s": 120},
}


@dataclass(frozen=True)
class StageChoice:
    """What the policy runs for one stage: catalog variants and how many replicas of each."""

    vi: int
    variant_id: str
    batch: int
    replicas: int
    max_wait_s: float


def stage_options(catalog_variants: Sequence[Variant], indices: Sequence[int], sla_factor: float,
                  name: str) -> tuple[Stage, dict[str, int]]:  # fmt: skip
    """A stage's options: the CPU variants among ``indices`` grouped by (architecture,
    framework, precision), each at its base allocation. Returns the stage and each option's
    catalog index."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    for vi in indices:
        v = catalog_variants[vi]
        if v.hardware is HardwareKind.CPU:
            groups.setdefault((v.architecture, v.framework, v.precision), []).append(vi)
    if not groups:
        raise ConfigError(f"policy ipa: {name} has no CPU variant among its candidates (IPA runs on CPU)")
    for members in groups.values():
        members.sort(key=lambda i: (catalog_variants[i].allocation, catalog_variants[i].variant_id))
    # IPA's per-stage SLA for the base allocation: a factor times the mean batch-1 latency.
    stage_sla = sla_factor * sum(catalog_variants[m[0]].latency_ms(1) for m in groups.values()) / len(groups)
    options: list[StageOption] = []
    index: dict[str, int] = {}
    for key in sorted(groups):
        members = groups[key]
        base = next((i for i in members if catalog_variants[i].latency_ms(1) <= stage_sla), members[-1])
        v = catalog_variants[base]
        options.append(StageOption(v.variant_id, v.accuracy, v.latency_by_batch, v.allocation))
        index[v.variant_id] = base
    return Stage(name, tuple(options)), index


@register_policy("ipa")
class IpaPolicy(Policy):
    tick_s: float | None = 10.0

    def __init__(
        self,
        alpha: float = 10.0,
        beta: float = 0.5,
        gamma: float = 1e-6,
        accuracy_method: str = "sum",
        accuracy_scale: float = 100.0,
        normalize: bool = False,
        max_batch: int = 8,
        max_replicas: int = 100,
        interval_s: float = 10.0,
        history_s: int = 120,
        margin: float = 0.1,
        forecaster: str = "learned",
        forecaster_params: Mapping[str, Any] | None = None,
        queue_limit_s: float = 10.0,
        stage_sla_factor: float = 5.0,
        node_idle_s: float = 60.0,
        solve_time_limit_s: float = 5.0,
        cluster_limit: bool = True,
        variants: Sequence[str] | None = None,
        variant_policy: str = "adaptive",
    ) -> None:
        if variant_policy not in VARIANT_POLICIES:
            raise ConfigError(f"policy ipa: variant_policy must be one of {', '.join(VARIANT_POLICIES)}, "
                              f"got {variant_policy!r}")  # fmt: skip
        self.weights = Weights(alpha, beta, gamma, accuracy_method, accuracy_scale, bool(normalize))
        for pname, value, low in (("max_batch", max_batch, 1), ("max_replicas", max_replicas, 1),
                                  ("history_s", history_s, 1)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"policy ipa: {pname} must be an integer >= {low}, got {value!r}")
        positive = {"interval_s": interval_s, "queue_limit_s": queue_limit_s, "stage_sla_factor": stage_sla_factor,
                    "solve_time_limit_s": solve_time_limit_s}  # fmt: skip
        for pname, fvalue in positive.items():
            if isinstance(fvalue, bool) or not isinstance(fvalue, int | float) or not fvalue > 0:
                raise ConfigError(f"policy ipa: {pname} must be a number > 0, got {fvalue!r}")
        for pname, fvalue in (("margin", margin), ("node_idle_s", node_idle_s)):
            if isinstance(fvalue, bool) or not isinstance(fvalue, int | float) or not fvalue >= 0:
                raise ConfigError(f"policy ipa: {pname} must be a number >= 0, got {fvalue!r}")
        params = dict(FORECASTER_DEFAULTS.get(forecaster, {}))
        params.update(forecaster_params or {})
        self.forecaster: Forecaster = make_forecaster(forecaster, **params)
        self.max_batch = max_batch
        self.max_replicas = max_replicas
        self.interval_s = float(interval_s)
        self.tick_s = self.interval_s
        self.history_s = history_s
        self.margin = float(margin)
        self.queue_limit_s = float(queue_limit_s)
        self.stage_sla_factor = float(stage_sla_factor)
        self.node_idle_s = float(node_idle_s)
        self.solve_time_limit_s = float(solve_time_limit_s)
        self.cluster_limit = bool(cluster_limit)
        if variants is not None and (isinstance(variants, str) or not all(isinstance(v, str) for v in variants)):
            raise ConfigError(f"policy ipa: variants must be a list of variant ids, got {variants!r}")
        # IPA's "fixed variant + scaling" baselines: the options restricted to these variants.
        self.only: frozenset[str] | None = None if variants is None else frozenset(variants)
        self.variant_policy = variant_policy
        self.max_cores: float | None = None  # per application, set up from the cluster
        # Per application index: its stages, each option's catalog index, its SLA (ms).
        self.apps: dict[int, Application] = {}
        self.stages: dict[int, tuple[Stage, ...]] = {}
        self.option_vi: dict[int, dict[str, int]] = {}
        self.sla_ms: dict[int, float] = {}
        self.hint_load: dict[int, float] = {}
        self.hint_mean: dict[int, float] = {}  # declared expected queries/s (stands in for missing history)
        # The current plan: per application, one choice per stage; and the model's plans.
        self.choice: dict[int, tuple[StageChoice, ...]] = {}
        self.plans: dict[int, PipelinePlan] = {}
        #: (time, application index, forecast inputs/s, plan) of every solve, for analysis
        self.history: list[tuple[float, int, float, PipelinePlan]] = []
        self.empty_since: dict[int, float] = {}

    # --- planning ----------------------------------------------------------------------
    def setup(self, view: ClusterView, apps: Sequence[Application], hints: Mapping[str, WorkloadHint]) -> list[Action]:
        catalog = view.catalog
        itype = view.instance_type_for(HardwareKind.CPU)
        if self.cluster_limit and apps:
            self.max_cores = view.max_workers(HardwareKind.CPU) * itype.vcpus / len(apps)
        for app in apps:
            if app.slo_ms is None:
                raise ConfigError(f"policy ipa: application {app.name!r} pins a variant; IPA needs an SLA to plan for")
            stages: list[Stage] = []
            index: dict[str, int] = {}  # variant ids are unique, so one map serves every stage
            for k, req in enumerate(app.stages):
                cands = catalog.candidates(req, app.batch).indices
                fits = [i for i in cands if catalog.variants[i].allocation <= itype.vcpus]  # a replica fits a worker
                if self.only is not None:
                    fits = [i for i in fits if catalog.variants[i].variant_id in self.only]
                where = f"application {app.name!r}" + (f" stage {k}" if app.pipeline is not None else "")
                stage, stage_index = stage_options(catalog.variants, fits, self.stage_sla_factor, where)
                stages.append(stage)
                index.update(stage_index)
            pinned = pin_variants(stages, app.slo_ms, self.variant_policy, self.weights)
            # Only the options left are served (a pinned stage has no other to fall back on).
            self.option_vi[app.index] = {o.variant_id: index[o.variant_id] for st in pinned for o in st.options}
            self.apps[app.index] = app
            self.stages[app.index] = pinned
            self.sla_ms[app.index] = app.slo_ms
            hint = hints.get(app.name, WorkloadHint(0.0, 0.0))
            self.hint_load[app.index] = hint.peak_qps * app.batch * (1 + self.margin)
            self.hint_mean[app.index] = hint.mean_qps
            self._plan(app.index, self.hint_load[app.index], 0.0)
        actions: list[Action] = []
        for vi, (n, b, _) in self._desired().items():
            actions += [Load(catalog.variants[vi].variant_id, max_batch=b)] * n
        return actions

    def forecast_load(self, view: ClusterView, app: Application) -> float:
        """Inputs per second to plan for: the forecast maximum of the next horizon plus the
        margin (and, during the first interval, no less than the operator's hint). Seconds of
        history not yet seen count at the declared expected mean rate."""
        seconds = min(self.history_s, int(view.now))
        series = view.app_rate_series(app.index, seconds) if seconds > 0 else []
        if len(series) < self.history_s:
            series = [self.hint_mean.get(app.index, 0.0)] * (self.history_s - len(series)) + list(series)
        peak = self.forecaster.predict_from(series) if len(series) else 0.0
        load = peak * app.batch * (1 + self.margin)
        if view.now <= self.interval_s + 1e-9:
            load = max(load, self.hint_load.get(app.index, 0.0))
        return load

    def _plan(self, ai: int, load: float, now: float) -> PipelinePlan:
        stages, sla = self.stages[ai], self.sla_ms[ai]
        plan = self._solve(stages, load, sla)
        if not plan.ok:  # nothing meets the SLA: the best plan without it (else the most capacity)
            plan = self._solve(stages, load, UNBOUNDED_SLA_MS)
        self.history.append((now, ai, load, plan))
        if plan.ok:
            self.plans[ai] = plan
            self.choice[ai] = tuple(
                StageChoice(
                    self.option_vi[ai][p.variant_id], p.variant_id, p.batch, p.replicas, p.batch_wait_ms / 1000.0
                )
                for p in plan.stages
            )
        else:
            self.choice[ai] = tuple(self._fastest(st, ai, load) for st in stages)
        return plan

    def _solve(self, stages: Sequence[Stage], load: float, sla_ms: float) -> PipelinePlan:
        return solve(stages, load, sla_ms, self.weights, max_batch=self.max_batch, max_replicas=self.max_replicas,
                     time_limit_s=self.solve_time_limit_s, max_cores=self.max_cores)  # fmt: skip

    def _fastest(self, stage: Stage, ai: int, load: float) -> StageChoice:
        """The load exceeds what the replica (and core) limits carry with any option: the most
        throughput those limits allow."""

        def most(o: StageOption) -> tuple[int, float]:
            n = self.max_replicas
            if self.max_cores is not None:  # the stages share the application's cores
                n = max(1, min(n, int(self.max_cores / len(self.stages[ai]) // o.base_cpu)))
            return n, n * o.throughput[min(self.max_batch, o.max_batch)]

        best = max(stage.options, key=lambda o: most(o)[1])
        b = min(self.max_batch, best.max_batch)
        wait = (b - 1) / load if load > 0 else 0.0
        return StageChoice(self.option_vi[ai][best.variant_id], best.variant_id, b, most(best)[0], wait)

    def _desired(self) -> dict[int, tuple[int, int, float]]:
        """Catalog index -> (replicas, batch, max wait s), summed over the applications."""
        out: dict[int, tuple[int, int, float]] = {}
        for choices in self.choice.values():
            for c in choices:
                n, b, w = out.get(c.vi, (0, c.batch, c.max_wait_s))
                out[c.vi] = (n + c.replicas, min(b, c.batch), min(w, c.max_wait_s))
        return out

    # --- adaptation ----------------------------------------------------------------------
    def autoscale(self, view: ClusterView) -> list[Action]:
        for ai, app in self.apps.items():
            self._plan(ai, self.forecast_load(view, app), view.now)
        return self.apply(view, self._desired())

    def apply(self, view: ClusterView, desired: Mapping[int, tuple[int, int, float]]) -> list[Action]:
        """The fewest actions from the running replicas to ``desired``."""
        catalog = view.catalog
        room = Room(view)
        actions: list[Action] = []
        for vi, (n, b, wait) in sorted(desired.items()):
            insts = list(view.instances_of(vi))
            v = catalog.variants[vi]
            if len(insts) < n:
                actions += add_replicas(view, room, Deployment(vi, v), n - len(insts), max_batch=b)
            gone = {i.iid for i in pick_victims(view, insts, len(insts) - n)} if len(insts) > n else set()
            actions += [Unload(iid) for iid in sorted(gone)]
            for inst in insts:
                if inst.iid not in gone and (inst.max_batch != b or abs(inst.max_wait_s - wait) > 1e-9):
                    actions.append(SetBatch(inst.iid, b, wait))
        # Variants no plan uses: unloaded once every planned variant has all its replicas ready
        # (make-before-break), or when the new ones cannot be placed for the old ones' cores.
        ready = all(
            sum(i.state is InstanceState.READY for i in view.instances_of(vi)) >= n for vi, (n, _, _) in desired.items()
        )
        old = [i for vi in sorted(view.running_variants()) if vi not in desired for i in view.instances_of(vi)]
        if ready:
            actions += [Unload(i.iid) for i in old]
        elif old:
            # Loads that found no room: free the old variants' cores they need, least loaded first.
            stuck = view.unplaced_loads_by_kind().get(HardwareKind.CPU, 0)
            need = stuck * max((catalog.variants[vi].allocation for vi in desired), default=0.0)
            for inst in pick_victims(view, old, len(old)):
                if need <= 0:
                    break
                actions.append(Unload(inst.iid))
                need -= inst.cores
        actions += release_idle_workers(view, room, self.empty_since, self.node_idle_s)
        return actions

    # --- per query -------------------------------------------------------------------------
    def route(self, query: Query, candidates: Candidates, view: ClusterView) -> Decision:
        choices = self.choice.get(query.app.index)
        if not choices or query.stage >= len(choices):
            return Reject(f"policy ipa has no plan for application {query.app.name} stage {query.stage}")
        c = choices[query.stage]
        now = view.now
        planned = view.instances_of(c.vi)
        best = _least_loaded(planned, now, ready_only=True)
        if sum(i.state is InstanceState.READY for i in planned) < c.replicas:
            # Mid-switch or mid-scale-up: the previous plan's ready replicas still serve.
            for vi in self.option_vi[query.app.index].values():
                if vi != c.vi and vi in candidates.members:
                    alt = _least_loaded(view.instances_of(vi), now, ready_only=True)
                    if alt is not None and (best is None or alt.backlog_s(now) < best.backlog_s(now)):
                        best = alt
        if best is None:
            best = _least_loaded(view.instances_of(c.vi), now, ready_only=False)
        if best is None:
            return LoadThenServe(c.variant_id, max_batch=c.batch)
        if best.backlog_s(now) > self.queue_limit_s:
            return Reject(f"ipa: every replica of {best.variant.variant_id} holds more than {self.queue_limit_s:g} s "
                          "of queued work (IPA drops requests older than its queue limit)")  # fmt: skip
        return Serve(best)


def _least_loaded(insts: Sequence[InstanceView], now: float, ready_only: bool) -> InstanceView | None:
    best: InstanceView | None = None
    best_wait = math.inf
    for inst in insts:
        if ready_only and inst.state is not InstanceState.READY:
            continue
        wait = inst.backlog_s(now)
        if wait < best_wait:
            best, best_wait = inst, wait
    return best
