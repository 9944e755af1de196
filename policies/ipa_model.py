"""IPA's pipeline optimiser as a pure function on plain data (arXiv 2308.12871, section 4).

Source of the formulation: the IPA paper's integer program as summarised in
``shared/reference/policies.md`` (IPA section), from its public optimiser code:

- per stage ``s``: one variant (binary), one batch size ``b_s`` (binary over the batch set,
  capped at 8), a replica count ``n_s`` in 1..100;
- throughput: ``n_s x TP[s][v][b] >= lambda`` (the predicted load, the same for every stage:
  a pipeline sends each request through every stage);
- latency: ``sum_s L[s][v][b] + (b_s - 1) / lambda <= SLA``, with ``L`` the profiled p99
  latency of a batch and ``(b - 1) / lambda`` the time to gather a batch at rate lambda;
- objective: maximise ``alpha x accuracy - beta x sum_s base_cpu[s][v] x n_s - gamma x
  sum_s b_s``; accuracy is the sum, the average or the product of the stage accuracies.

Encoding (ours; the paper states the program, not a solver encoding). CP-SAT needs integer
coefficients, so:

- the choice is one binary ``x[s, k]`` per stage and (variant, batch) pair ``k``, and the
  replicas ``m[s, k]`` in 0..max_replicas are tied to it (``m <= max_replicas x x``);
  ``n_s = sum_k m[s, k]``; the throughput row is ``sum_k m[s, k] x TP_k >= lambda``;
- the accuracy term, which the product makes non-linear, is exact through one binary ``z_c``
  per combination ``c`` of stage variants (``sum_c z_c = 1``, and stage s's variant is
  ``v`` iff the chosen combination has it), so sum, average and product are all linear in z;
- throughputs are floored and the load ceiled to 1/1000 of a request per second, latencies
  ceiled to microseconds (the rounding only ever makes the solver more conservative), and
  the objective is scaled by 1e6 and rounded (a gamma below 1e-6 per batch unit vanishes);
- ``accuracy_scale`` (default 100) turns the catalog's fractions into the percentages IPA's
  profiles list (YOLOv5n 45.7, ResNet-18 69.8), which its weights alpha/beta were tuned for;
  the product is taken over fractions and then scaled;
- one search worker and a fixed seed, so that the same inputs give the same plan;
- ``normalize``: IPA's optional rank normalisation, a variant's accuracy replaced by its rank
  among the stage's variants divided by their number.

An extension (not in IPA, whose Kubernetes cluster is assumed big enough): ``max_cores``
bounds ``sum_s base_cpu x n_s`` by what the cluster can hold, so that a plan is one the
cluster can place; None (the default) leaves the program as IPA states it.

IPA's fixed-variant baselines (:func:`pin_variants`): each stage pinned to one option, after
which the same program chooses only batch and replicas. ``most_accurate``: the combination
with the most accuracy (the objective's aggregate) whose batch-1 latencies fit the SLA;
``cheapest``: the one with the least base CPU (ties: the faster, then the more accurate).

A load of zero makes every batch above 1 wait forever: only batch 1 is feasible then, with
one replica per stage. :func:`brute_force` enumerates the same program (for tests and for
tiny cases) with the same rounding.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from infaas_sim.errors import ConfigError

ACCURACY_METHODS = ("sum", "average", "product")
VARIANT_POLICIES = ("adaptive", "most_accurate", "cheapest")
OBJECTIVE_SCALE = 1_000_000
MAX_COMBINATIONS = 20_000  # variant combinations the exact accuracy term may enumerate


@dataclass(frozen=True)
class StageOption:
    """One variant a stage may run: its accuracy (fraction), p99 latency per batch (ms, index
    0 unused), replica throughput per batch (requests/s; derived from latency when empty) and
    base CPU allocation (cores per replica)."""

    variant_id: str
    accuracy: float
    latency_ms: tuple[float, ...]
    base_cpu: float
    throughput: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if len(self.latency_ms) < 2 or any(x <= 0 for x in self.latency_ms[1:]):
            raise ConfigError(f"ipa: option {self.variant_id!r} needs positive latencies for batch 1 and up")
        if not self.throughput:
            tp = (0.0, *(1000.0 * b / self.latency_ms[b] for b in range(1, len(self.latency_ms))))
            object.__setattr__(self, "throughput", tp)
        elif len(self.throughput) != len(self.latency_ms):
            raise ConfigError(f"ipa: option {self.variant_id!r}: throughput and latency differ in length")
        if self.base_cpu <= 0:
            raise ConfigError(f"ipa: option {self.variant_id!r}: base_cpu must be > 0")

    @property
    def max_batch(self) -> int:
        return len(self.latency_ms) - 1


@dataclass(frozen=True)
class Stage:
    name: str
    options: tuple[StageOption, ...]

    def __post_init__(self) -> None:
        if not self.options:
            raise ConfigError(f"ipa: stage {self.name!r} has no variant to choose from")


@dataclass(frozen=True)
class Weights:
    """The objective's weights. IPA's experiments: alpha 2, beta 1, gamma 1e-6 (video);
    alpha 10, beta 0.5 (the other pipelines) (reference/policies.md, IPA)."""

    alpha: float = 10.0
    beta: float = 0.5
    gamma: float = 1e-6
    accuracy_method: str = "sum"
    accuracy_scale: float = 100.0
    normalize: bool = False

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma", "accuracy_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ConfigError(f"ipa: {name} must be a number >= 0, got {value!r}")
        if self.accuracy_method not in ACCURACY_METHODS:
            raise ConfigError(f"ipa: accuracy_method must be one of {', '.join(ACCURACY_METHODS)}, "
                              f"got {self.accuracy_method!r}")  # fmt: skip


@dataclass(frozen=True)
class StagePlan:
    stage: str
    option: int  # index into the stage's options
    variant_id: str
    batch: int
    replicas: int
    latency_ms: float  # profiled p99 of a batch of ``batch``
    batch_wait_ms: float  # (batch - 1) / lambda
    base_cpu: float

    @property
    def cores(self) -> float:
        return self.base_cpu * self.replicas


@dataclass(frozen=True)
class PipelinePlan:
    stages: tuple[StagePlan, ...]
    status: str  # "optimal", "feasible", "infeasible"
    objective: float = -math.inf
    accuracy: float = 0.0  # the objective's accuracy term before alpha (scaled)
    load_rps: float = 0.0
    sla_ms: float = 0.0
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.status in ("optimal", "feasible")

    @property
    def cost_cores(self) -> float:
        return sum(s.cores for s in self.stages)

    @property
    def predicted_latency_ms(self) -> float:
        """The model's end-to-end latency: profiled batch latencies plus batch waits."""
        return sum(s.latency_ms + s.batch_wait_ms for s in self.stages)


