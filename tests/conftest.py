"""Shared fixtures: a tiny in-code catalog and helpers that build workloads and runs.

The catalog has one variant of each shape the core has to handle:

- ``cpu-d10``: CPU, 2 cores, max batch 1, a deterministic 10 ms (the M/D/1 server);
- ``cpu-batch``: CPU, 2 cores, max batch 8, ``4 + 2 b`` ms (a batching server);
- ``gpu-a`` / ``gpu-b``: two GPU variants (time-shared on one device when co-located);
- ``inf-a``: an Inferentia variant on one NeuronCore.

All serve task ``cls`` on data set ``ds``; ``gpu-b`` is a different architecture.

For pipelines, ``pipeline_catalog`` adds a detection task (``det`` on ``ds``): ``det-cpu``
(CPU, 2 cores, max batch 4, ``5 + b`` ms, accuracy 0.5) and ``det-gpu`` (GPU, max batch 8,
``3 + 0.5 b`` ms, accuracy 0.6); ``h.pipeline_app`` builds a detect-then-classify application.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infaas_sim.catalog import Candidates, Catalog
from infaas_sim.executor import Executor, make_executor
from infaas_sim.hardware import HardwareKind, InstanceType
from infaas_sim.policy import Action, Decision, Policy, Reject, Serve, WorkloadHint
from infaas_sim.query import Application, Level, Pipeline, Query, Requirement
from infaas_sim.simulation import ClusterSpec, RunResult, RunSpec, Workload, run_simulation
from infaas_sim.variant import Variant
from infaas_sim.view import ClusterView

CPU, GPU, INF = HardwareKind.CPU, HardwareKind.GPU, HardwareKind.INFERENTIA


def _variant(
    vid: str,
    arch: str,
    hw: HardwareKind,
    alloc: float,
    max_batch: int,
    acc: float,
    load_ms: float,
    mem: float,
    icpt: float,
    slope: float,
) -> Variant:
    return Variant(vid, arch, "cls", "ds", "fw", hw, "fp32", alloc, max_batch, acc, load_ms, mem, icpt, slope)


TINY_VARIANTS: tuple[Variant, ...] = (
    _variant("cpu-d10", "m", CPU, 2, 1, 0.70, 100, 100, 10.0, 0.0),
    _variant("cpu-batch", "m", CPU, 2, 8, 0.72, 200, 200, 4.0, 2.0),
    _variant("gpu-a", "r50", GPU, 1, 16, 0.76, 1000, 2000, 2.0, 0.5),
    _variant("gpu-b", "r101", GPU, 1, 16, 0.80, 1500, 3000, 3.0, 1.0),
    _variant("inf-a", "r50", INF, 1, 8, 0.74, 500, 500, 3.0, 0.8),
)

DETECTION_VARIANTS: tuple[Variant, ...] = (
    Variant("det-cpu", "yolo-s", "det", "ds", "fw", CPU, "fp32", 2, 4, 0.50, 100, 300, 5.0, 1.0),
    Variant("det-gpu", "yolo-m", "det", "ds", "fw", GPU, "fp32", 1, 8, 0.60, 1000, 2000, 3.0, 0.5),
)
PIPELINE_VARIANTS = TINY_VARIANTS + DETECTION_VARIANTS


@pytest.fixture(scope="session")
def pipeline_catalog() -> Catalog:
    return Catalog(PIPELINE_VARIANTS, name="tiny+det")


def pipeline_app(
    slo_ms: float,
    stage_slo_ms: Sequence[float] | None = None,
    min_accuracy: Sequence[float] = (0.0, 0.0),
    index: int = 0,
    name: str = "video",
    batch: int = 1,
) -> Application:
    """Detection (``det``/``ds``) then classification (``cls``/``ds``) within ``slo_ms`` end to
    end; each stage bounded by ``stage_slo_ms`` (default: the end-to-end SLO)."""
    bounds = list(stage_slo_ms) if stage_slo_ms is not None else [slo_ms, slo_ms]
    stages = (
        Requirement(Level.TASK, "det", "ds", slo_ms=bounds[0], min_accuracy=min_accuracy[0]),
        Requirement(Level.TASK, "cls", "ds", slo_ms=bounds[1], min_accuracy=min_accuracy[1]),
    )
    return Application.of_pipeline(name, Pipeline(stages, slo_ms), index=index, batch=batch)


# The INFaaS instances at their list prices, with short start-ups to keep runs short.
TEST_TYPES: dict[str, InstanceType] = {
    "cpu": InstanceType("cpu", CPU, 8, 32 * 1024, 0.384, 5.0),
    "gpu": InstanceType("gpu", GPU, 8, 61 * 1024, 3.06, 5.0, 1, 16 * 1024),
    "inf": InstanceType("inf", INF, 8, 16 * 1024, 0.362, 5.0, 4, 8 * 1024),
}
TEST_BY_KIND = {CPU: "cpu", GPU: "gpu", INF: "inf"}


@pytest.fixture
def tiny_variants() -> tuple[Variant, ...]:
    return TINY_VARIANTS


@pytest.fixture(scope="session")
def tiny_catalog() -> Catalog:
    return Catalog(TINY_VARIANTS, name="tiny")


def make_spec(**kw: Any) -> ClusterSpec:
    """A ClusterSpec on the short-start-up test instance types; keyword arguments override."""
    kw.setdefault("instance_types", TEST_TYPES)
    kw.setdefault("type_by_kind", TEST_BY_KIND)
    return ClusterSpec(**kw)


def pinned_app(variant_id: str, index: int = 0, name: str | None = None, batch: int = 1) -> Application:
    return Application(name or f"app-{variant_id}", Requirement(Level.VARIANT, variant_id), index=index, batch=batch)


def task_app(
    slo_ms: float, index: int = 0, name: str | None = None, min_accuracy: float = 0.0, batch: int = 1
) -> Application:
    req = Requirement(Level.TASK, "cls", "ds", slo_ms=slo_ms, min_accuracy=min_accuracy)
    return Application(name or f"task-{index}", req, index=index, batch=batch)


def poisson_times(rate: float, duration_s: float, seed: int, start: float = 0.0) -> np.ndarray:
    """Poisson arrival times at ``rate`` per second in [start, start + duration_s)."""
    rng = np.random.default_rng(seed)
    n = int(rate * duration_s * 1.2 + 10 * np.sqrt(rate * duration_s) + 10)
    t = start + np.cumsum(rng.exponential(1.0 / rate, n))
    assert t[-1] >= start + duration_s  # enough draws
    return t[t < start + duration_s]


def periodic_times(period_s: float, duration_s: float, start: float = 0.0) -> np.ndarray:
    """Deterministic arrivals every ``period_s`` seconds in [start, start + duration_s)."""
    n = int(np.floor(duration_s / period_s - 1e-9)) + 1
    return start + period_s * np.arange(n, dtype=float)


def workload(
    apps: Sequence[Application],
    times: np.ndarray,
    app_index: np.ndarray | None = None,
    batches: np.ndarray | None = None,
) -> Workload:
    """A workload; with one application, every arrival is that application's."""
    times = np.asarray(times, dtype=float)
    if app_index is None:
        app_index = np.zeros(len(times), dtype=np.int64)
    return Workload(list(apps), times, np.asarray(app_index, dtype=np.int64), batches)


