"""Statistics of a per-second rate series, as used to fit and check the Twitter-like generator."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

STAT_NAMES = ("mean", "peak_to_mean", "cv", "acf1", "acf60")


def acf(x: npt.ArrayLike, lag: int) -> float:
    """Sample autocorrelation at ``lag`` (mean removed, normalised by the variance)."""
    v = np.asarray(x, dtype=np.float64)
    v = v - v.mean()
    var = float(np.dot(v, v))
    if lag <= 0:
        return 1.0
    if var == 0.0 or lag >= len(v):
        return float("nan")
    return float(np.dot(v[:-lag], v[lag:]) / var)


def rate_stats(counts: npt.ArrayLike, lags: Sequence[int] = (1, 60)) -> dict[str, float]:
    """Mean, peak-to-mean ratio, coefficient of variation and autocorrelations (``acf<lag>``) of a
    per-second series."""
    x = np.asarray(counts, dtype=np.float64)
    mean = float(x.mean())
    out = {"mean": mean, "peak_to_mean": float(x.max()) / mean, "cv": float(x.std()) / mean}
    for lag in lags:
        out[f"acf{lag}"] = acf(x, lag)
    return out


def window_stats(counts: npt.ArrayLike, window: int, lags: Sequence[int] = (1, 60)) -> dict[str, float]:
    """Medians over consecutive ``window``-second windows of :func:`rate_stats` (windows whose
    mean is under 1 per second, e.g. capture gaps, are left out)."""
    x = np.asarray(counts, dtype=np.float64)
    n = len(x) // window
    rows = [rate_stats(w, lags) for w in x[: n * window].reshape(n, window) if w.mean() >= 1.0]
    return {key: float(np.median([r[key] for r in rows])) for key in rows[0]} if rows else {}
