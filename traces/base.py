"""The arrival-stream interface and the helpers every trace shares.

A :class:`Trace` is a frozen dataclass holding its parameters (validated in ``__post_init__``,
raising :class:`~infaas_sim.errors.ConfigError` with a one-line message naming the parameter).
``arrivals(duration_s, rng)`` returns sorted float64 arrival times in ``[0, duration_s)``;
``rate(duration_s, rng)`` returns, for each second ``[k, k + 1)`` of the run (the last one cut
at ``duration_s``), the expected number of arrivals where the trace knows it, else the actual
count. For a random-rate trace (``twitter``) ``rate`` and ``arrivals`` called with generators in
the same state see the same rate curve. The same generator state gives identical arrays.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from infaas_sim.errors import ConfigError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class Trace(ABC):
    """An arrival stream. Subclasses are frozen dataclasses registered with ``@register_trace``."""

    name: ClassVar[str] = ""

    @abstractmethod
    def arrivals(self, duration_s: float, rng: np.random.Generator) -> FloatArray:
        """Sorted arrival times (seconds, float64) in ``[0, duration_s)``."""

    def expected_rate(self, duration_s: float) -> tuple[float, float] | None:
        """(mean, peak) arrivals per second that an operator would declare for a run of
        ``duration_s`` before it starts: from the trace's parameters or its history, never
        from the arrivals it will draw. None: the trace cannot say (declare
        ``expected_qps`` per application in the workload)."""
        return None

    def rate(self, duration_s: float, rng: np.random.Generator) -> FloatArray:
        """Arrivals in each second of the run; this default counts :meth:`arrivals`."""
        duration = check_duration(duration_s)
        times = self.arrivals(duration, rng)
        n = math.ceil(duration)
        if n == 0:
            return np.zeros(0)
        counts = np.bincount(np.minimum(times.astype(np.int64), n - 1), minlength=n)
        return counts.astype(np.float64)

    def _fail(self, param: str, message: str) -> ConfigError:
        return ConfigError(f"trace {self.name or type(self).__name__}: {param} {message}")


# ---------------------------------------------------------------------------------------------
# Parameter validation (each returns the normalised value or raises ConfigError)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def number(trace: Trace, param: str, value: Any, *, low: float | None = None, low_open: bool = False,
           high: float | None = None) -> float:  # fmt: skip
    """A finite float, optionally bounded below (``low``, exclusive if ``low_open``) and above."""
    if not _is_number(value) or not math.isfinite(float(value)):
        raise trace._fail(param, f"must be a finite number, got {value!r}")
    out = float(value)
    if low is not None and (out < low or (low_open and out == low)):
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        raise trace._fail(param, f"must be {bound}, got {value!r}")
    if high is not None and out > high:
        raise trace._fail(param, f"must be <= {high:g}, got {value!r}")
    return out


def integer(trace: Trace, param: str, value: Any, *, low: int | None = None) -> int:
    """An integer (a float with an integral value is accepted), optionally bounded below."""
    if not _is_number(value) or not math.isfinite(float(value)) or float(value) != int(value):
        raise trace._fail(param, f"must be an integer, got {value!r}")
    out = int(value)
    if low is not None and out < low:
        raise trace._fail(param, f"must be >= {low}, got {value!r}")
    return out


def numbers(trace: Trace, param: str, value: Any, *, low: float | None = None) -> tuple[float, ...]:
    """A non-empty sequence of finite floats (a single number is a sequence of one)."""
    if _is_number(value):
        value = [value]
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise trace._fail(param, f"must be a list of numbers, got {value!r}")
    items = list(value)
    if not items:
        raise trace._fail(param, "must list at least one number")
    return tuple(number(trace, f"{param}[{i}]", v, low=low) for i, v in enumerate(items))


def choice(trace: Trace, param: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise trace._fail(param, f"must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def check_duration(duration_s: Any) -> float:
    if not _is_number(duration_s) or not math.isfinite(float(duration_s)) or float(duration_s) < 0:
        raise ConfigError(f"trace: duration_s must be a finite number >= 0, got {duration_s!r}")
    return float(duration_s)


# ---------------------------------------------------------------------------------------------
# Piecewise-constant rates


def expected_per_second(edges: FloatArray, rates: FloatArray, duration_s: float) -> FloatArray:
    """Expected arrivals in each second ``[k, k + 1) ∩ [0, duration_s)`` of a rate that is
    ``rates[i]`` per second on ``[edges[i], edges[i + 1])`` (zero outside ``edges``)."""
    edges = np.asarray(edges, dtype=np.float64)
    rates = np.asarray(rates, dtype=np.float64)
    n = math.ceil(duration_s)
    if n == 0:
        return np.zeros(0)
    cum = np.concatenate([[0.0], np.cumsum(rates * np.diff(edges))])
    grid = np.minimum(np.arange(n + 1, dtype=np.float64), duration_s)
    return np.diff(np.interp(grid, edges, cum))


def poisson_piecewise(edges: FloatArray, rates: FloatArray, duration_s: float, rng: np.random.Generator) -> FloatArray:
    """Sorted arrivals of a Poisson process whose rate is ``rates[i]`` on ``[edges[i], edges[i + 1])``,
    cut to ``[0, duration_s)``: a Poisson count per piece, placed uniformly within it."""
    edges = np.asarray(edges, dtype=np.float64)
    rates = np.asarray(rates, dtype=np.float64)
    lo = np.clip(edges[:-1], 0.0, duration_s)
    hi = np.clip(edges[1:], 0.0, duration_s)
    width = hi - lo
    counts = rng.poisson(rates * width)
    return place_uniformly(lo, width, counts, duration_s, rng)


def place_uniformly(lo: FloatArray, width: FloatArray, counts: IntArray, duration_s: float,
                    rng: np.random.Generator) -> FloatArray:  # fmt: skip
    """``counts[i]`` arrivals uniformly at random in ``[lo[i], lo[i] + width[i])``, sorted, cut to
    ``[0, duration_s)``."""
    counts = np.asarray(counts, dtype=np.int64)
    idx = np.repeat(np.arange(len(counts)), counts)
    times = lo[idx] + rng.random(len(idx)) * width[idx]
    times.sort()
    return times[(times >= 0.0) & (times < duration_s)]