def merge(*streams: tuple[np.ndarray, int]) -> tuple[np.ndarray, np.ndarray]:
    """Merge (times, app index) streams into sorted times and their app indices."""
    t = np.concatenate([s for s, _ in streams])
    a = np.concatenate([np.full(len(s), i, dtype=np.int64) for s, i in streams])
    order = np.argsort(t, kind="stable")
    return t[order], a[order]


def jsq(view: ClusterView, vi: int) -> Serve | None:
    """Join-shortest-queue over the routable instances of variant ``vi`` (None if none)."""
    best = None
    for inst in view.instances_of(vi):
        if best is None or inst.queued_inputs + inst.inflight_inputs < best.queued_inputs + best.inflight_inputs:
            best = inst
    return None if best is None else Serve(best)


class ScriptedPolicy(Policy):
    """A test policy: fixed set-up actions, a routing function, and actions at given ticks.

    ``at`` maps a tick time (seconds) to a function of the view returning actions; ``watch``
    is called with the view at every tick and its results are kept in ``log`` as
    (time, value). Without ``route``, a query goes to the least-loaded routable instance of
    its fastest candidate variant that has one, else it is rejected.
    """

    def __init__(
        self,
        setup: Sequence[Action] = (),
        route: Callable[[Query, Candidates, ClusterView], Decision] | None = None,
        at: dict[float, Callable[[ClusterView], list[Action]]] | None = None,
        watch: Callable[[ClusterView], Any] | None = None,
        tick_s: float | None = 1.0,
    ) -> None:
        self._setup = list(setup)
        self._route = route
        self._at = {round(t, 6): f for t, f in (at or {}).items()}
        self._watch = watch
        self.tick_s = tick_s
        self.log: list[tuple[float, Any]] = []

    def setup(self, view: ClusterView, apps: Sequence[Application], hints: Mapping[str, WorkloadHint]) -> list[Action]:
        return list(self._setup)

    def route(self, query: Query, candidates: Candidates, view: ClusterView) -> Decision:
        if self._route is not None:
            return self._route(query, candidates, view)
        for vi in candidates.indices:
            d = jsq(view, vi)
            if d is not None:
                return d
        return Reject("test policy: no instance of any candidate is loaded")

    def autoscale(self, view: ClusterView) -> list[Action]:
        if self._watch is not None:
            self.log.append((view.now, self._watch(view)))
        f = self._at.get(round(view.now, 6))
        return f(view) if f is not None else []


