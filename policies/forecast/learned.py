"""``learned``: ridge regression on lagged window maxima, trained on the trace's past.

IPA and InfAdapter forecast with a small LSTM over the recent window maxima (InfAdapter: the
maximum of each of the last 10 minutes predicts the next minute's maximum; IPA: the maximum of
each of the last twelve 10 s windows predicts the next 20 s). This forecaster keeps their
inputs and target but replaces the LSTM with a lighter learner, as the issue allows where it
forecasts as well (shown on the held-out days of the real trace: ``tests/policies/forecast``
and ``docs/themis_infadapter.md``):

- inputs, at a time t: the maxima m_1..m_L of the last ``lags`` whole windows of ``window_s``
  seconds, the mean count of the last window, and the maximum and mean of its last sixth;
- nearly scale-free: inputs and target are divided by s = mean(m_i) + 1, so that one fit
  serves a trace at any scale (Themis divides the trace by 1.5, IPA by 8; the + 1 keeps an
  idle history defined, and on the held-out days it forecasts better than max(mean, 1));
- target: the maximum per-second count over the next ``horizon_s`` seconds (divided by s);
- fit: ridge regression (closed form, numpy), then a multiplicative calibration: the
  prediction is multiplied by the ``quantile`` (default 0.6) of the training ratios
  target / fit, so that a chosen under-prediction rate can be asked for (0.6: about 40%
  of next-minute maxima are under-predicted on the held-out days, against 45% for the
  window maximum, at a 7% lower mean absolute error); the sorted
  ratios also give :meth:`LearnedForecaster.exceed_probability`, the probability that the
  next horizon's maximum exceeds a level (Themis's surge test);
- before ``lags * window_s`` seconds of history exist (the start of a run), the forecast is
  an exponentially weighted mean of the whole windows seen, floored by the last window's
  maximum (InfAdapter uses an EWM before its LSTM has enough data).

Training data (``train``): ``"auto"``: the first 14 days of the real Twitter trace (the days
IPA trains on; the rest is held out) when ``../shared/traces`` has it, else 14 days of the
``twitter`` generator (time scale 1, seed 0); ``"real"`` demands the real trace; ``"synthetic"``
the generator. Fits are cached per parameter set.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from infaas_sim.errors import ConfigError
from policies.forecast.base import (
    FloatArray,
    Forecaster,
    check_float,
    check_int,
    register_forecaster,
    window_maxima,
)

TRAIN_SOURCES = ("auto", "real", "synthetic")
#: Days of the trace's past the default fit uses (IPA trains its LSTM on the first 14 days).
TRAIN_DAYS = 14
DAY_S = 86400
#: Smoothing of the warm-up forecast (InfAdapter's EWM before enough data; its span is not
#: stated, so 0.5 weights the last window as much as all the earlier ones).
EWM_ALPHA = 0.5


@dataclass(frozen=True)
class Fit:
    """Ridge coefficients (inputs then intercept) and the sorted training ratios target / fit."""

    coef: FloatArray
    ratios: FloatArray


def features(series: FloatArray, ends: np.ndarray, window_s: int, lags: int) -> tuple[FloatArray, FloatArray]:
    """Scale-free inputs (one row per end index; the history is ``series[:end]``) and scales."""
    idx = ends[:, None] - (np.arange(lags * window_s)[::-1] + 1)[None, :]
    blocks = series[idx].reshape(len(ends), lags, window_s)
    maxima = blocks.max(axis=2)
    scale = maxima.mean(axis=1) + 1.0  # + 1: defined on an idle history
    last_mean = blocks[:, -1, :].mean(axis=1)
    # The most recent sixth of a window says where the load is heading within it (a 10 s tail
    # of a minute window cut the held-out MAE by 6%).
    recent = blocks[:, -1, window_s - max(1, window_s // 6) :]
    x = np.column_stack([maxima / scale[:, None], last_mean / scale, recent.max(axis=1) / scale,
                         recent.mean(axis=1) / scale, np.ones(len(ends))])  # fmt: skip
    return x, scale


def fit_series(series: FloatArray, horizon_s: int, window_s: int, lags: int, ridge: float) -> Fit:
    """Fit on every window boundary of ``series`` whose history and horizon are inside it."""
    first = lags * window_s
    # One sample per horizon (rounded up to whole windows): the targets do not overlap.
    stride = window_s * math.ceil(horizon_s / window_s)
    ends = np.arange(first, len(series) - horizon_s + 1, stride)
    if len(ends) < 10 * (lags + 4):
        raise ConfigError(f"forecaster learned: {len(series)} s of training data is too short "
                          f"for {lags} windows of {window_s} s and a {horizon_s} s horizon")  # fmt: skip
    chunk = max(1, 2_000_000 // (lags * window_s))  # bounds the gather's memory
    parts = [features(series, ends[i : i + chunk], window_s, lags) for i in range(0, len(ends), chunk)]
    x = np.concatenate([p[0] for p in parts])
    scale = np.concatenate([p[1] for p in parts])
    future = sliding_window_view(series, horizon_s)[ends].max(axis=1)
    y = future / scale
    penalty = ridge * np.eye(x.shape[1])
    penalty[-1, -1] = 0.0  # the intercept is not shrunk
    coef = np.linalg.solve(x.T @ x + penalty, x.T @ y)
    fitted = np.maximum(x @ coef, 1e-6)
    return Fit(coef, np.sort(y / fitted))


def training_series(train: str) -> FloatArray:
    """The first :data:`TRAIN_DAYS` days of the real trace, or of the Twitter-like generator."""
    if train not in TRAIN_SOURCES:
        raise ConfigError(f"forecaster learned: train must be one of {', '.join(TRAIN_SOURCES)}, got {train!r}")
    from traces.paper_slices import real_trace_path  # traces depends on the core, not the reverse
    from traces.replay import read_trace_file

    path = real_trace_path() if train != "synthetic" else None
    if path is not None:
        values = read_trace_file(path, "counts").values
        return np.asarray(values[: TRAIN_DAYS * DAY_S], dtype=np.float64)
    if train == "real":
        raise ConfigError("forecaster learned: train='real' but the real Twitter trace is absent")
    from traces.twitter import TwitterTrace

    # The real trace's mean rate (63.6 per second) at real time (no compression).
    trace = TwitterTrace(mean_qps=63.6, time_scale=1.0, min_bursts=0)
    return np.asarray(trace.rate(TRAIN_DAYS * DAY_S, np.random.default_rng(0)), dtype=np.float64)


@functools.lru_cache(maxsize=16)
def _cached_fit(train: str, horizon_s: int, window_s: int, lags: int, ridge: float) -> Fit:
    return fit_series(training_series(train), horizon_s, window_s, lags, ridge)


@register_forecaster("learned")
class LearnedForecaster(Forecaster):
    def __init__(
        self,
        horizon_s: int = 60,
        window_s: int = 60,
        lags: int = 10,
        ridge: float = 1.0,
        quantile: float = 0.6,
        train: str | None = "auto",
    ) -> None:
        check_int(self, "window_s", window_s, 1)
        check_int(self, "lags", lags, 1)
        super().__init__(horizon_s, window_s * lags)
        check_float(self, "ridge", ridge, 0.0)
        check_float(self, "quantile", quantile, 0.0, 1.0)
        self.window_s = window_s
        self.lags = lags
        self.ridge = float(ridge)
        self.quantile = float(quantile)
        self.model: Fit | None = None
        if train is not None:
            self.model = _cached_fit(train, horizon_s, window_s, lags, self.ridge)

    def fit(self, series: Sequence[float] | FloatArray) -> LearnedForecaster:
        self.model = fit_series(np.asarray(series, dtype=np.float64), self.horizon_s, self.window_s,
                                self.lags, self.ridge)  # fmt: skip
        return self

    @property
    def _fit(self) -> Fit:
        if self.model is None:
            raise ConfigError("forecaster learned: not trained (train=None and fit() not called)")
        return self.model

    def _calibration(self) -> float:
        r = self._fit.ratios
        return float(np.quantile(r, self.quantile))

    def point(self, history: Sequence[float] | FloatArray) -> float | None:
        """The regression's uncalibrated forecast, or None while the history is too short."""
        h = np.asarray(history, dtype=np.float64)
        need = self.lags * self.window_s
        if h.size < need:
            return None
        x, scale = features(h, np.array([h.size]), self.window_s, self.lags)
        return float(max(0.0, (x @ self._fit.coef)[0]) * scale[0])

    def predict_from(self, history: Sequence[float] | FloatArray) -> float:
        h = np.asarray(history, dtype=np.float64)
        p = self.point(h)
        if p is not None:
            return p * self._calibration()
        return self.warmup(h)

    def warmup(self, h: FloatArray) -> float:
        """EWM of the whole windows seen so far, at least the last window's maximum."""
        if h.size == 0:
            return 0.0
        last = float(h[-self.window_s :].max())
        n = h.size // self.window_s
        if n == 0:
            return last
        level = 0.0
        for i, m in enumerate(window_maxima(h, self.window_s, n)):
            level = float(m) if i == 0 else EWM_ALPHA * float(m) + (1 - EWM_ALPHA) * level
        return max(level, last)

    def exceed_probability(self, history: Sequence[float] | FloatArray, level: float) -> float | None:
        """P(next horizon's maximum > ``level``) from the training residuals, or None while
        the history is too short."""
        p = self.point(history)
        if p is None:
            return None
        if p <= 0:
            return 0.0 if level >= 0 else 1.0
        r = self._fit.ratios
        k = int(np.searchsorted(r, level / p, side="right"))
        return (len(r) - k) / len(r)


