"""``poisson``: a homogeneous Poisson process of ``qps`` arrivals per second."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from traces.base import FloatArray, Trace, check_duration, expected_per_second, number, poisson_piecewise
from traces.registry import register_trace


@register_trace("poisson")
@dataclass(frozen=True)
class PoissonTrace(Trace):
    qps: float = 100.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "qps", number(self, "qps", self.qps, low=0.0))

    def arrivals(self, duration_s: float, rng: np.random.Generator) -> FloatArray:
        duration = check_duration(duration_s)
        return poisson_piecewise(np.array([0.0, duration]), np.array([self.qps]), duration, rng)

    def expected_rate(self, duration_s: float) -> tuple[float, float]:
        return self.qps, self.qps

    def rate(self, duration_s: float, rng: np.random.Generator) -> FloatArray:
        duration = check_duration(duration_s)
        return expected_per_second(np.array([0.0, duration]), np.array([self.qps]), duration)
