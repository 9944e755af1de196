"""Multi-application mixes: split one arrival stream among applications, or merge per-application
streams into one."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from infaas_sim.errors import ConfigError
from traces.base import FloatArray, IntArray


def assign_apps(n: int, shares: Sequence[float], rng: np.random.Generator) -> IntArray:
    """An application index for each of ``n`` arrivals, drawn independently with probability
    proportional to ``shares`` (non-negative, not all zero)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"assign_apps: n must be an integer >= 0, got {n!r}")
    values = list(shares)
    if not values:
        raise ConfigError("assign_apps: shares must list at least one application")
    for i, share in enumerate(values):
        if isinstance(share, bool) or not isinstance(share, (int, float, np.integer, np.floating)):
            raise ConfigError(f"assign_apps: shares[{i}] must be a number, got {share!r}")
        if not math.isfinite(float(share)) or share < 0:
            raise ConfigError(f"assign_apps: shares[{i}] must be a finite number >= 0, got {share!r}")
    p = np.asarray(values, dtype=np.float64)
    total = float(p.sum())
    if total <= 0:
        raise ConfigError("assign_apps: shares must not all be zero")
    if len(p) == 1:
        return np.zeros(int(n), dtype=np.int64)
    return rng.choice(len(p), size=int(n), p=p / total).astype(np.int64)


def merge(streams: Sequence[npt.ArrayLike]) -> tuple[FloatArray, IntArray]:
    """Merge per-application arrival times into one sorted time array and the matching
    application index array. Stable: equal times keep the order of ``streams``, then their order
    within a stream; the result depends only on the input."""
    arrays = [np.asarray(s, dtype=np.float64).ravel() for s in streams]
    if not arrays:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    times = np.concatenate(arrays)
    apps = np.repeat(np.arange(len(arrays), dtype=np.int64), [len(a) for a in arrays])
    order = np.argsort(times, kind="stable")
    return times[order], apps[order]