def evaluate(
    forecaster: Forecaster, series: Sequence[float] | FloatArray, stride_s: int | None = None
) -> dict[str, float]:
    """Forecast the next ``horizon_s`` maximum at every ``stride_s`` (default: the horizon)
    over ``series`` and score it: mean absolute error, under-prediction rate (share of
    forecasts below the actual maximum), mean over-provisioning (forecast minus actual where
    above), and the number of points."""
    s = np.asarray(series, dtype=np.float64)
    hz = forecaster.horizon_s
    stride = hz if stride_s is None else stride_s
    start = forecaster.history_s
    ends = np.arange(start, len(s) - hz + 1, stride)
    if len(ends) == 0:
        raise ConfigError(f"evaluate: the series ({len(s)} s) is shorter than history + horizon")
    actual = sliding_window_view(s, hz)[ends].max(axis=1)
    pred = np.array([forecaster.predict_from(s[max(0, e - start) : e]) for e in ends])
    err = pred - actual
    return {
        "mae": float(np.abs(err).mean()),
        "under_rate": float((err < 0).mean()),
        "over_mean": float(np.where(err > 0, err, 0.0).mean()),
        "n": float(len(ends)),
        "mean_actual": float(actual.mean()) if math.isfinite(actual.mean()) else 0.0,
    }
