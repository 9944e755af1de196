"""``themis``: two-stage autoscaling (Themis, arXiv 2407.14843): on a surge, grow the cores of
the running replicas in place (vertical); once the load is stable, move to the cheapest
replica configuration (horizontal). Formulation from ``../shared/reference/policies.md``
(read from Themis's public code).

What follows Themis
  - Latency model per replica, c cores, batch b, fitted by least squares on profiled points
    (cores 1, 2, 4, 6) x (batch 1, 2, 4, 6): ``l(c, b) = a*b/c + beta*b + g/c + z`` (Amdahl-like),
    padded by ``pad`` (10%) of ``l(1, 1)``; throughput ``th(c, b) = 1000 b / l(c, b)``.
  - Batch-fill wait: the 0.99 quantile of waiting for b - 1 more Poisson arrivals at rate
    lambda, Gamma(b - 1, 1/lambda) (``wait_model: gamma``); ``wait_model: exponential`` is the
    form its experiments set, ``4605 (b - 1) / lambda`` ms.
  - Horizontal DP (:func:`horizontal_plan`): a knapsack over stages and a 1 ms latency budget
    (the SLO); per stage a batch and cores (``horizontal_cores``, 1 as in the live policy) and
    replicas ``n = ceil((lambda + k sqrt(lambda)) / th)``, k = 1, minimising
    ``sum n (memory_GB + 18 cores)``, subject to the sum of latency + batch wait <= SLO.
  - Vertical DP (:func:`vertical_plan`): replicas fixed; cores (<= ``max_cores``, 4) and batch
    per stage minimising total cores such that ``replicas x th >= lambda + sqrt(lambda)``;
    when even ``max_cores`` falls short, the largest feasible lambda' and extra replicas (the
    horizontal plan for the rest).
  - Every ``tick_s`` (0.5 s): lambda = the maximum per-second rate over the last
    ``lambda_window_s`` (5 s); stable and lambda within the current capacity -> horizontal
    (scale-out at once, scale-in - fewer replicas or fewer cores - only after
    ``scale_in_agreement_s`` (10 s) of horizontal decisions in a row), otherwise vertical
    (cores never shrink in that branch).
  - One application: a single model, or a pipeline (the core's ``Application.pipeline``),
    whose stages share the end-to-end SLO in both DPs; lambda is the application's arrival
    rate, which every stage sees; a loop is horizontal only when every stage is below
    capacity.

Single-branch modes (``mode``), Themis's own baselines
  Themis compares itself with a horizontal-only and a vertical-only autoscaler ("over 10x
  fewer SLO violations"); the reference names them without their rules, so here each runs
  one of Themis's DPs alone. ``mode: two_stage`` (the default) is Themis; the other two keep
  its latency model, lambda, loop and dispatcher, so that only the branch logic differs:

  - ``horizontal``: every loop runs the horizontal DP, at the cores each stage's replicas got
    at setup (``horizontal_cores``, or the DP's fallback cores when those cannot meet the
    SLO), so the DP only chooses batch and replicas and a replica is never resized in place.
    Scale-out at once, scale-in after ``scale_in_agreement_s`` as in the two-stage policy.
  - ``vertical``: the replicas stay at the count the setup's horizontal plan gave them; every
    loop runs the vertical DP on those replicas from 1 core up (cores shrink when the DP
    says so, after the same ``scale_in_agreement_s``: the largest cores any plan of the
    window asked for). When not even ``max_cores`` carries lambda + sqrt(lambda), every
    stage stays at ``max_cores`` with the batches that serve the most (the DP at its
    largest feasible lambda'), and no replica is added: the extra replicas of Themis's
    vertical branch are its horizontal half.

  The surge classifier only picks the branch, so the single-branch modes neither train nor
  consult it.

Deviations, each with its reason
  - Surge detection: Themis classifies "increasing" with a small LSTM over the last 60 s
    (threshold 0.2). Here the same inputs (the last 60 s of per-second counts) go to the
    learned forecaster (:mod:`policies.forecast.learned`: ridge regression on twelve 5 s
    window maxima, trained on the trace's past), and "increasing" is its probability that
    the next ``surge_horizon_s`` (10 s) peak above ``(1 + surge_rise)`` x lambda, above
    ``surge_threshold`` (0.2, Themis's threshold). Why: no LSTM/torch dependency in the core;
    the forecaster beats the window maximum on the held-out days (docs/themis_infadapter.md).
    Themis does not state its label's rise; ``surge_rise`` 0.2, because at 0.1 the
    second-to-second noise of the real trace alone flags about 80% of the loops on Themis's
    slice (0.2: about 25%).
  - Profiled points come from the catalog's per-core profile (``Catalog.cpu_latency_ms``:
    the CPU rows of the same model, measured at 1 and 2 cores and fitted at 4 and 8 on the
    default catalog, interpolated in 1/cores between them), the latency the cluster runs a
    replica of that many cores at: what Themis's offline profiling on the cluster measures.
    Until 2026-12-02 they were the variant's own row scaled by an Amdahl law, which on the
    measured catalog was up to 50% optimistic at 8 cores (resnet18 at 1 core: 10.0 ms
    planned, 15.2 ms run), so the plans under-provisioned.
  - Dispatch: Themis has one FIFO queue per stage feeding batches to replicas (timeout
    50 ms); the cluster has a queue per replica, so queries go join-shortest-queue on the
    estimated wait and each replica batches up to the plan's batch, dispatching at once when
    idle (a work-conserving batcher; the model's batch-fill wait stays as a conservative
    term).
  - When ``horizontal_cores`` cannot meet the SLO at any batch (a 1-core replica slower than
    the SLO), the horizontal DP may use 1..``max_cores`` (the paper's DP allows cores; only
    its live policy fixes 1).
  - The variant: Themis serves a fixed model per stage; here, per stage, the CPU candidate
    (one catalog row per model) that makes the horizontal plan at the mean rate cheapest
    (jointly over a pipeline's stages), or the ones named by ``variant`` (one id per stage).
  - When the vertical DP's cores do not fit on a replica's worker, the replica grows as far
    as the worker allows and its batch is the one with the most throughput that fits the
    stage's even share of the SLO on its cores (Themis assumes the node has the cores).
  - Workers (VMs) are started by the cluster when no worker has the cores, and given back
    after ``node_idle_s`` empty, as for ``hpa`` / ``vpa``.
  - A replica still loading (or on a worker still starting) counts towards a stage's
    planned replicas but not towards the capacity the branch test compares lambda with, so
    that a surge keeps the vertical branch until new replicas serve.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from infaas_sim.catalog import Candidates
from infaas_sim.hardware import HardwareKind
from infaas_sim.hysteresis import ScaleInWindow
from infaas_sim.placement import Room
from infaas_sim.policy import (
    Action,
    Decision,
    Load,
    Policy,
    Reject,
    Resize,
    Serve,
    SetBatch,
    Unload,
    WorkloadHint,
    register_policy,
)
from infaas_sim.query import Application, Query
from infaas_sim.variant import LatencyFn, Variant, amdahl_latency_ms
from infaas_sim.view import ClusterView, InstanceState, InstanceView
from policies.baseline_common import pick_victims, release_idle_workers
from policies.forecast.learned import LearnedForecaster

#: Profiling grid of Themis's latency model (cores x batch).
PROFILE_CORES = (1, 2, 4, 6)
PROFILE_BATCHES = (1, 2, 4, 6)
#: Cost weight of a core against a GB of memory in Themis's cost function.
CORE_COST = 18.0
WAIT_MODELS = ("gamma", "exponential")
MODES = ("two_stage", "horizontal", "vertical")
WAIT_QUANTILE = 0.99


@dataclass(frozen=True)
class LatencyModel:
    """``l(c, b) = a b / c + beta b + g / c + z + pad`` in ms."""

    a: float
    beta: float
    g: float
    z: float
    pad: float = 0.0

    def ms(self, cores: float, batch: int) -> float:
        return self.a * batch / cores + self.beta * batch + self.g / cores + self.z + self.pad

    def throughput(self, cores: float, batch: int) -> float:
        """Inputs per second of one replica running full batches."""
        return 1000.0 * batch / self.ms(cores, batch)

    @classmethod
    def fit(cls, points: Sequence[tuple[float, int, float]], pad_share: float = 0.1) -> LatencyModel:
        """Least squares on (cores, batch, ms) points, padded by ``pad_share`` of l(1, 1)."""
        x = np.array([[b / c, b, 1.0 / c, 1.0] for c, b, _ in points])
        y = np.array([ms for _, _, ms in points])
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        a, beta, g, z = (float(v) for v in coef)
        raw = cls(a, beta, g, z)
        return cls(a, beta, g, z, pad_share * raw.ms(1, 1))

    @classmethod
    def profile(cls, variant: Variant, pad_share: float = 0.1, lat: LatencyFn = amdahl_latency_ms) -> LatencyModel:
        """Fit on the profile ``lat`` (a catalog's per-core profile) at Themis's grid."""
        batches = sorted({min(b, variant.max_batch) for b in PROFILE_BATCHES})
        pts = [(c, b, lat(variant, c, b)) for c in PROFILE_CORES for b in batches]
        return cls.fit(pts, pad_share)


@functools.lru_cache(maxsize=64)
def _erlang_quantile(k: int, q: float) -> float:
    """y with P(Gamma(k, 1) <= y) = q (bisection on the Erlang CDF)."""

    def cdf(y: float) -> float:
        term, total = 1.0, 1.0
        for n in range(1, k):
            term *= y / n
            total += term
        return 1.0 - math.exp(-y) * total

    lo, hi = 0.0, max(10.0, 4.0 * k + 20.0)
    for _ in range(100):
        mid = (lo + hi) / 2
        if cdf(mid) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def batch_wait_ms(batch: int, lam: float, model: str = "gamma", q: float = WAIT_QUANTILE) -> float:
    """The ``q`` quantile of waiting for ``batch - 1`` more arrivals at ``lam`` per second."""
    if batch <= 1:
        return 0.0
    if lam <= 0:
        return math.inf
    if model == "exponential":
        return 1000.0 * math.log(1.0 / (1.0 - q)) * (batch - 1) / lam  # 4605 (b - 1) / lambda at q = 0.99
    return 1000.0 * _erlang_quantile(batch - 1, q) / lam


@dataclass(frozen=True)
class Stage:
    """One stage of a pipeline as the DPs see it."""

    model: LatencyModel
    memory_gb: float
    max_batch: int


@dataclass(frozen=True)
class StageConfig:
    cores: int
    batch: int
    replicas: int
    latency_ms: float  # processing + batch wait

    @property
    def total_cores(self) -> int:
        return self.cores * self.replicas


# An option: (latency in whole ms, cost, config).
Option = tuple[int, float, StageConfig]


def knapsack(options: Sequence[Sequence[Option]], budget_ms: int) -> list[StageConfig] | None:
    """Minimum-cost choice of one option per stage with total latency <= ``budget_ms`` (1 ms
    buckets), ties to the lower latency; None if infeasible."""
    # best[t] = (cost, choices) with exactly t ms used so far
    best: dict[int, tuple[float, list[StageConfig]]] = {0: (0.0, [])}
    for opts in options:
        nxt: dict[int, tuple[float, list[StageConfig]]] = {}
        for used, (cost, chosen) in best.items():
            for ms, c, cfg in opts:
                t = used + ms
                if t > budget_ms:
                    continue
                cand = (cost + c, [*chosen, cfg])
                old = nxt.get(t)
                if old is None or cand[0] < old[0] - 1e-12:
                    nxt[t] = cand
        if not nxt:
            return None
        best = nxt
    t_best = min(best, key=lambda t: (best[t][0], t))
    return best[t_best][1]


def _latency_int(ms: float) -> int:
    return math.ceil(ms - 1e-9) if math.isfinite(ms) else 1 << 40


def horizontal_options(stage: Stage, lam: float, cores: Sequence[int], k: float, wait_model: str) -> list[Option]:
    need = lam + k * math.sqrt(lam)
    out: list[Option] = []
    for c in cores:
        for b in range(1, stage.max_batch + 1):
            lat = stage.model.ms(c, b) + batch_wait_ms(b, lam, wait_model)
            n = max(1, math.ceil(need / stage.model.throughput(c, b) - 1e-9))
            out.append((_latency_int(lat), n * (stage.memory_gb + CORE_COST * c), StageConfig(c, b, n, lat)))
    return out


def horizontal_plan(
    stages: Sequence[Stage],
    lam: float,
    slo_ms: float,
    cores: Sequence[int] = (1,),
    max_cores: int = 4,
    k: float = 1.0,
    wait_model: str = "gamma",
) -> list[StageConfig] | None:
    """Themis's horizontal DP; falls back to cores 1..``max_cores`` when ``cores`` cannot meet
    the SLO."""
    budget = math.floor(slo_ms + 1e-9)
    plan = knapsack([horizontal_options(s, lam, cores, k, wait_model) for s in stages], budget)
    if plan is None and set(cores) != set(range(1, max_cores + 1)):
        all_cores = range(1, max_cores + 1)
        plan = knapsack([horizontal_options(s, lam, all_cores, k, wait_model) for s in stages], budget)
    return plan


def vertical_options(stage: Stage, replicas: int, lam: float, need: float, min_cores: int, max_cores: int,
                     wait_model: str) -> list[Option]:  # fmt: skip
    out: list[Option] = []
    for c in range(max(1, min_cores), max_cores + 1):
        for b in range(1, stage.max_batch + 1):
            if replicas * stage.model.throughput(c, b) + 1e-9 < need:
                continue
            lat = stage.model.ms(c, b) + batch_wait_ms(b, lam, wait_model)
            out.append((_latency_int(lat), float(replicas * c), StageConfig(c, b, replicas, lat)))
    return out


def vertical_plan(stages: Sequence[Stage], replicas: Sequence[int], lam: float, slo_ms: float, max_cores: int = 4,
                  min_cores: Sequence[int] | None = None, wait_model: str = "gamma"
                  ) -> tuple[list[StageConfig] | None, float]:  # fmt: skip
    """Themis's vertical DP with replicas fixed: (plan, lambda it serves). When lambda +
    sqrt(lambda) is out of reach, the plan for the largest feasible lambda' (bisection) and
    lambda' itself; (None, 0) when not even the smallest load fits the SLO."""
    budget = math.floor(slo_ms + 1e-9)
    mins = list(min_cores) if min_cores is not None else [1] * len(stages)

    def solve(target: float) -> list[StageConfig] | None:
        opts = [vertical_options(s, n, lam, target, m, max_cores, wait_model)
                for s, n, m in zip(stages, replicas, mins, strict=True)]  # fmt: skip
        if any(not o for o in opts):
            return None
        return knapsack(opts, budget)

    need = lam + math.sqrt(lam)
    plan = solve(need)
    if plan is not None:
        return plan, need
    lo, hi = 0.0, need
    best: list[StageConfig] | None = None
    for _ in range(30):
        mid = (lo + hi) / 2
        p = solve(mid)
        if p is not None:
            lo, best = mid, p
        else:
            hi = mid
    return best, lo


@dataclass
class StageState:
    """One stage's model and the policy's bookkeeping of its replicas."""

    vi: int
    variant: Variant
    stage: Stage
    batch: int = 1  # the batcher limit the replicas were given
    requested: dict[int, float] = field(default_factory=dict)  # instance id -> cores asked for

    def cores_of(self, inst: InstanceView) -> float:
        """The cores a replica has or was asked to grow to (a resize may be pending)."""
        return self.requested.get(inst.iid, inst.cores)

    def capacity(self, insts: Sequence[InstanceView]) -> float:
        return sum(self.stage.model.throughput(self.cores_of(i), self.batch) for i in insts)


@register_policy("themis")
class ThemisPolicy(Policy):
    tick_s: float | None = 0.5

    def __init__(
        self,
        variant: str | Sequence[str] = "auto",
        max_cores: int = 4,
        horizontal_cores: Sequence[int] = (1,),
        k: float = 1.0,
        pad: float = 0.1,
        wait_model: str = "gamma",
        lambda_window_s: int = 5,
        scale_in_agreement_s: float = 10.0,
        surge_detector: str = "learned",
        surge_horizon_s: int = 10,
        surge_rise: float = 0.2,
        surge_threshold: float = 0.2,
        train: str = "auto",
        node_idle_s: float = 600.0,
        tick_s: float = 0.5,
        mode: str = "two_stage",
    ) -> None:
        if mode not in MODES:
            raise self.error(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not isinstance(max_cores, int) or isinstance(max_cores, bool) or max_cores < 1:
            raise self.error(f"max_cores must be an integer >= 1, got {max_cores!r}")
        hc = list(horizontal_cores) if isinstance(horizontal_cores, Sequence) else None
        if not hc or any(not isinstance(c, int) or isinstance(c, bool) or not 1 <= c <= max_cores for c in hc):
            raise self.error(f"horizontal_cores must be a list of integers in [1, max_cores], got {horizontal_cores!r}")
        if wait_model not in WAIT_MODELS:
            raise self.error(f"wait_model must be one of {', '.join(WAIT_MODELS)}, got {wait_model!r}")
        if surge_detector not in ("learned", "none"):
            raise self.error(f"surge_detector must be 'learned' or 'none', got {surge_detector!r}")
        for name, value, low in (("k", k, 0.0), ("pad", pad, 0.0), ("surge_rise", surge_rise, 0.0),
                                 ("scale_in_agreement_s", scale_in_agreement_s, 0.0), ("node_idle_s", node_idle_s, 0.0),
                                 ("surge_threshold", surge_threshold, 0.0), ("tick_s", tick_s, 0.01)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
                raise self.error(f"{name} must be a number >= {low:g}, got {value!r}")
        for name, ivalue in (("lambda_window_s", lambda_window_s), ("surge_horizon_s", surge_horizon_s)):
            if not isinstance(ivalue, int) or isinstance(ivalue, bool) or ivalue < 1:
                raise self.error(f"{name} must be an integer >= 1, got {ivalue!r}")
        self.variant_names = [variant] if isinstance(variant, str) else [str(v) for v in variant]
        self.max_cores = max_cores
        self.horizontal_cores = tuple(hc)
        self.k = float(k)
        self.pad = float(pad)
        self.wait_model = wait_model
        self.lambda_window_s = lambda_window_s
        self.scale_in_agreement_s = float(scale_in_agreement_s)
        self.surge_rise = float(surge_rise)
        self.surge_threshold = float(surge_threshold)
        self.node_idle_s = float(node_idle_s)
        self.tick_s = float(tick_s)
        self.mode = mode
        # The detector sees the last 60 s: twelve 5 s windows (Themis's LSTM input span).
        self.detector = (
            LearnedForecaster(horizon_s=surge_horizon_s, window_s=5, lags=12, train=train)
            if surge_detector == "learned" and mode == "two_stage"
            else None
        )
        self.app: Application | None = None
        # the CPU profile it plans with: the catalog's per-core profile (set-up binds it)
        self._lat: LatencyFn = amdahl_latency_ms
        self.stages: list[StageState] = []
        self.slo_ms = math.inf
        self.horizontal_since: float | None = None
        # replicas per stage of the horizontal decisions within the scale-in agreement window
        self.recent_plans = ScaleInWindow(scale_in_agreement_s)
        self.empty_since: dict[int, float] = {}
        # Single-branch modes: per stage, the cores (horizontal) or replicas (vertical) fixed
        # at setup, and the vertical plans' cores of the scale-in window.
        self.fixed_cores: list[int] = []
        self.fixed_replicas: list[int] = []
        self.recent_cores = ScaleInWindow(scale_in_agreement_s)
        #: (time, branch, lambda, surge) of every loop, for tests and figures
        self.log: list[tuple[float, str, float, bool]] = []

    @property
    def variant(self) -> Variant | None:
        """The first (for a single model, the only) stage's variant."""
        return self.stages[0].variant if self.stages else None

    # --- setup -------------------------------------------------------------------------
    def setup(self, view: ClusterView, apps: Sequence[Application], hints: Mapping[str, WorkloadHint]) -> list[Action]:
        if len(apps) != 1:
            raise self.error(f"serves exactly one application (a model or a pipeline), got {len(apps)}")
        app = self.app = apps[0]
        if app.slo_ms is None:
            raise self.error(f"application {app.name!r} has no latency SLO")
        self.slo_ms = float(app.slo_ms)
        self._lat = view.catalog.cpu_latency_ms
        reqs = app.stages
        if self.variant_names != ["auto"] and len(self.variant_names) != len(reqs):
            raise self.error(f"variant names {len(self.variant_names)} variant(s) for {len(reqs)} stage(s)")
        mean = hints.get(app.name, WorkloadHint(1.0, 1.0)).mean_qps * app.batch
        chosen, plan = self._choose_variants(view, app, max(mean, 1.0))
        self.stages = [StageState(vi, view.catalog.variants[vi], self._stage(view.catalog.variants[vi]), cfg.batch)
                       for vi, cfg in zip(chosen, plan, strict=True)]  # fmt: skip
        self.fixed_cores = [cfg.cores for cfg in plan]
        self.fixed_replicas = [cfg.replicas for cfg in plan]
        actions: list[Action] = []
        for st, cfg in zip(self.stages, plan, strict=True):
            actions += [Load(st.variant.variant_id, cores=cfg.cores, max_batch=cfg.batch)] * cfg.replicas
        return actions

    def _stage(self, v: Variant) -> Stage:
        return Stage(LatencyModel.profile(v, self.pad, self._lat), v.memory_mb / 1024, v.max_batch)

    def _pool(self, view: ClusterView, app: Application, k: int) -> list[int]:
        """Stage ``k``'s CPU candidates, one catalog row per model (its fastest), or the named one."""
        catalog = view.catalog
        req = app.stages[k]
        cands = catalog.candidates(req, app.batch).indices  # the controller serves only these
        if self.variant_names != ["auto"]:
            vi = catalog.index_of.get(self.variant_names[k], -1)
            if vi < 0 or catalog.variants[vi].hardware is not HardwareKind.CPU or vi not in cands:
                raise self.error(f"variant {self.variant_names[k]!r} is not a CPU variant meeting {req.describe()}")
            return [vi]
        rows: dict[tuple[str, str, str], int] = {}
        for vi in cands:  # fastest first: the first row of a model is its fastest
            v = catalog.variants[vi]
            if v.hardware is HardwareKind.CPU:
                rows.setdefault((v.architecture, v.framework, v.precision), vi)
        return list(rows.values())

    def _choose_variants(self, view: ClusterView, app: Application, lam: float) -> tuple[list[int], list[StageConfig]]:
        catalog = view.catalog
        pools = [self._pool(view, app, k) for k in range(len(app.stages))]
        best: tuple[float, float, tuple[int, ...], list[StageConfig]] | None = None
        for combo in itertools.product(*pools):
            stages = [self._stage(catalog.variants[vi]) for vi in combo]
            plan = horizontal_plan(stages, lam, self.slo_ms, self.horizontal_cores, self.max_cores, self.k,
                                   self.wait_model)  # fmt: skip
            if plan is None:
                continue
            cost = sum(c.replicas * (s.memory_gb + CORE_COST * c.cores) for s, c in zip(stages, plan, strict=True))
            speed = sum(catalog.variants[vi].latency_ms(1) for vi in combo)
            if best is None or (cost, speed, combo) < best[:3]:
                best = (cost, speed, combo, plan)
        if best is None:
            raise self.error(f"no CPU variant(s) meet application {app.name!r} ({app.describe()}) "
                             f"with at most {self.max_cores} cores per replica")  # fmt: skip
        return list(best[2]), best[3]

    # --- per query ---------------------------------------------------------------------
    def route(self, query: Query, candidates: Candidates, view: ClusterView) -> Decision:
        st = self.stages[query.stage] if query.stage < len(self.stages) else None
        if st is None:
            return Reject(f"themis: no stage {query.stage} in its plan")
        now = view.now
        best: InstanceView | None = None
        best_wait = math.inf
        for inst in view.instances_of(st.vi):
            if inst.queued_inputs == 0 and inst.busy_until <= now and inst.state is InstanceState.READY:
                return Serve(inst)
            wait = inst.backlog_s(now)
            if wait < best_wait:
                best, best_wait = inst, wait
        if best is None:
            return Reject(f"themis: no replica of {st.variant.variant_id} is running")
        return Serve(best)

    # --- per loop ----------------------------------------------------------------------
    def is_surge(self, series: Sequence[float], lam: float) -> bool:
        if self.detector is None:
            return False
        p = self.detector.exceed_probability(series, (1.0 + self.surge_rise) * lam)
        return p is not None and p > self.surge_threshold

    def _plan(self, lam: float) -> list[StageConfig] | None:
        return horizontal_plan([st.stage for st in self.stages], lam, self.slo_ms, self.horizontal_cores,
                               self.max_cores, self.k, self.wait_model)  # fmt: skip

    def _fixed_cores_plan(self, lam: float) -> list[StageConfig] | None:
        """The horizontal DP with each stage's cores fixed at its setup cores (``horizontal``)."""
        options = [horizontal_options(st.stage, lam, (c,), self.k, self.wait_model)
                   for st, c in zip(self.stages, self.fixed_cores, strict=True)]  # fmt: skip
        return knapsack(options, math.floor(self.slo_ms + 1e-9))

    def autoscale(self, view: ClusterView) -> list[Action]:
        assert self.app is not None
        now = view.now
        # Only the seconds since the start: the meter pads earlier ones with zeros, which the
        # detector would read as a surge from nothing.
        series = view.app_rate_series(self.app.index, min(60, int(now)))
        lam = max(series[-self.lambda_window_s :]) * self.app.batch if series else 0.0
        insts: list[list[InstanceView]] = []
        for st in self.stages:
            lst = list(view.instances_of(st.vi))
            live = {i.iid for i in lst}
            st.requested = {iid: c for iid, c in st.requested.items() if iid in live}
            for inst in lst:
                if st.requested.get(inst.iid) == inst.cores:
                    del st.requested[inst.iid]
            insts.append(lst)
        # Capacity of the ready replicas (a replica still loading - or on a worker still
        # starting - serves nothing yet, so it cannot keep a surge in the horizontal branch).
        below = all(st.capacity([i for i in lst if i.state is InstanceState.READY]) >= lam - 1e-9
                    for st, lst in zip(self.stages, insts, strict=True))  # fmt: skip
        surge = self.is_surge(series, lam)
        room = Room(view)
        lam = max(lam, 1e-6)
        actions: list[Action] = []
        if self.mode == "horizontal":
            branch = "horizontal"
            fixed = self._fixed_cores_plan(lam)
            # No plan at these cores (a latency model no batch fits): keep what runs.
            actions = self._horizontal(view, room, insts, fixed) if fixed is not None else []
        elif self.mode == "vertical":
            branch = "vertical"
            actions = self._vertical_only(view, room, insts, lam)
        elif not surge and below and (plan := self._plan(lam)) is not None:
            branch = "horizontal"
            actions = self._horizontal(view, room, insts, plan)
        else:
            branch = "vertical"
            self.horizontal_since = None
            actions = self._vertical(room, insts, lam)
        self.log.append((now, branch, lam, surge))
        return release_idle_workers(view, room, self.empty_since, self.node_idle_s) + actions

    def _load(self, room: Room, st: StageState, n: int, cores: int, batch: int) -> list[Action]:
        if n <= 0:
            return []
        room.grow(HardwareKind.CPU)
        return [Load(st.variant.variant_id, cores=cores, max_batch=batch, allow_new_worker=True)] * n

    @staticmethod
    def _set_batch(st: StageState, insts: Sequence[InstanceView], batch: int) -> list[Action]:
        st.batch = batch
        return [SetBatch(i.iid, batch) for i in insts if i.max_batch != batch]

    def _horizontal(self, view: ClusterView, room: Room, insts: list[list[InstanceView]],
                    plan: list[StageConfig]) -> list[Action]:  # fmt: skip
        now = view.now
        if self.horizontal_since is None:
            self.horizontal_since = now
            self.recent_plans.clear()
        # Scale in no further than every horizontal decision of the agreement window allows.
        keeps = self.recent_plans.floor(now, [cfg.replicas for cfg in plan])
        agreed = now - self.horizontal_since >= self.scale_in_agreement_s - 1e-9
        actions: list[Action] = []
        for k, (st, lst, cfg) in enumerate(zip(self.stages, insts, plan, strict=True)):
            keep = keeps[k]
            actions += self._load(room, st, cfg.replicas - len(lst), cfg.cores, cfg.batch)
            settled = all(i.state is InstanceState.READY for i in lst) and len(lst) >= cfg.replicas
            if agreed and settled:
                # Scale in: shrink the replicas a surge grew, then remove the surplus.
                for inst in lst:
                    if st.cores_of(inst) > cfg.cores + 1e-9:
                        actions.append(Resize(inst.iid, float(cfg.cores)))
                        st.requested[inst.iid] = float(cfg.cores)
                if len(lst) > keep:
                    actions += [Unload(i.iid) for i in pick_victims(view, lst, len(lst) - keep)]
            # A larger batch (more throughput) at once; a smaller one only with the scale-in, so
            # that the batcher limit does not follow every wobble of the batch-fill term.
            if (agreed and settled) or cfg.batch > st.batch:
                actions += self._set_batch(st, lst, cfg.batch)
        return actions

    def best_batch(self, st: StageState, cores: float, lam: float, budget_ms: float) -> int:
        """The batch with the most throughput on ``cores`` whose latency + fill wait fits ``budget_ms``."""
        model = st.stage.model
        ok = [b for b in range(1, st.stage.max_batch + 1)
              if model.ms(cores, b) + batch_wait_ms(b, lam, self.wait_model) <= budget_ms]  # fmt: skip
        return max(ok, key=lambda b: (model.throughput(cores, b), -b)) if ok else 1

    def _vertical(self, room: Room, insts: list[list[InstanceView]], lam: float) -> list[Action]:
        ready = [[i for i in lst if i.state is InstanceState.READY] for lst in insts]
        actions: list[Action] = []
        vplan: list[StageConfig] | None = None
        if all(ready):
            # Replicas fixed (the ready ones: a replica still loading cannot absorb a surge).
            mins = [math.ceil(min(st.cores_of(i) for i in r) - 1e-9) for st, r in zip(self.stages, ready, strict=True)]
            vplan, _ = vertical_plan([st.stage for st in self.stages], [len(r) for r in ready], lam, self.slo_ms,
                                     self.max_cores, mins, self.wait_model)  # fmt: skip
        shape = self._plan(lam)  # the horizontal shape, for the replicas a stage lacks
        for k, (st, lst, r) in enumerate(zip(self.stages, insts, ready, strict=True)):
            model = st.stage.model
            if r:
                target = vplan[k].cores if vplan is not None else self.max_cores
                batch = vplan[k].batch if vplan is not None else 1
                short = False
                for inst in r:
                    cur = st.cores_of(inst)
                    want = max(cur, float(target))  # cores never shrink in this branch
                    if want > cur + 1e-9:
                        grow = float(math.floor(min(want - cur, max(0.0, room.free_cores(inst.worker_id))) + 1e-9))
                        short = short or grow < want - cur - 1e-9
                        if grow > 0:
                            actions.append(Resize(inst.iid, cur + grow))
                            room.take_cores(inst.worker_id, grow)
                            st.requested[inst.iid] = cur + grow
                if short or vplan is None:
                    # The worker lacks the cores: the batch must fit the stage's share of the
                    # SLO on its smallest replica.
                    share = self.slo_ms / len(self.stages)
                    batch = self.best_batch(st, min(st.cores_of(i) for i in r), lam, share)
                if batch > st.batch:
                    actions += self._set_batch(st, lst, batch)
            # What the replicas cannot serve goes to extra replicas of the horizontal shape;
            # those still loading count, so that a surge is not answered twice.
            rest = lam + math.sqrt(lam) - st.capacity(lst)
            if rest > 1e-9 and shape is not None:
                e = shape[k]
                n_extra = max(1, math.ceil(rest / model.throughput(e.cores, e.batch) - 1e-9))
                actions += self._load(room, st, n_extra, e.cores, e.batch)
        return actions

    def _vertical_only(self, view: ClusterView, room: Room, insts: list[list[InstanceView]],
                       lam: float) -> list[Action]:  # fmt: skip
        """``vertical``: the vertical DP on the setup's replica count, cores up and down."""
        now = view.now
        stages = [st.stage for st in self.stages]
        n = self.fixed_replicas
        top = [self.max_cores] * len(stages)
        plan, served = vertical_plan(stages, n, lam, self.slo_ms, self.max_cores, None, self.wait_model)
        if plan is None or served < lam + math.sqrt(lam) - 1e-9:
            # Even max cores fall short: stay there, with the batches that serve the most.
            plan, _ = vertical_plan(stages, n, lam, self.slo_ms, self.max_cores, top, self.wait_model)
        cores = [cfg.cores for cfg in plan] if plan is not None else top
        # Shrink no further than every plan of the agreement window allows.
        floor = self.recent_cores.floor(now, cores)
        if floor != cores:  # the batches that go with the held cores
            plan, _ = vertical_plan(stages, n, lam, self.slo_ms, self.max_cores, floor, self.wait_model)
        actions: list[Action] = []
        for k, (st, lst) in enumerate(zip(self.stages, insts, strict=True)):
            target = float(floor[k])
            short = False
            for inst in (i for i in lst if i.state is InstanceState.READY):
                cur = st.cores_of(inst)
                step = target - cur
                if step > 1e-9:  # grow as far as the worker's free cores allow
                    step = float(math.floor(min(step, max(0.0, room.free_cores(inst.worker_id))) + 1e-9))
                    short = short or cur + step < target - 1e-9
                if abs(step) > 1e-9:
                    actions.append(Resize(inst.iid, cur + step))
                    room.take_cores(inst.worker_id, step)
                    st.requested[inst.iid] = cur + step
            ready = [i for i in lst if i.state is InstanceState.READY]
            if plan is None or short:
                # The worker lacks the cores (or no batch fits): the batch must fit the stage's
                # share of the SLO on its smallest replica.
                if ready:
                    cmin = min(st.cores_of(i) for i in ready)
                    actions += self._set_batch(st, lst, self.best_batch(st, cmin, lam, self.slo_ms / len(stages)))
            else:
                actions += self._set_batch(st, lst, plan[k].batch)
            # A replica lost (a crash) is replaced: the count stays the setup's.
            actions += self._load(room, st, n[k] - len(lst), int(floor[k]), st.batch)
        return actions
