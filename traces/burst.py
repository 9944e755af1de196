"""``burst``: Poisson arrivals at ``base_qps``, rising to ``burst_qps`` for ``length_s`` seconds
from ``start_s``; with ``repeats > 1`` the burst recurs every ``period_s`` seconds (start to
start)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from traces.base import FloatArray, Trace, check_duration, expected_per_second, integer, number, poisson_piecewise
from traces.registry import register_trace


@register_trace("burst")
@dataclass(frozen=True)
class BurstTrace(Trace):
    base_qps: float = 100.0
    burst_qps: float = 500.0
    start_s: float = 60.0
    length_s: float = 60.0
    repeats: int = 1
    period_s: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_qps", number(self, "base_qps", self.base_qps, low=0.0))
        object.__setattr__(self, "burst_qps", number(self, "burst_qps", self.burst_qps, low=0.0))
        object.__setattr__(self, "start_s", number(self, "start_s", self.start_s, low=0.0))
        object.__setattr__(self, "length_s", number(self, "length_s", self.length_s, low=0.0, low_open=True))
        object.__setattr__(self, "repeats", integer(self, "repeats", self.repeats, low=1))
        if self.period_s is None:
            if self.repeats > 1:
                raise self._fail("period_s", f"is required when repeats > 1 (repeats = {self.repeats})")
        else:
            period = number(self, "period_s", self.period_s, low=0.0, low_open=True)
            if period < self.length_s:
                raise self._fail("period_s", f"must be >= length_s ({self.length_s:g}), got {period:g}")
            object.__setattr__(self, "period_s", period)

    def _pieces(self, duration: float) -> tuple[FloatArray, FloatArray]:
        period = self.period_s or 0.0
        starts = self.start_s + period * np.arange(self.repeats)
        ends = starts + self.length_s
        # base before each burst, burst level during it; the last base piece runs to the end
        edges = np.concatenate([[0.0], np.column_stack([starts, ends]).ravel()])
        rates = np.tile([self.base_qps, self.burst_qps], self.repeats)
        edges = np.append(edges, max(duration, float(ends[-1])))
        rates = np.append(rates, self.base_qps)
        return edges, rates

    def arrivals(self, duration_s: float, rng: np.random.Generator) -> FloatArray:
        duration = check_duration(duration_s)
        return poisson_piecewise(*self._pieces(duration), duration, rng)

    def expected_rate(self, duration_s: float) -> tuple[float, float]:
        """The schedule is declared: its mean over the run, the burst level if one starts in it."""
        duration = check_duration(duration_s)
        if duration == 0:
            return self.base_qps, self.base_qps
        per_s = expected_per_second(*self._pieces(duration), duration)
        peak = max(self.base_qps, self.burst_qps) if self.start_s < duration else self.base_qps
        return float(per_s.sum() / duration), peak

    def rate(self, duration_s: float, rng: np.random.Generator) -> FloatArray:
        duration = check_duration(duration_s)
        return expected_per_second(*self._pieces(duration), duration)
