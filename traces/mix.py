"""Multi-application mixes: split one arrival stream among applications, or merge per-application
streams into one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from infaas_sim.trace import assign_apps
from traces.base import FloatArray, IntArray

__all__ = ["assign_apps", "merge"]


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
