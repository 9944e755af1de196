"""``infaas-ilp``: the INFaaS paper's integer program for variant scaling, with OR-Tools.

The offline problem (plain data in, plain data out):

- applications ``a``: a load (inputs/s), an SLO, a batch size and the variants that meet
  their accuracy requirement (``eligible``);
- variants ``j``: hardware kind, price of one instance, load latency, memory, capacity units
  (cores / NeuronCores / one GPU device), latency per batch size;
- hardware kinds: worker slots (the most workers of that kind), memory and units per worker;
- current instance counts.

Decision: which variant serves each application (``y[a, j]``, binary) and how many instances
of each variant run on each worker slot (``n[j, k]``, integer); the change in instances is
``delta_j = n_j - current_j``. Minimise, as the paper does,

    sum_j C_j x (delta_j + lambda x T_load_j x max(delta_j, 0))

(reported here as the total ``sum_j C_j n_j + lambda x sum_j C_j T_load_j max(delta_j, 0)``,
which differs by the constant ``sum_j C_j current_j``), subject to

- capacity: ``n_j x throughput_j >= slack x sum of load_a`` over the applications on j, and
  ``n_j >= 1`` when any application uses j (slack 1.05). ``throughput_j`` is
  :func:`policies.infaas_common.capacity` at the *tightest* SLO among j's applications: the
  online policy batches a variant for the tightest SLO it serves, so a loose application
  sharing j with a tight one gets the tight one's batch, and the ILP counts what the
  instances will actually carry. Linear by big-M: for each application a' that may use j,
  ``n_j >= sum_a y_aj x slack x load_a / thr_j(SLO_a') - M x (1 - y_a'j + sum of y_a''j over
  the a'' with a tighter SLO)``, binding only when a' is j's tightest application;
- latency: j may serve a only if its latency at a's batch is within a's SLO;
- memory (and units) per worker: every slot's instances fit in one worker.

Modelling choices (the paper states the objective and the constraint families, not the
encoding): each application is served by one variant (as INFaaS's router sends an
application's queries to the tightest fitting variant), which also makes the ILP checkable
by brute force; ``lambda`` is per second of load latency (0.05 by default, so a 1 s load adds
5% of the instance's hourly price); slots are identical workers of the kind's instance type.

The greedy counterpart (:func:`greedy_solution`) is the steady state the online ``infaas``
autoscaler reaches on the same problem, built from the same functions
(:mod:`policies.infaas_common`): the route's choice per application, then replicate /
upgrade / scale down / downgrade per variant.

The policy re-solves every ``solve_every_s`` seconds on the applications' recent peak
per-second load, loads what the solution adds (placing GPU instances one per device, adding
workers where none has room), and unloads what it drops once the additions are ready. It
routes like ``infaas``, batches like it (an instance it starts is sized for the tightest SLO
the solution gives its variant, then for the tightest SLO it serves: what the capacity
constraint counted), and releases quiet workers like its VM autoscaler. When the load is
more than the worker limits can carry, it solves for the largest share of it that fits
(3/4, 1/2, 1/4, 1/10).

Reproducibility: each solve is bounded by ``node_limit`` branch-and-bound nodes (SCIP), a limit
on work, so a solve that stops early returns the same solution on any machine and runs are
bit-identical. ``time_limit_s`` (30 s) is only a guard: a solve that reaches it returns the best
solution found by then, which depends on the machine's speed (an earlier version used a 2 s
time limit and two runs differed in the third digit of their cost).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ortools.linear_solver import pywraplp

from infaas_sim.errors import ConfigError
from infaas_sim.hardware import HardwareKind
from infaas_sim.placement import TickRoom, replica_units, worker_memory_mb
from infaas_sim.policy import Action, AddWorker, Unload, WorkloadHint, register_policy
from infaas_sim.query import Application
from infaas_sim.view import ClusterView, InstanceState, WorkerState
from policies.infaas import InfaasPolicy
from policies.infaas_common import (
    LOOSE_SLO_MS,
    Option,
    capacity,
    cheapest_option,
    cold_key,
    downgrade_due,
    plan_scale_up,
    price_key,
    replicas_for,
    route_key,
)


# --- the offline problem ---------------------------------------------------------------------
@dataclass(frozen=True)
class IlpVariant:
    name: str
    kind: str  # "cpu", "gpu", "inferentia"
    architecture: str
    price_per_hour: float  # one instance
    load_s: float
    memory_mb: float
    units: float  # cores / NeuronCores / one GPU device
    latency_by_batch: tuple[float, ...]  # index 0 unused


@dataclass(frozen=True)
class IlpApp:
    name: str
    load: float  # inputs per second
    slo_ms: float
    eligible: tuple[int, ...]  # variants meeting its accuracy requirement
    batch: int = 1


@dataclass(frozen=True)
class IlpKind:
    slots: int  # most workers of this kind
    memory_mb: float  # per worker
    units: float  # per worker


@dataclass(frozen=True)
class IlpProblem:
    variants: tuple[IlpVariant, ...]
    apps: tuple[IlpApp, ...]
    kinds: Mapping[str, IlpKind]
    current: tuple[int, ...]
    slack: float = 1.05
    lambda_load: float = 0.05

    def __post_init__(self) -> None:
        if len(self.current) != len(self.variants):
            raise ConfigError("ilp: current counts and variants differ in length")


@dataclass(frozen=True)
class IlpSolution:
    counts: tuple[int, ...]
    assignment: tuple[int, ...]  # variant serving each application (-1: none)
    cost: float  # total: sum C n + lambda sum C T max(delta, 0)
    status: str  # "optimal", "feasible", "infeasible"
    solve_s: float = 0.0
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.status in ("optimal", "feasible")


def eligible(p: IlpProblem, a: int) -> list[int]:
    """Variants that may serve application ``a``: accuracy (given), batch support, latency at
    its batch within its SLO, a configured kind, and one instance fits an empty worker."""
    app = p.apps[a]
    out = []
    for j in app.eligible:
        v = p.variants[j]
        k = p.kinds.get(v.kind)
        if k is None or k.slots <= 0 or v.memory_mb > k.memory_mb + 1e-9 or v.units > k.units + 1e-9:
            continue
        if app.batch >= len(v.latency_by_batch) or v.latency_by_batch[app.batch] > app.slo_ms:
            continue
        out.append(j)
    return out


def throughput(p: IlpProblem, a: int, j: int) -> float:
    """Inputs/s one instance of ``j`` carries when sized for application ``a``'s SLO (the
    capacity rule of the online policy)."""
    return capacity(p.variants[j].latency_by_batch, p.apps[a].slo_ms).throughput


def variant_throughput(p: IlpProblem, j: int, apps: Sequence[int]) -> float:
    """Inputs/s one instance of ``j`` carries serving ``apps``: sized for the tightest SLO."""
    return capacity(p.variants[j].latency_by_batch, min(p.apps[a].slo_ms for a in apps)).throughput


def cost_of(p: IlpProblem, counts: Sequence[int]) -> float:
    total = 0.0
    for j, n in enumerate(counts):
        v = p.variants[j]
        total += v.price_per_hour * (n + p.lambda_load * v.load_s * max(0, n - p.current[j]))
    return total


def min_counts(p: IlpProblem, assignment: Sequence[int]) -> list[int]:
    """The fewest instances carrying an assignment: ceil(slack x load / throughput), the
    throughput at the tightest SLO among each variant's applications; at least one per
    variant in use."""
    users: dict[int, list[int]] = {}
    for a, j in enumerate(assignment):
        users.setdefault(j, []).append(a)
    counts = [0] * len(p.variants)
    for j, apps in users.items():
        load = sum(p.apps[a].load for a in apps)
        counts[j] = max(math.ceil(p.slack * load / variant_throughput(p, j, apps) - 1e-9), 1)
    return counts


def pack_ffd(p: IlpProblem, counts: Sequence[int]) -> bool:
    """First-fit decreasing of the instances into each kind's worker slots (the greedy
    placer's test; exact packing is the ILP's)."""
    by_kind: dict[str, list[tuple[float, float]]] = {}
    for j, n in enumerate(counts):
        v = p.variants[j]
        by_kind.setdefault(v.kind, []).extend([(v.memory_mb, v.units)] * n)
    for kind, items in by_kind.items():
        k = p.kinds.get(kind)
        if k is None:
            if items:
                return False
            continue
        bins: list[list[float]] = []
        for mem, units in sorted(items, reverse=True):
            for b in bins:
                if b[0] + mem <= k.memory_mb + 1e-9 and b[1] + units <= k.units + 1e-9:
                    b[0] += mem
                    b[1] += units
                    break
            else:
                if len(bins) >= k.slots:
                    return False
                bins.append([mem, units])
    return True


# --- the ILP -----------------------------------------------------------------------------------
def solve_ilp(
    p: IlpProblem, time_limit_s: float = 10.0, backend: str = "SCIP", node_limit: int | None = None
) -> IlpSolution:
    """The paper's ILP, solved to optimality (relative gap 0) by OR-Tools' MIP backend.

    ``node_limit`` (SCIP) stops the branch and bound after that many nodes with the best
    solution so far: a limit on work, not time, so the result does not depend on the machine."""
    t0 = time.perf_counter()
    elig = [eligible(p, a) for a in range(len(p.apps))]
    if any(not e for e in elig):
        bad = [p.apps[a].name for a, e in enumerate(elig) if not e]
        return IlpSolution(tuple(p.current), (-1,) * len(p.apps), math.inf, "infeasible",
                           time.perf_counter() - t0, (f"no variant can serve {', '.join(bad)}",))  # fmt: skip
    s = pywraplp.Solver.CreateSolver(backend)
    if s is None:
        raise ConfigError(f"ilp: OR-Tools backend {backend!r} is not available")
    used = sorted({j for e in elig for j in e})
    y = {(a, j): s.BoolVar(f"y_{a}_{j}") for a, e in enumerate(elig) for j in e}
    for a, e in enumerate(elig):
        s.Add(sum(y[a, j] for j in e) == 1)
    slot_vars: dict[str, list[list[tuple[int, pywraplp.Variable]]]] = {}
    n_expr = {}
    d = {}
    objective = []
    for j in used:
        v = p.variants[j]
        k = p.kinds[v.kind]
        per = int(min(k.memory_mb / v.memory_mb, k.units / v.units if v.units > 0 else math.inf) + 1e-9)
        slots = slot_vars.setdefault(v.kind, [[] for _ in range(k.slots)])
        xs = []
        for slot in range(k.slots):
            x = s.IntVar(0, per, f"n_{j}_{slot}")
            slots[slot].append((j, x))
            xs.append(x)
        n_j = sum(xs)
        n_expr[j] = n_j
        users = [a for a, e in enumerate(elig) if j in e]
        for a_ in users:  # j sized for a_'s SLO, binding when a_ is its tightest application
            thr = capacity(v.latency_by_batch, p.apps[a_].slo_ms).throughput
            need = [p.slack * p.apps[a].load / thr for a in users]
            off = 1 - y[a_, j] + sum(y[a, j] for a in users if p.apps[a].slo_ms < p.apps[a_].slo_ms)
            s.Add(n_j >= sum(y[a, j] * x for a, x in zip(users, need, strict=True)) - sum(need) * off)
        for a in users:
            s.Add(n_j >= y[a, j])
        d[j] = s.NumVar(0.0, s.infinity(), f"d_{j}")
        s.Add(d[j] >= n_j - p.current[j])
        objective.append(v.price_per_hour * n_j + p.lambda_load * v.price_per_hour * v.load_s * d[j])
    for kind, slots in slot_vars.items():
        k = p.kinds[kind]
        mem_use = []
        for slot_items in slots:
            mem = sum(p.variants[j].memory_mb * x for j, x in slot_items)
            s.Add(mem <= k.memory_mb)
            s.Add(sum(p.variants[j].units * x for j, x in slot_items) <= k.units)
            mem_use.append(mem)
        for a_, b_ in itertools.pairwise(mem_use):  # identical slots: fullest first
            s.Add(a_ >= b_)
    s.Minimize(sum(objective))
    s.SetTimeLimit(int(time_limit_s * 1000))
    if node_limit is not None and backend.upper() == "SCIP":
        s.SetSolverSpecificParametersAsString(f"limits/nodes = {int(node_limit)}\n")
    params = pywraplp.MPSolverParameters()
    params.SetDoubleParam(params.RELATIVE_MIP_GAP, 0.0)
    status = s.Solve(params)
    solve_s = time.perf_counter() - t0
    if status not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        return IlpSolution(tuple(p.current), (-1,) * len(p.apps), math.inf, "infeasible", solve_s)
    counts = [0] * len(p.variants)
    for j in used:
        counts[j] = round(n_expr[j].solution_value())
    assignment = tuple(max(e, key=lambda j: y[a, j].solution_value()) for a, e in enumerate(elig))
    name = "optimal" if status == pywraplp.Solver.OPTIMAL else "feasible"
    return IlpSolution(tuple(counts), assignment, cost_of(p, counts), name, solve_s)


# --- the greedy (INFaaS's heuristic, offline) -----------------------------------------------------
def greedy_solution(
    p: IlpProblem,
    upgrade_load_ratio: float = 1.5,
    max_replicas: int = 32,
    replicas_per_worker: Mapping[str, int] | None = None,
    loose_slo_ms: float = LOOSE_SLO_MS,
    rounds: int = 4,
    price_aware: bool = False,
    rightsize_margin: float = 0.1,
) -> IlpSolution:
    """The steady state of the online ``infaas`` autoscaler on this problem.

    Each application in turn goes where the route sends it: the running variant that fits
    with the least slack if any (including those earlier applications started), else the one
    it would load (the least load + inference latency); CPU first for loose SLOs in both. Then, per variant in use,
    with the demand of its applications: replicate or upgrade (:func:`plan_scale_up`), scale
    down to what suffices, downgrade (:func:`downgrade_due`); an upgrade or downgrade moves
    its applications to the target, and the variant is planned again (``rounds`` times).
    Running variants no application uses end at zero (the VM autoscaler releases idle ones,
    LRU eviction reclaims them).
    ``price_aware`` is the policy's option of that name (not INFaaS). Replication is limited
    to ``replicas_per_worker`` (the policy's defaults; none with ``price_aware``) times the
    kind's worker slots; beyond that an upgrade is forced (the online policy forces it when
    the live workers are full). With ``price_aware`` the downgrade is the policy's rightsizing:
    a group moves to the cheapest variant all its applications accept within their SLO when
    that saves at least ``rightsize_margin`` of its price."""
    t0 = time.perf_counter()
    caps: dict[str, float] = {"cpu": 2, "gpu": 1, "inferentia": 2}
    if replicas_per_worker is not None:
        caps = dict(replicas_per_worker)
    if price_aware:
        caps = {}
    nv = len(p.variants)
    elig = [eligible(p, a) for a in range(len(p.apps))]
    if any(not e for e in elig):
        return IlpSolution(tuple(p.current), (-1,) * len(p.apps), math.inf, "infeasible", time.perf_counter() - t0)

    def opt(j: int, slo: float) -> Option:
        v = p.variants[j]
        return Option(j, capacity(v.latency_by_batch, slo).throughput, v.load_s, v.price_per_hour,
                      v.latency_by_batch[1])  # fmt: skip

    assign: list[int] = []
    started = {j for j in range(nv) if p.current[j] > 0}
    for a, e in enumerate(elig):  # in turn: what one application loads, the next finds running
        app = p.apps[a]
        running = [j for j in e if j in started]
        keys: list[tuple[tuple[float, float], int]] = []
        for j in running or e:
            v = p.variants[j]
            lat = v.latency_by_batch[app.batch]
            cpu = v.kind == "cpu"
            if running:
                keys.append((route_key(lat, app.slo_ms, cpu, loose_slo_ms), j))
            elif price_aware:
                thr = capacity(v.latency_by_batch, app.slo_ms).throughput
                keys.append((price_key(v.price_per_hour, thr, 1000 * v.load_s, lat, app.load, p.slack), j))
            else:
                keys.append((cold_key(1000 * v.load_s, lat, app.slo_ms, cpu, loose_slo_ms), j))
        assign.append(min(keys)[1])
        started.add(assign[-1])
    counts = [0] * nv
    replaced: set[int] = set()

    def per_worker(u: int) -> int:
        k = p.kinds[p.variants[u].kind]
        cap = caps.get(p.variants[u].kind, math.inf)
        return int(min(k.memory_mb / p.variants[u].memory_mb, k.units / p.variants[u].units, cap) + 1e-9)

    def room_for(u: int) -> int:  # replicas of u the kind's workers hold
        return per_worker(u) * p.kinds[p.variants[u].kind].slots

    for rnd in range(rounds + 1):
        final = rnd == rounds  # a last pass sizes what the moves left, moving nothing
        users: dict[int, list[int]] = {}
        for a, j in enumerate(assign):
            users.setdefault(j, []).append(a)
        moved = False
        counts = [0] * nv
        for j in sorted(users):
            apps = users[j]
            v = p.variants[j]
            demand = sum(p.apps[a].load for a in apps)
            slo = min(p.apps[a].slo_ms for a in apps)
            common = set(elig[apps[0]]).intersection(*(elig[a] for a in apps[1:]))
            cur = opt(j, slo)
            r = max(p.current[j], 1)  # a variant not running is loaded by the first query
            ups = [opt(u, slo) for u in sorted(common) if u != j and p.variants[u].architecture == v.architecture]
            plan = plan_scale_up(cur, r, demand, ups, p.slack, upgrade_load_ratio, max_replicas,
                                 max(0, room_for(j) - r), price_aware)  # fmt: skip
            if plan.action == "upgrade" and not final:
                for a in apps:
                    assign[a] = plan.target
                replaced.add(j)
                moved = True
                continue
            n = plan.replicas if plan.action == "replicate" else replicas_for(demand, cur.throughput, p.slack)
            if plan.action == "upgrade":  # the final pass: as many replicas as there is room for
                n = min(replicas_for(demand, cur.throughput, p.slack), max(r, room_for(j)))
            if not final and price_aware:
                fits = [opt(u, slo) for u in sorted(common) if u != j and p.variants[u].latency_by_batch[1] <= slo]
                roomy = [o for o in fits if replicas_for(demand, o.throughput, p.slack) <= room_for(o.index)]
                pick = cheapest_option(roomy, demand, p.slack)
                save = (1.0 - rightsize_margin) * n * v.price_per_hour
                if pick is not None and pick[1] * pick[0].price_per_hour <= save:
                    for a in apps:
                        assign[a] = pick[0].index
                    replaced.add(j)
                    moved = True
                    continue
            elif not final and downgrade_due(HardwareKind(v.kind), slo, v.latency_by_batch[1], demand,
                                             n * cur.throughput):  # fmt: skip
                cpus = [u for u in sorted(common) if p.variants[u].kind == "cpu"]
                same = [u for u in cpus if p.variants[u].architecture == v.architecture]
                pick = cheapest_option([opt(u, slo) for u in (same or cpus)], demand, p.slack)
                if pick is not None and pick[1] * pick[0].price_per_hour < n * v.price_per_hour:
                    for a in apps:
                        assign[a] = pick[0].index
                    replaced.add(j)
                    moved = True
                    continue
            counts[j] = n
        if not moved:
            break
    status = "feasible" if pack_ffd(p, counts) else "infeasible"
    return IlpSolution(tuple(counts), tuple(assign), cost_of(p, counts), status, time.perf_counter() - t0)


# --- the policy ----------------------------------------------------------------------------------
@register_policy("infaas-ilp")
class InfaasIlpPolicy(InfaasPolicy):
    """Re-solves the ILP every ``solve_every_s`` and moves the cluster to its solution."""

    def __init__(
        self,
        solve_every_s: float = 10.0,
        lambda_load: float = 0.05,
        load_window_s: int = 10,
        extra_slots: int = 4,
        time_limit_s: float = 30.0,
        node_limit: int = 2000,
        backend: str = "SCIP",
        **params: Any,
    ) -> None:
        super().__init__(**params)
        if not solve_every_s > 0 or not time_limit_s > 0:
            raise self.error("solve_every_s and time_limit_s must be > 0")
        if lambda_load < 0 or load_window_s < 1 or extra_slots < 0:
            raise self.error("lambda_load >= 0, load_window_s >= 1, extra_slots >= 0 required")
        self.solve_every_s = float(solve_every_s)
        self.lambda_load = float(lambda_load)
        self.load_window_s = int(load_window_s)
        self.extra_slots = int(extra_slots)
        if node_limit < 1:
            raise self.error(f"node_limit must be >= 1, got {node_limit}")
        self.time_limit_s = float(time_limit_s)
        self.node_limit = int(node_limit)
        self.backend = str(backend)
        self._apps: list[Application] = []
        self._desired: dict[int, int] = {}
        self._assigned_slo: dict[int, float] = {}  # per variant: the tightest SLO the solution gives it
        self._surplus: dict[int, int] = {}
        self._solved_at = -math.inf
        self.solutions: list[tuple[float, IlpSolution]] = []  # (time, solution), for inspection

    def setup(self, view: ClusterView, apps: Sequence[Application], hints: Mapping[str, WorkloadHint]) -> list[Action]:
        self._apps = list(apps)
        return super().setup(view, apps, hints)

    def problem(self, view: ClusterView) -> tuple[IlpProblem, list[int]]:
        """The ILP for the cluster now: (problem, catalog index of each problem variant)."""
        cat = self._bind(view)
        idx: list[int] = []
        pos: dict[int, int] = {}

        def add(vi: int) -> int:
            if vi not in pos:
                pos[vi] = len(idx)
                idx.append(vi)
            return pos[vi]

        apps = []
        for app in self._apps:
            cands = cat.candidates(app.requirement, app.batch).indices
            elig = tuple(add(vi) for vi in cands if self._kind_ok[vi])
            series = view.app_rate_series(app.index, self.load_window_s)
            load = max(series) if series else 0.0
            slo = math.inf if app.requirement.slo_ms is None else float(app.requirement.slo_ms)
            apps.append(IlpApp(app.name, load * app.batch, slo, elig, app.batch))
        for vi in sorted(self._running):
            if view.instances_of(vi) and self._kind_ok[vi]:
                add(vi)
        variants = []
        for vi in idx:
            v = cat.variants[vi]
            variants.append(IlpVariant(v.variant_id, v.hardware.value, v.architecture, self._price[vi],
                                       v.load_latency_ms / 1000.0, v.memory_mb, replica_units(v),
                                       v.latency_by_batch))  # fmt: skip
        kinds = {}
        for kind in self._kinds:
            itype = view.instance_type_for(kind)
            active = sum(1 for w in view.workers(kind) if w.state in (WorkerState.READY, WorkerState.STARTING))
            kinds[kind.value] = IlpKind(min(view.max_workers(kind), active + self.extra_slots),
                                        worker_memory_mb(itype), float(itype.capacity_units))  # fmt: skip
        current = tuple(len(view.instances_of(vi)) for vi in idx)
        return IlpProblem(tuple(variants), tuple(apps), kinds, current, self.slack, self.lambda_load), idx

    def autoscale(self, view: ClusterView) -> list[Action]:
        self._bind(view)
        now = view.now
        self._last_tick = now
        self._sync_running(view)
        self._update_slos(view)
        actions: list[Action] = []
        room = TickRoom(view)
        if now - self._solved_at >= self.solve_every_s - 1e-9 and self._apps:
            self._solved_at = now
            prob, idx = self.problem(view)
            sol = solve_ilp(prob, self.time_limit_s, self.backend, self.node_limit)
            for share in (0.75, 0.5, 0.25, 0.1):  # more load than the worker limits carry
                if sol.ok:
                    break
                apps = tuple(replace(a, load=a.load * share) for a in prob.apps)
                sol = solve_ilp(replace(prob, apps=apps), self.time_limit_s, self.backend, self.node_limit)
            self.solutions.append((now, sol))
            if sol.ok:
                self._desired = {vi: sol.counts[k] for k, vi in enumerate(idx)}
                self._assigned_slo = {}
                for a, k in enumerate(sol.assignment):
                    slo = prob.apps[a].slo_ms
                    self._assigned_slo[idx[k]] = min(slo, self._assigned_slo.get(idx[k], math.inf))
                self._surplus = {
                    vi: prob.current[k] - sol.counts[k] for k, vi in enumerate(idx) if prob.current[k] > sol.counts[k]
                }
        self._reconcile(view, room, actions)
        for vi in sorted(self._running):
            self._set_batches(vi, view.instances_of(vi), actions)
        self._cold_starts(view, room, actions)
        self._missed.clear()
        self._route_kinds.clear()
        if self.vm.due(now):
            self.vm.run(view, self._kinds, actions, False, lambda w: self._releasable(view, w))
        self._prune(view)
        return actions

    def _reconcile(self, view: ClusterView, room: TickRoom, actions: list[Action]) -> None:
        """Load what the solution adds (adding workers where none has room); unload what it
        drops once every addition is ready (make-before-break)."""
        assert self._catalog is not None
        variants = self._catalog.variants
        new_workers: dict[HardwareKind, list[float]] = {}  # kind -> [memory, units] left on the last new one
        added: dict[HardwareKind, int] = {}
        pending = False
        for vi, want in sorted(self._desired.items()):
            insts = view.instances_of(vi)
            if any(i.state is not InstanceState.READY for i in insts) or len(insts) < want:
                pending = True
            if not insts and vi in self._assigned_slo:  # a fresh start: sized for what the ILP gives it
                self._slo_now[vi] = self._assigned_slo[vi]
            for _ in range(want - len(insts)):
                if self._place(view, room, actions, vi, {vi}, request=False):
                    continue
                v = variants[vi]
                itype = view.instance_type_for(v.hardware)
                left = new_workers.get(v.hardware)
                if left is None or left[0] < v.memory_mb or left[1] < replica_units(v):
                    if len(view.workers(v.hardware)) + added.get(v.hardware, 0) >= view.max_workers(v.hardware):
                        break
                    actions.append(AddWorker(itype.name))  # the loads follow once it is starting
                    added[v.hardware] = added.get(v.hardware, 0) + 1
                    left = new_workers[v.hardware] = [worker_memory_mb(itype), float(itype.capacity_units)]
                left[0] -= v.memory_mb
                left[1] -= replica_units(v)
        if pending and view.now - self._solved_at < self.transition_timeout_s:
            return
        for vi, extra in sorted(self._surplus.items()):
            insts = sorted(view.instances_of(vi), key=lambda i: self._unload_key(view, i))
            for inst in insts[: max(0, min(extra, len(insts) - self._desired.get(vi, 0)))]:
                actions.append(Unload(inst.iid))
        self._surplus = {}
