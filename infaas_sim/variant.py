"""A model variant: one architecture, compiled one way, on one kind of hardware.

Latency is INFaaS's model, ``latency(b) = intercept + slope * b`` (fitted on batch 1/4/8 in its
profiler), unless measured points are given, in which case they are interpolated piecewise
linearly and extrapolated with the last segment's slope.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise

from infaas_sim.errors import CatalogError
from infaas_sim.hardware import HardwareKind


@dataclass(frozen=True, slots=True)
class Variant:
    variant_id: str
    architecture: str
    task: str
    dataset: str
    framework: str
    hardware: HardwareKind
    precision: str
    allocation: float  # cores (cpu), NeuronCores (inferentia), device share (gpu)
    max_batch: int
    accuracy: float  # top-1, fraction in [0, 1]
    load_latency_ms: float
    memory_mb: float
    latency_intercept_ms: float
    latency_slope_ms: float
    profile: tuple[tuple[int, float], ...] = ()  # measured (batch, ms) points, sorted
    gflops: float = 0.0
    source: str = ""
    latency_cv: float = 0.0  # measured run-to-run spread (std / mean); 0: none measured
    # latency_by_batch[b] for b in 0..max_batch (index 0 unused): the hot path reads this.
    latency_by_batch: tuple[float, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise CatalogError(f"variant {self.variant_id!r}: max_batch must be >= 1")
        table = [0.0] + [self._model_latency(b) for b in range(1, self.max_batch + 1)]
        if any(t <= 0 for t in table[1:]):
            raise CatalogError(f"variant {self.variant_id!r}: latency model gives a non-positive latency")
        object.__setattr__(self, "latency_by_batch", tuple(table))

    def _model_latency(self, batch: int) -> float:
        pts = self.profile
        if not pts:
            return self.latency_intercept_ms + self.latency_slope_ms * batch
        if len(pts) == 1:
            b0, l0 = pts[0]
            return l0 + self.latency_slope_ms * (batch - b0)
        for (b0, l0), (b1, l1) in pairwise(pts):
            if batch <= b1 or (b1 == pts[-1][0]):
                return l0 + (l1 - l0) * (batch - b0) / (b1 - b0)
        raise AssertionError("unreachable")

    def latency_ms(self, batch: int) -> float:
        """Execution latency of one batch of ``batch`` inputs (must be <= max_batch)."""
        return self.latency_by_batch[batch]

    def throughput_qps(self, batch: int) -> float:
        """Inputs per second of one replica running full batches of ``batch``."""
        return 1000.0 * batch / self.latency_by_batch[batch]

    @property
    def is_accelerated(self) -> bool:
        return self.hardware is not HardwareKind.CPU


# Share of a CPU variant's work that parallelises over cores (Amdahl's law). Deep-learning
# inference kernels parallelise well but not perfectly; 0.9 is our assumption, used for
# resizing an instance away from its profiled allocation.
CPU_PARALLEL_FRACTION = 0.9


def cpu_latency_factor(profiled_cores: float, cores: float, p: float = CPU_PARALLEL_FRACTION) -> float:
    """Latency multiplier of running on ``cores`` what was profiled on ``profiled_cores``."""
    return ((1 - p) + p / cores) / ((1 - p) + p / profiled_cores)


#: A CPU latency profile: ms of ``variant`` on ``cores`` at ``batch``.
LatencyFn = Callable[[Variant, float, int], float]


def amdahl_latency_ms(variant: Variant, cores: float, batch: int) -> float:
    """Latency of ``variant`` on ``cores`` at ``batch`` by the Amdahl model from its own row
    alone (its profiled allocation). A policy planning on a catalog reads the catalog's per-core
    profile instead (:meth:`~infaas_sim.catalog.Catalog.cpu_latency_ms`, what the cluster runs
    resized replicas at); this is for a variant outside any catalog."""
    return variant.latency_ms(batch) * cpu_latency_factor(variant.allocation, cores)


@dataclass(frozen=True, slots=True)
class CoreProfile:
    """Latency of one CPU model at any core count, from its profiled core counts.

    The catalog profiles a CPU model (one architecture, framework and precision) as separate
    variants at several core counts (``...-cpu-2c``, ``-4c``, ``-8c``); those are the points.
    Between two points latency is interpolated linearly in 1/cores, which is exact for an
    Amdahl-law model ``latency = serial + parallel / cores`` (the default catalog's CPU rows
    follow one). Beyond the profiled range the nearest point is scaled by
    :func:`cpu_latency_factor` (the Amdahl assumption above). One point: that factor alone.
    """

    # (cores, latency_by_batch) per profiled core count, sorted by cores
    points: tuple[tuple[float, tuple[float, ...]], ...]

    def __post_init__(self) -> None:
        if not self.points:
            raise CatalogError("a core profile needs at least one profiled core count")
        cores = [c for c, _ in self.points]
        if cores != sorted(set(cores)) or cores[0] <= 0:
            raise CatalogError(f"a core profile needs distinct positive core counts, sorted: got {cores}")

    @property
    def cores(self) -> tuple[float, ...]:
        return tuple(c for c, _ in self.points)

    def max_batch(self) -> int:
        """The largest batch every profiled point covers."""
        return min(len(t) for _, t in self.points) - 1

    def latency_ms(self, cores: float, batch: int) -> float:
        """Latency of a batch of ``batch`` inputs on ``cores`` cores."""
        if not cores > 0:
            raise ValueError(f"cores must be > 0, got {cores}")
        pts = [(c, t[batch]) for c, t in self.points if batch < len(t)]
        if batch < 1 or not pts:
            raise ValueError(f"no profiled core count takes a batch of {batch}")
        c_lo, l_lo = pts[0]
        c_hi, l_hi = pts[-1]
        if cores <= c_lo:
            return l_lo * cpu_latency_factor(c_lo, cores)
        if cores >= c_hi:
            return l_hi * cpu_latency_factor(c_hi, cores)
        for (c0, l0), (c1, l1) in pairwise(pts):
            if c0 <= cores <= c1:
                x, x0, x1 = 1.0 / cores, 1.0 / c0, 1.0 / c1
                return l0 + (l1 - l0) * (x - x0) / (x1 - x0)
        raise AssertionError("unreachable")

    def table(self, cores: float, max_batch: int) -> tuple[float, ...]:
        """``latency_by_batch`` at ``cores`` for batches 0..max_batch (index 0 unused)."""
        return (0.0, *(self.latency_ms(cores, b) for b in range(1, max_batch + 1)))