ScriptedPolicy.name = "test-scripted"


def simulate(
    variants: Sequence[Variant] | Catalog,
    wl: Workload,
    policy: Policy,
    duration_s: float,
    spec: ClusterSpec | None = None,
    executor: Executor | None = None,
    seed: int = 0,
    records_to: Path | None = None,
    **run_kw: Any,
) -> RunResult:
    """One run on the test instance types (unless ``spec`` is given) with the sim executor
    (``records_to``: stream the records to this Parquet file)."""
    catalog = variants if isinstance(variants, Catalog) else Catalog(variants, name="tiny")
    return run_simulation(
        catalog,
        wl,
        policy,
        executor if executor is not None else make_executor("sim"),
        spec if spec is not None else make_spec(),
        RunSpec(duration_s=duration_s, seed=seed, **run_kw),
        records_to=records_to,
    )


class Helpers:
    """The helpers above, as a fixture (tests have no package to import them from)."""

    Scripted = ScriptedPolicy
    jsq = staticmethod(jsq)
    spec = staticmethod(make_spec)
    simulate = staticmethod(simulate)

    pinned_app = staticmethod(pinned_app)
    task_app = staticmethod(task_app)
    pipeline_app = staticmethod(pipeline_app)
    poisson_times = staticmethod(poisson_times)
    periodic_times = staticmethod(periodic_times)
    workload = staticmethod(workload)
    merge = staticmethod(merge)
    TYPES = TEST_TYPES
    BY_KIND = TEST_BY_KIND
    VARIANTS = TINY_VARIANTS
    PIPELINE_VARIANTS = PIPELINE_VARIANTS


@pytest.fixture(scope="session")
def h() -> type[Helpers]:
    return Helpers


def assert_conserved(result: Any, n_arrivals: int) -> None:
    """Every arrival has exactly one outcome: served, rejected or failed."""
    q = result.queries
    s = result.summary
    assert len(q) == n_arrivals
    assert sorted(q["qid"].tolist()) == list(range(n_arrivals))
    assert s["served"] + s["rejected"] + s["failed"] == n_arrivals
    counts = q["status"].value_counts()
    assert counts.get("served", 0) == s["served"]
    assert counts.get("rejected", 0) == s["rejected"]
    assert counts.get("failed", 0) == s["failed"]
    assert set(q["status"].astype(str)) <= {"served", "rejected", "failed"}
    # Rejected and failed queries say why; served ones do not.
    not_served = q[q["status"] != "served"]
    assert not_served["reason"].map(lambda r: isinstance(r, str) and len(r) > 0).all()
    assert q.loc[q["status"] == "served", "reason"].isna().all()


@pytest.fixture(scope="session")
def conserved() -> Callable[[Any, int], None]:
    return assert_conserved
