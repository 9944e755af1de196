"""The helpers every trace shares (the interface itself is the core's, :mod:`infaas_sim.trace`).

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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from infaas_sim.errors import ConfigError
from infaas_sim.trace import FloatArray, IntArray, Trace, _is_number, check_duration

__all__ = ["FloatArray", "IntArray", "Trace", "check_duration"]


# ---------------------------------------------------------------------------------------------
# Parameter validation (each returns the normalised value or raises ConfigError)


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
    check_arrivals(float(np.sum(rates * width)), "expected")
    counts = rng.poisson(rates * width)
    return place_uniformly(lo, width, counts, duration_s, rng)


# One run's arrivals are held as float64 times (and a record each): past this many a run
# cannot fit a 24 GB machine, so it is refused up front rather than dying in an allocation.
MAX_ARRIVALS = 200_000_000


def check_arrivals(n: float, what: str = "") -> None:
    if not n <= MAX_ARRIVALS:  # also NaN
        raise ConfigError(
            f"trace: {n:.3g} {what + ' ' if what else ''}arrivals in the run; the limit is {MAX_ARRIVALS:.0e} "
            "(lower the rate or shorten the run)"
        )


def place_uniformly(lo: FloatArray, width: FloatArray, counts: IntArray, duration_s: float,
                    rng: np.random.Generator) -> FloatArray:  # fmt: skip
    """``counts[i]`` arrivals uniformly at random in ``[lo[i], lo[i] + width[i])``, sorted, cut to
    ``[0, duration_s)``."""
    counts = np.asarray(counts, dtype=np.int64)
    if len(counts) and (int(counts.max()) > MAX_ARRIVALS or float(counts.sum(dtype=np.float64)) > MAX_ARRIVALS):
        check_arrivals(float(counts.sum(dtype=np.float64)))
    idx = np.repeat(np.arange(len(counts)), counts)
    times = lo[idx] + rng.random(len(idx)) * width[idx]
    times.sort()
    return times[(times >= 0.0) & (times < duration_s)]
