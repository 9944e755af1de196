"""``infadapter``: a set of model variants with core allocations and traffic shares, chosen to
maximise accuracy minus cost for the forecast load (InfAdapter, arXiv 2304.10892).
Formulation from ``../shared/reference/policies.md`` (read from InfAdapter's public code).

What follows InfAdapter
  - Variants: the ResNet family (``family: resnet``: every ``resnet<depth>`` architecture of
    the application's task in the catalog, CPU, accuracy floor met), one catalog row each.
  - Capacity of a variant at the SLO is linear in its cores: ``capacity(c) = 0.8 (k1 c + k2)``,
    k1 and k2 fitted by least squares on profiled capacities (cores 2..``max_replica_cores``).
  - Decision: cores n_m per variant, 0 or >= ``min_cores`` (2), total <= ``max_total_cores``
    (20); load goes to the most accurate variants first, up to their capacity; total capacity
    >= the forecast load. Objective: maximise ``sum (load_m / lambda) acc_m - cost_weight
    (sum n_m / reference_cores) - load_weight (load time of the changed variants / max load
    time)`` with ``cost_weight`` 0.05, ``reference_cores`` 20 and ``load_weight`` 0.001: with
    the default budget, InfAdapter's ``0.05 (sum n_m / 20)``. Solved exactly by enumerating
    every allocation (:func:`solve`; thousands of points for five variants and 20 cores,
    vectorised); when no allocation covers the load, the one with the most capacity.
  - Every ``interval_s`` (30 s): the forecast of the next minute's maximum rate from the last
    10 minutes (maxima per minute; :mod:`policies.forecast.learned`, an EWM before enough
    history), plus ``margin`` (10%); a decision with fewer total cores is applied only after
    ``scale_down_votes`` (4) decisions in a row agree; make-before-break: new replicas are
    loaded, the shares switch and the replaced replicas are unloaded once all of them are
    ready; dispatch is weighted round-robin over the variants by their load shares.

Deviations, each with its reason
  - The cost term divides by ``reference_cores`` (InfAdapter's 20-core budget), not by
    ``max_total_cores``: ``cost_weight`` is a price per core relative to that budget, so one
    core costs ``0.05 / 20`` of accuracy whatever the budget (InfAdapter's 20 is both its
    budget and the divisor). Dividing by the budget made cores 6.4x cheaper when an
    experiment raised it to 128 cores, which moved the choice towards more accurate, costlier
    variants; with the budget at 20 both read the same.
  - Forecaster: ridge regression on the lagged window maxima instead of InfAdapter's LSTM
    (the issue allows a lighter learner that forecasts as well; on the real trace's held-out
    days it beats the window maximum: docs/themis_infadapter.md).
  - The family is whatever CPU classifiers of the task meet the accuracy floor; the default
    catalog has InfAdapter's ResNet-18/34/50/101/152 among them.
  - Profiled capacity: a replica of c cores serves 1000 b / l(c, b) per second at the largest
    batch b whose latency fits half the SLO (the rest is queueing headroom), with l(c, b) the
    catalog's per-core profile (``Catalog.cpu_latency_ms``, the latency the cluster runs a
    replica of c cores at; until 2026-12-02 the variant's own row scaled by an Amdahl law,
    up to 50% optimistic at 8 cores on the measured catalog); InfAdapter measured it by load tests
    at the 750 ms p99 SLO.
  - A worker (VM) has ``max_replica_cores`` vCPUs, so an allocation of n_m cores runs as
    full replicas of ``max_replica_cores`` and one for the remainder (InfAdapter ran one pod
    per variant on a larger node); the planner keeps the linear capacity model. A change of
    a few cores redeploys only the remainder replica.
  - "Changed variants" in the load-time term are those whose cores change (a redeploy).
  - Within a variant, queries go join-shortest-queue over its replicas.
  - While a redeploy is under way, the variants are weighted by the capacity of their ready
    replicas (old and new), so that a new replica serves as soon as it is ready rather than
    when the whole new configuration is; the plan's shares apply once it is complete.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from infaas_sim.catalog import Candidates
from infaas_sim.hardware import HardwareKind
from infaas_sim.hysteresis import HoldDown
from infaas_sim.placement import Room
from infaas_sim.policy import Action, Decision, Load, Policy, Reject, Serve, Unload, WorkloadHint, register_policy
from infaas_sim.query import Application, Query
from infaas_sim.variant import LatencyFn, Variant, amdahl_latency_ms
from infaas_sim.view import ClusterView, InstanceState, InstanceView
from policies.baseline_common import release_idle_workers
from policies.forecast.base import Forecaster, make_forecaster

#: Share of the SLO a batch may take; the rest is left for queueing.
BATCH_SLO_SHARE = 0.5


@dataclass(frozen=True)
class VariantModel:
    """What the solver knows about one variant."""

    vi: int
    variant_id: str
    accuracy: float
    load_s: float
    k1: float
    k2: float
    min_cores: int  # the fewest cores (>= the policy's minimum) whose replica meets the SLO
    capacity_factor: float = 0.8

    def capacity(self, cores: float) -> float:
        if cores < self.min_cores:
            return 0.0
        return max(0.0, self.capacity_factor * (self.k1 * cores + self.k2))


def serving_batch_at(v: Variant, cores: float, slo_ms: float, lat: LatencyFn = amdahl_latency_ms) -> int | None:
    """The largest batch whose latency on ``cores`` (by the profile ``lat``) fits the batch's
    share of the SLO (1 if only batch 1 fits the whole SLO); None if not even batch 1 does."""
    if lat(v, cores, 1) > slo_ms:
        return None
    best = 1
    for b in range(1, v.max_batch + 1):
        if lat(v, cores, b) <= BATCH_SLO_SHARE * slo_ms:
            best = b
    return best


def profiled_capacity(v: Variant, cores: float, slo_ms: float, lat: LatencyFn = amdahl_latency_ms) -> float:
    """Queries per second one replica of ``cores`` sustains within the SLO (0 if none)."""
    b = serving_batch_at(v, cores, slo_ms, lat)
    return 0.0 if b is None else 1000.0 * b / lat(v, cores, b)


def fit_variant(vi: int, v: Variant, slo_ms: float, min_cores: int, max_replica_cores: int,
                capacity_factor: float = 0.8, lat: LatencyFn = amdahl_latency_ms) -> VariantModel | None:  # fmt: skip
    """Fit capacity(c) = k1 c + k2 on the points the profile ``lat`` gives; None if no core
    count meets the SLO."""
    cores = [c for c in range(max(1, min_cores), max_replica_cores + 1) if profiled_capacity(v, c, slo_ms, lat) > 0]
    if not cores:
        return None
    caps = [profiled_capacity(v, c, slo_ms, lat) for c in cores]
    if len(cores) == 1:
        k1, k2 = caps[0] / cores[0], 0.0
    else:
        k1, k2 = (float(x) for x in np.polyfit(np.array(cores, float), np.array(caps), 1))
    return VariantModel(vi, v.variant_id, v.accuracy, v.load_latency_ms / 1000, k1, k2, cores[0], capacity_factor)


@dataclass(frozen=True)
class Plan:
    cores: tuple[int, ...]  # per variant, in the models' order
    loads: tuple[float, ...]  # queries per second assigned
    objective: float
    feasible: bool  # capacity covers the load

    @property
    def total_cores(self) -> int:
        return sum(self.cores)


@functools.lru_cache(maxsize=32)
def _allocations(mins: tuple[int, ...], total: int) -> np.ndarray:
    """Every allocation (0 or min_m..total per variant) with sum <= total, one per row."""
    rows: list[tuple[int, ...]] = []

    def rec(i: int, left: int, acc: tuple[int, ...]) -> None:
        if i == len(mins):
            rows.append(acc)
            return
        rec(i + 1, left, (*acc, 0))
        for c in range(mins[i], left + 1):
            rec(i + 1, left - c, (*acc, c))

    rec(0, total, ())
    return np.array(rows, dtype=np.int64).reshape(len(rows), len(mins))


def assign_loads(models: Sequence[VariantModel], caps: np.ndarray, lam: float) -> np.ndarray:
    """Load per variant, most accurate first up to capacity (rows: allocations)."""
    order = sorted(range(len(models)), key=lambda m: -models[m].accuracy)
    loads = np.zeros_like(caps)
    left = np.full(caps.shape[0], lam)
    for m in order:
        take = np.minimum(caps[:, m], left)
        loads[:, m] = take
        left = left - take
    return loads


def solve(models: Sequence[VariantModel], lam: float, current: Sequence[int], max_total_cores: int,
          cost_weight: float = 0.05, load_weight: float = 0.001, reference_cores: float = 20) -> Plan:  # fmt: skip
    """InfAdapter's optimisation, exact by enumeration. A core costs ``cost_weight /
    reference_cores`` of objective, whatever ``max_total_cores`` is."""
    mins = tuple(max(1, m.min_cores) for m in models)
    alloc = _allocations(mins, max_total_cores)
    caps = np.column_stack([np.array([m.capacity(c) for c in range(max_total_cores + 1)])[alloc[:, j]]
                            for j, m in enumerate(models)])  # fmt: skip
    lam = max(lam, 1e-9)
    loads = assign_loads(models, caps, lam)
    acc = np.array([m.accuracy for m in models])
    load_s = np.array([m.load_s for m in models])
    changed = alloc != np.asarray(current, dtype=np.int64)[None, :]
    obj = (loads @ acc) / lam - cost_weight * alloc.sum(axis=1) / reference_cores
    obj -= load_weight * (changed * load_s[None, :]).sum(axis=1) / max(load_s.max(), 1e-9)
    total = caps.sum(axis=1)
    feasible = total + 1e-9 >= lam
    # Nothing covers the load: the most capacity, then the objective.
    score = np.where(feasible, obj, -np.inf) if feasible.any() else total + 1e-6 * obj
    # The first maximum: ties go to the earliest enumerated (fewer cores on the first variants).
    best = int(np.argmax(score))
    return Plan(tuple(int(c) for c in alloc[best]), tuple(float(x) for x in loads[best]), float(obj[best]),
                bool(feasible[best]))  # fmt: skip


def split_cores(n: int, per_replica: int, min_cores: int) -> list[int]:
    """Cores of the replicas that run an allocation of ``n`` cores, each in
    [``min_cores``, ``per_replica``]: full replicas of ``per_replica`` cores and one for the
    remainder (taking from the last full one when the remainder is below ``min_cores``), so
    that a change of a few cores redeploys one replica, not all of them. Where no split fits
    (say 9 cores, 5 to 8 a replica), the nearest smaller allocation that does."""
    while n > 0:
        full, rest = divmod(n, per_replica)
        sizes = [per_replica] * full
        if rest >= min_cores or (rest and not sizes):
            sizes.append(rest)
        elif rest:
            sizes[-1] -= min_cores - rest
            sizes.append(min_cores)
        if all(min_cores <= c <= per_replica for c in sizes):
            return sorted(sizes, reverse=True)
        n -= 1
    return []


@register_policy("infadapter")
class InfAdapterPolicy(Policy):
    tick_s: float | None = 1.0

    def __init__(
        self,
        variants: Sequence[str] | str = "auto",
        family: str = r"resnet\d+",
        max_total_cores: int = 20,
        min_cores: int = 2,
        max_replica_cores: int | None = None,
        capacity_factor: float = 0.8,
        cost_weight: float = 0.05,
        reference_cores: int = 20,
        load_weight: float = 0.001,
        interval_s: float = 30.0,
        margin: float = 0.1,
        scale_down_votes: int = 4,
        forecaster: str = "learned",
        train: str = "auto",
        node_idle_s: float = 600.0,
    ) -> None:
        for name, ivalue, low in (("max_total_cores", max_total_cores, 1), ("min_cores", min_cores, 1),
                                  ("reference_cores", reference_cores, 1),
                                  ("scale_down_votes", scale_down_votes, 1)):  # fmt: skip
            if not isinstance(ivalue, int) or isinstance(ivalue, bool) or ivalue < low:
                raise self.error(f"{name} must be an integer >= {low}, got {ivalue!r}")
        if max_replica_cores is not None and (not isinstance(max_replica_cores, int) or max_replica_cores < min_cores):
            raise self.error(f"max_replica_cores must be an integer >= min_cores, got {max_replica_cores!r}")
        for name, value, flow in (("capacity_factor", capacity_factor, 1e-9), ("cost_weight", cost_weight, 0.0),
                                 ("load_weight", load_weight, 0.0), ("interval_s", interval_s, 1.0),
                                 ("margin", margin, 0.0), ("node_idle_s", node_idle_s, 0.0)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int | float) or value < flow:
                raise self.error(f"{name} must be a number >= {flow:g}, got {value!r}")
        if forecaster not in ("learned", "window_max"):
            raise self.error(f"forecaster must be 'learned' or 'window_max', got {forecaster!r}")
        try:
            self.family = re.compile(family)
        except re.error as exc:
            raise self.error(f"family is not a regular expression: {exc}") from None
        self.variant_names = variants
        self.max_total_cores = max_total_cores
        self.min_cores = min_cores
        self.max_replica_cores = max_replica_cores
        self.capacity_factor = float(capacity_factor)
        self.cost_weight = float(cost_weight)
        self.reference_cores = reference_cores
        self.load_weight = float(load_weight)
        self.interval_s = float(interval_s)
        self.margin = float(margin)
        self.scale_down_votes = scale_down_votes
        # Next minute's maximum from the last 10 minutes' per-minute maxima.
        self.forecaster: Forecaster = (
            make_forecaster("learned", horizon_s=60, window_s=60, lags=10, train=train)
            if forecaster == "learned"
            else make_forecaster("window_max", horizon_s=60)
        )
        self.node_idle_s = float(node_idle_s)
        self.app: Application | None = None
        self.slo_ms = math.inf
        self.models: list[VariantModel] = []
        self.variants: list[Variant] = []
        self.per_replica = 8
        # The CPU profile it plans with: the catalog's per-core profile (set-up binds it), the
        # latency the cluster runs a replica of that many cores at.
        self._lat: LatencyFn = amdahl_latency_ms
        self.target: Plan | None = None  # the plan being applied
        self.shares: list[float] = []  # active traffic shares (the last plan whose replicas are all ready)
        self.retiring: set[int] = set()  # instance ids replaced by the target plan
        self.down_votes: HoldDown[str] = HoldDown()  # scale-down decisions in a row
        self.next_decision = self.interval_s
        self.wrr: list[float] = []
        self.empty_since: dict[int, float] = {}
        #: (time, forecast, cores per variant, shares) of every decision, for tests and figures
        self.log: list[tuple[float, float, tuple[int, ...], tuple[float, ...]]] = []
        #: (time, plan) of every plan applied (set-up's at time 0)
        self.applied: list[tuple[float, Plan]] = []
        #: (time, shares) whenever the dispatch weights change (mid-redeploy: by ready capacity)
        self.share_log: list[tuple[float, tuple[float, ...]]] = []

    # --- setup -------------------------------------------------------------------------
    def setup(self, view: ClusterView, apps: Sequence[Application], hints: Mapping[str, WorkloadHint]) -> list[Action]:
        if len(apps) != 1:
            raise self.error(f"serves exactly one application, got {len(apps)}")
        app = self.app = apps[0]
        if app.requirement.slo_ms is None:
            raise self.error(f"application {app.name!r} has no latency SLO")
        self.slo_ms = float(app.requirement.slo_ms)
        self._lat = view.catalog.cpu_latency_ms
        vcpus = view.instance_type_for(HardwareKind.CPU).vcpus
        self.per_replica = self.max_replica_cores if self.max_replica_cores is not None else vcpus
        if self.per_replica > vcpus:
            raise self.error(f"max_replica_cores {self.per_replica} exceeds the CPU worker's {vcpus} vCPUs")
        for vi in self._pool(view, app):
            v = view.catalog.variants[vi]
            m = fit_variant(vi, v, self.slo_ms, self.min_cores, self.per_replica, self.capacity_factor, self._lat)
            if m is not None:
                self.models.append(m)
                self.variants.append(v)
        if not self.models:
            raise self.error(f"no variant meets {app.requirement.describe()} within {self.per_replica} cores")
        self.wrr = [0.0] * len(self.models)
        hint = hints.get(app.name, WorkloadHint(1.0, 1.0))
        plan = self._solve(hint.mean_qps * app.batch * (1 + self.margin), [0] * len(self.models))
        self.target = plan
        self.applied.append((0.0, plan))
        self._set_shares(0.0, self._shares(plan))
        actions: list[Action] = []
        for j, n in enumerate(plan.cores):
            for c in split_cores(n, self.per_replica, self.models[j].min_cores):
                actions.append(self._load_action(j, c))
        return actions

    def _pool(self, view: ClusterView, app: Application) -> list[int]:
        catalog = view.catalog
        req = app.requirement
        cands = catalog.candidates(req, app.batch).indices  # the controller serves only these
        if self.variant_names != "auto":
            names = [self.variant_names] if isinstance(self.variant_names, str) else list(self.variant_names)
            out = []
            for name in names:
                vi = catalog.index_of.get(str(name), -1)
                if vi < 0 or catalog.variants[vi].hardware is not HardwareKind.CPU or vi not in cands:
                    raise self.error(f"variant {name!r} is not a CPU variant meeting {req.describe()}")
                out.append(vi)
            return out
        best: dict[str, int] = {}  # architecture -> its fastest CPU row
        for i in cands:
            v = catalog.variants[i]
            if v.hardware is not HardwareKind.CPU or not self.family.fullmatch(v.architecture):
                continue
            old = best.get(v.architecture)
            if old is None or catalog.cpu_latency_ms(v, 4, 1) < catalog.cpu_latency_ms(old, 4, 1):
                best[v.architecture] = i
        if not best:
            raise self.error(f"no CPU variant of family {self.family.pattern!r} meets {req.describe()}")
        return sorted(best.values(), key=lambda i: catalog.variants[i].accuracy)

    def _solve(self, lam: float, current: Sequence[int]) -> Plan:
        return solve(self.models, lam, current, self.max_total_cores, self.cost_weight, self.load_weight,
                     self.reference_cores)  # fmt: skip

    @staticmethod
    def _shares(plan: Plan) -> list[float]:
        total = sum(plan.loads)
        if total <= 0:
            return [1.0 if c > 0 else 0.0 for c in plan.cores]
        return [x / total for x in plan.loads]

    def _set_shares(self, now: float, shares: list[float]) -> None:
        if shares != self.shares:
            self.shares = shares
            self.share_log.append((now, tuple(shares)))

    def _load_action(self, j: int, cores: int) -> Load:
        b = serving_batch_at(self.variants[j], cores, self.slo_ms, self._lat) or 1
        return Load(self.models[j].variant_id, cores=float(cores), max_batch=b, allow_new_worker=True)

    # --- per query ---------------------------------------------------------------------
    def route(self, query: Query, candidates: Candidates, view: ClusterView) -> Decision:
        # Smooth weighted round-robin over the variants that have a replica (nginx's rule:
        # deterministic, and interleaves the variants rather than sending bursts).
        live = [j for j, s in enumerate(self.shares) if s > 0 and view.instances_of(self.models[j].vi)]
        if not live:
            live = [j for j in range(len(self.models)) if view.instances_of(self.models[j].vi)]
            if not live:
                return Reject("infadapter: no replica of any chosen variant is running")
            weights = {j: 1.0 for j in live}
        else:
            weights = {j: self.shares[j] for j in live}
        total = sum(weights.values())
        for j in live:
            self.wrr[j] += weights[j]
        pick = max(live, key=lambda j: (self.wrr[j], -j))
        self.wrr[pick] -= total
        now = view.now
        best: InstanceView | None = None
        best_wait = math.inf
        for inst in view.instances_of(self.models[pick].vi):
            wait = inst.backlog_s(now)
            if wait < best_wait:
                best, best_wait = inst, wait
        assert best is not None
        return Serve(best)

    # --- per tick ----------------------------------------------------------------------
    def current_cores(self, view: ClusterView) -> list[int]:
        """Cores per variant of the replicas that stay (not retiring)."""
        return [round(sum(i.cores for i in view.instances_of(m.vi) if i.iid not in self.retiring))
                for m in self.models]  # fmt: skip

    def autoscale(self, view: ClusterView) -> list[Action]:
        assert self.app is not None
        now = view.now
        if now + 1e-9 >= self.next_decision:
            self.next_decision += self.interval_s
            self._decide(view)
        room = Room(view)
        actions = self._reconcile(view, room)
        return release_idle_workers(view, room, self.empty_since, self.node_idle_s) + actions

    def _decide(self, view: ClusterView) -> None:
        assert self.app is not None and self.target is not None
        # Only the seconds since the start (the meter pads earlier ones with zeros, which the
        # forecaster would read as a load that rose from nothing): before 10 minutes, its EWM.
        history = view.app_rate_series(self.app.index, min(self.forecaster.history_s, int(view.now)))
        lam = self.forecaster.predict_from(history) * self.app.batch * (1 + self.margin)
        current = list(self.target.cores)
        plan = self._solve(lam, current)
        self.log.append((view.now, lam, plan.cores, tuple(self._shares(plan))))
        if plan.total_cores < sum(current):
            if not self.down_votes.agree("down", self.scale_down_votes):
                return
        else:
            self.down_votes.reset("down")
        if plan.cores != self.target.cores:
            self.down_votes.reset("down")
            self.target = plan
            self.applied.append((view.now, plan))
        elif plan.loads != self.target.loads:
            self.target = plan
            self._set_shares(view.now, self._shares(plan))  # same replicas: the new shares apply at once

    def _reconcile(self, view: ClusterView, room: Room) -> list[Action]:
        """Make-before-break towards the target plan: load what is missing; once every target
        replica is ready, switch the shares and unload the replaced ones."""
        assert self.target is not None
        actions: list[Action] = []
        complete = True
        for j, m in enumerate(self.models):
            want = split_cores(self.target.cores[j], self.per_replica, m.min_cores)
            keep: list[InstanceView] = []
            pool = sorted((i for i in view.instances_of(m.vi) if i.iid not in self.retiring),
                          key=lambda i: (i.state is not InstanceState.READY, i.iid))  # fmt: skip
            missing: list[int] = []
            for c in want:
                match = next((i for i in pool if abs(i.cores - c) < 1e-9), None)
                if match is None:
                    missing.append(c)
                else:
                    pool.remove(match)
                    keep.append(match)
            self.retiring.update(i.iid for i in pool)  # replicas the plan no longer has
            for c in missing:
                room.grow(HardwareKind.CPU)
                actions.append(self._load_action(j, c))
            if missing or any(i.state is not InstanceState.READY for i in keep):
                complete = False
        if complete:
            self._set_shares(view.now, self._shares(self.target))
            live = {i.iid for m in self.models for i in view.instances_of(m.vi)}
            actions += [Unload(iid) for iid in sorted(self.retiring & live)]
            self.retiring.clear()
        else:
            # Mid-redeploy: every ready replica (old or new) takes traffic in proportion to
            # its capacity, so that a new replica serves as soon as it is up.
            caps = [sum(m.capacity(i.cores) for i in view.instances_of(m.vi) if i.state is InstanceState.READY)
                    for m in self.models]  # fmt: skip
            total = sum(caps)
            if total > 0:
                self._set_shares(view.now, [c / total for c in caps])
        return actions
