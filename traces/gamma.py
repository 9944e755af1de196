"""``gamma``: a renewal process with gamma inter-arrival times of mean ``1 / qps`` and coefficient
of variation ``cv`` (``cv = 1`` is Poisson; ``cv > 1`` is burstier, ``cv < 1`` more regular).

The process starts at time 0 (the first arrival is one inter-arrival time after 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from traces.base import FloatArray, Trace, check_duration, expected_per_second, number
from traces.registry import register_trace


@register_trace("gamma")
@dataclass(frozen=True)
class GammaTrace(Trace):
    qps: float = 100.0
    cv: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "qps", number(self, "qps", self.qps, low=0.0))
        object.__setattr__(self, "cv", number(self, "cv", self.cv, low=0.0, low_open=True, high=100.0))

    def arrivals(self, duration_s: float, rng: np.random.Generator) -> FloatArray:
        duration = check_duration(duration_s)
        if self.qps == 0.0 or duration == 0.0:
            return np.zeros(0)
        shape = 1.0 / self.cv**2
        scale = 1.0 / (self.qps * shape)
        expected = self.qps * duration
        chunk = int(expected + 6.0 * self.cv * math.sqrt(expected) + 16)
        parts: list[FloatArray] = []
        t = 0.0
        while True:
            times = t + np.cumsum(rng.gamma(shape, scale, size=chunk))
            parts.append(times)
            t = float(times[-1])
            if t >= duration:
                break
            chunk = max(16, int((duration - t) * self.qps * 1.5) + 16)
        out = np.concatenate(parts)
        return out[: int(np.searchsorted(out, duration, side="left"))]

    def expected_rate(self, duration_s: float) -> tuple[float, float]:
        return self.qps, self.qps

    def rate(self, duration_s: float, rng: np.random.Generator) -> FloatArray:
        duration = check_duration(duration_s)
        return expected_per_second(np.array([0.0, duration]), np.array([self.qps]), duration)