# --- the program's coefficients (shared by the solver and the brute force) ----------------
def batch_set(opt: StageOption, cap: int, batches: Sequence[int] | None) -> list[int]:
    top = min(cap, opt.max_batch)
    return [b for b in (batches if batches is not None else range(1, top + 1)) if 1 <= b <= top]


def batch_wait_ms(batch: int, load_rps: float) -> float:
    if batch <= 1:
        return 0.0
    return math.inf if load_rps <= 0 else 1000.0 * (batch - 1) / load_rps


def latency_us(opt: StageOption, batch: int, load_rps: float) -> int | None:
    """The stage's latency term in whole microseconds (ceiled); None when unbounded."""
    t = opt.latency_ms[batch] + batch_wait_ms(batch, load_rps)
    return None if math.isinf(t) else math.ceil(round(t * 1000.0, 6))


def min_replicas(opt: StageOption, batch: int, load_rps: float) -> int:
    """The fewest replicas with n x TP >= load (throughput floored, load ceiled to 1e-3 rps)."""
    tp = math.floor(round(opt.throughput[batch] * 1000.0, 6))
    need = math.ceil(round(load_rps * 1000.0, 6))
    if tp <= 0:
        return 1 << 30
    return max(1, -(-need // tp))


def core_milli(opt: StageOption) -> int:
    """A replica's base allocation in thousandths of a core (the capacity row's unit)."""
    return round(opt.base_cpu * 1000)


def cap_milli(max_cores: float | None) -> float:
    return math.inf if max_cores is None else math.floor(round(max_cores * 1000, 6))


def stage_accuracies(stage: Stage, w: Weights) -> list[float]:
    """Each option's accuracy as the objective sees it (a fraction, or its rank share)."""
    if not w.normalize:
        return [o.accuracy for o in stage.options]
    ranks = sorted(set(o.accuracy for o in stage.options))
    return [(ranks.index(o.accuracy) + 1) / len(ranks) for o in stage.options]


def combination_accuracy(accs: Sequence[float], w: Weights) -> float:
    """The pipeline's accuracy term (before alpha) for one variant per stage."""
    if w.accuracy_method == "sum":
        agg = sum(accs)
    elif w.accuracy_method == "average":
        agg = sum(accs) / len(accs)
    else:
        agg = math.prod(accs)
    return w.accuracy_scale * agg


def objective_of(accuracy: float, cores: float, batches: int, w: Weights) -> float:
    return w.alpha * accuracy - w.beta * cores - w.gamma * batches


def _check(stages: Sequence[Stage], load_rps: float, sla_ms: float) -> None:
    if not stages:
        raise ConfigError("ipa: a pipeline needs at least one stage")
    if not load_rps >= 0 or math.isinf(load_rps):
        raise ConfigError(f"ipa: load must be a finite rate >= 0, got {load_rps!r}")
    if not sla_ms > 0:
        raise ConfigError(f"ipa: the SLA must be > 0 ms, got {sla_ms!r}")


def _stage_plan(stage: Stage, k: int, b: int, n: int, load_rps: float) -> StagePlan:
    o = stage.options[k]
    return StagePlan(stage.name, k, o.variant_id, b, n, o.latency_ms[b], batch_wait_ms(b, load_rps), o.base_cpu)


def _finish(stages: Sequence[Stage], picks: Sequence[tuple[int, int, int]], load_rps: float, sla_ms: float,
            w: Weights, status: str, notes: tuple[str, ...] = ()) -> PipelinePlan:  # fmt: skip
    plans = tuple(_stage_plan(st, k, b, n, load_rps) for st, (k, b, n) in zip(stages, picks, strict=True))
    accs = [stage_accuracies(st, w)[k] for st, (k, _, _) in zip(stages, picks, strict=True)]
    acc = combination_accuracy(accs, w)
    obj = objective_of(acc, sum(p.cores for p in plans), sum(p.batch for p in plans), w)
    return PipelinePlan(plans, status, obj, acc, load_rps, sla_ms, notes)


# --- the fixed-variant baselines ------------------------------------------------------------
def pin_variants(stages: Sequence[Stage], sla_ms: float, policy: str, weights: Weights | None = None
                 ) -> tuple[Stage, ...]:  # fmt: skip
    """Each stage reduced to the one option ``policy`` pins it to ("adaptive": unchanged).

    Only combinations whose batch-1 latencies sum to within ``sla_ms`` are considered (any
    other cannot meet the SLA at any load); when none does, all are, and the program's
    fallback handles the infeasible SLA as it does for the adaptive policy."""
    if policy not in VARIANT_POLICIES:
        raise ConfigError(f"ipa: variant_policy must be one of {', '.join(VARIANT_POLICIES)}, got {policy!r}")
    if policy == "adaptive":
        return tuple(stages)
    w = weights or Weights()
    accs = [stage_accuracies(st, w) for st in stages]
    combos = list(itertools.product(*(range(len(st.options)) for st in stages)))
    if len(combos) > MAX_COMBINATIONS:
        raise ConfigError(f"ipa: {len(combos)} variant combinations exceed {MAX_COMBINATIONS}; prune the candidates")

    def latency(c: tuple[int, ...]) -> float:
        return sum(st.options[k].latency_ms[1] for st, k in zip(stages, c, strict=True))

    def cpu(c: tuple[int, ...]) -> float:
        return sum(st.options[k].base_cpu for st, k in zip(stages, c, strict=True))

    def accuracy(c: tuple[int, ...]) -> float:
        return combination_accuracy([a[k] for a, k in zip(accs, c, strict=True)], w)

    fits = [c for c in combos if latency(c) <= sla_ms + 1e-9] or combos
    if policy == "most_accurate":  # ties: the cheaper, then the faster
        best = min(fits, key=lambda c: (-accuracy(c), cpu(c), latency(c), c))
    else:
        best = min(fits, key=lambda c: (cpu(c), latency(c), -accuracy(c), c))
    return tuple(Stage(st.name, (st.options[k],)) for st, k in zip(stages, best, strict=True))


# --- the solver ------------------------------------------------------------------------
def solve(
    stages: Sequence[Stage],
    load_rps: float,
    sla_ms: float,
    weights: Weights | None = None,
    max_batch: int = 8,
    max_replicas: int = 100,
    batches: Sequence[int] | None = None,
    time_limit_s: float = 5.0,
    max_cores: float | None = None,
) -> PipelinePlan:
    """IPA's integer program for one pipeline at one load; ``status`` "infeasible" (and no
    stages) when no choice meets the SLA within ``max_replicas``."""
    w = weights or Weights()
    _check(stages, load_rps, sla_ms)
    m = cp_model.CpModel()
    sla_us = math.floor(round(sla_ms * 1000.0, 6))
    cores_cap = cap_milli(max_cores)
    # (stage, option, batch) -> (x, replicas var, latency us, min replicas)
    choices: list[list[tuple[int, int, cp_model.IntVar, cp_model.IntVar]]] = []
    lat_terms = []
    obj_terms = []
    core_terms = []
    for s, st in enumerate(stages):
        row = []
        for k, o in enumerate(st.options):
            for b in batch_set(o, max_batch, batches):
                lat = latency_us(o, b, load_rps)
                r = min_replicas(o, b, load_rps)
                if lat is None or lat > sla_us or r > max_replicas or r * core_milli(o) > cores_cap:
                    continue  # this (variant, batch) cannot be part of any feasible plan
                x = m.new_bool_var(f"x_{s}_{k}_{b}")
                n = m.new_int_var(0, max_replicas, f"n_{s}_{k}_{b}")
                m.add(n <= max_replicas * x)
                m.add(n >= x)  # replicas 1..100 for the chosen pair
                row.append((k, b, x, n))
                lat_terms.append(lat * x)
                core_terms.append(core_milli(o) * n)
                obj_terms.append(-round(OBJECTIVE_SCALE * w.beta * o.base_cpu) * n)
                obj_terms.append(-round(OBJECTIVE_SCALE * w.gamma * b) * x)
        if not row:
            return PipelinePlan((), "infeasible", load_rps=load_rps, sla_ms=sla_ms,
                                notes=(f"stage {st.name!r}: no variant and batch fits the SLA and load",))  # fmt: skip
        m.add_exactly_one(x for _, _, x, _ in row)
        # Throughput: sum_k m_k x TP_k >= lambda (in 1/1000 requests per second).
        m.add(sum(math.floor(round(stages[s].options[k].throughput[b] * 1000.0, 6)) * n for k, b, _, n in row)
              >= math.ceil(round(load_rps * 1000.0, 6)))  # fmt: skip
        choices.append(row)
    m.add(sum(lat_terms) <= sla_us)
    if max_cores is not None:
        m.add(sum(core_terms) <= cores_cap)
    # The exact accuracy term: one binary per combination of stage variants.
    per_stage = [sorted({k for k, _, _, _ in row}) for row in choices]
    n_comb = math.prod(len(p) for p in per_stage)
    if n_comb > MAX_COMBINATIONS:
        raise ConfigError(f"ipa: {n_comb} variant combinations exceed {MAX_COMBINATIONS}; prune the candidates")
    accs = [stage_accuracies(st, w) for st in stages]
    z_of: dict[tuple[int, ...], cp_model.IntVar] = {}
    for combo in itertools.product(*per_stage):
        z = m.new_bool_var("z_" + "_".join(map(str, combo)))
        z_of[combo] = z
        acc = combination_accuracy([accs[s][k] for s, k in enumerate(combo)], w)
        obj_terms.append(round(OBJECTIVE_SCALE * w.alpha * acc) * z)
    m.add_exactly_one(z_of.values())
    for s, row in enumerate(choices):
        for k in per_stage[s]:
            picked = sum(x for kk, _, x, _ in row if kk == k)
            m.add(picked == sum(z for combo, z in z_of.items() if combo[s] == k))
    m.maximize(sum(obj_terms))
    solver = cp_model.CpSolver()
    solver.parameters.num_search_workers = 1  # deterministic: same inputs, same plan
    solver.parameters.random_seed = 0
    solver.parameters.max_time_in_seconds = time_limit_s
    status = solver.solve(m)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return PipelinePlan((), "infeasible", load_rps=load_rps, sla_ms=sla_ms,
                            notes=("no choice meets the end-to-end SLA",))  # fmt: skip
    picks: list[tuple[int, int, int]] = []
    for row in choices:
        s = len(picks)
        k, b, _, n = next(c for c in row if solver.boolean_value(c[2]))
        # The fewest replicas meeting the load: what the cost term chooses whenever beta x
        # base_cpu survives the integer scaling, and the sensible tie-break where it does not.
        picks.append((k, b, min(int(solver.value(n)), min_replicas(stages[s].options[k], b, load_rps))))
    return _finish(stages, picks, load_rps, sla_ms, w, "optimal" if status == cp_model.OPTIMAL else "feasible")


def brute_force(
    stages: Sequence[Stage],
    load_rps: float,
    sla_ms: float,
    weights: Weights | None = None,
    max_batch: int = 8,
    max_replicas: int = 100,
    batches: Sequence[int] | None = None,
    max_cores: float | None = None,
) -> PipelinePlan:
    """The same program by enumeration (every stage's variant and batch, the fewest replicas
    meeting the load, which the cost term prefers): exponential, for small cases."""
    w = weights or Weights()
    _check(stages, load_rps, sla_ms)
    sla_us = math.floor(round(sla_ms * 1000.0, 6))
    cores_cap = cap_milli(max_cores)
    rows = []
    for st in stages:
        row = []
        for k, o in enumerate(st.options):
            for b in batch_set(o, max_batch, batches):
                lat = latency_us(o, b, load_rps)
                r = min_replicas(o, b, load_rps)
                if lat is not None and r <= max_replicas:
                    row.append((k, b, r, lat))
        rows.append(row)
    best: PipelinePlan | None = None
    for combo in itertools.product(*rows):
        if sum(c[3] for c in combo) > sla_us:
            continue
        if sum(core_milli(stages[s].options[c[0]]) * c[2] for s, c in enumerate(combo)) > cores_cap:
            continue
        plan = _finish(stages, [(k, b, r) for k, b, r, _ in combo], load_rps, sla_ms, w, "optimal")
        if best is None or plan.objective > best.objective + 1e-9:
            best = plan
    return best if best is not None else PipelinePlan((), "infeasible", load_rps=load_rps, sla_ms=sla_ms)
