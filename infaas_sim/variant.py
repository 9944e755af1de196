"""A model variant: one architecture, compiled one way, on one kind of hardware.

Latency is INFaaS's model, ``latency(b) = intercept + slope * b`` (fitted on batch 1/4/8 in its
profiler), unless measured points are given, in which case they are interpolated piecewise
linearly and extrapolated with the last segment's slope.
"""

from __future__ import annotations

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
