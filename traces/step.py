"""``step``: Poisson arrivals at piecewise-constant levels: ``qps[i]`` from ``at[i]`` seconds
until ``at[i + 1]`` (the last level lasts to the end of the run). ``at[0]`` must be 0 and ``at``
strictly increasing; e.g. ``qps=[100, 400, 100], at=[0, 200, 400]``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from traces.base import FloatArray, Trace, check_duration, expected_per_second, numbers, poisson_piecewise
from traces.registry import register_trace


@register_trace("step")
@dataclass(frozen=True)
class StepTrace(Trace):
    qps: Sequence[float] = (100.0,)
    at: Sequence[float] = (0.0,)

    def __post_init__(self) -> None:
        qps = numbers(self, "qps", self.qps, low=0.0)
        at = numbers(self, "at", self.at, low=0.0)
        if len(at) != len(qps):
            raise self._fail("at", f"must have one change time per qps level ({len(qps)}), got {len(at)}")
        if at[0] != 0.0:
            raise self._fail("at", f"must start at 0 (the first level's start), got {at[0]:g}")
        bad = [i for i in range(1, len(at)) if at[i] <= at[i - 1]]
        if bad:
            raise self._fail(
                "at", f"must be strictly increasing, but at[{bad[0]}] = {at[bad[0]]:g} <= {at[bad[0] - 1]:g}"
            )
        object.__setattr__(self, "qps", qps)
        object.__setattr__(self, "at", at)

    def _pieces(self, duration: float) -> tuple[FloatArray, FloatArray]:
        edges = np.array([*self.at, max(duration, self.at[-1])], dtype=np.float64)
        return edges, np.array(self.qps, dtype=np.float64)

    def arrivals(self, duration_s: float, rng: np.random.Generator) -> FloatArray:
        duration = check_duration(duration_s)
        return poisson_piecewise(*self._pieces(duration), duration, rng)

    def expected_rate(self, duration_s: float) -> tuple[float, float]:
        """The schedule is declared: its time-weighted mean over the run, its highest level."""
        duration = check_duration(duration_s)
        per_s = expected_per_second(*self._pieces(duration), duration)
        reached = [q for q, a in zip(self.qps, self.at, strict=True) if a < duration] or [self.qps[0]]
        return (float(per_s.sum() / duration) if duration > 0 else self.qps[0]), max(reached)

    def rate(self, duration_s: float, rng: np.random.Generator) -> FloatArray:
        duration = check_duration(duration_s)
        return expected_per_second(*self._pieces(duration), duration)
