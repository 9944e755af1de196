"""``twitter``: a Twitter-like arrival stream, fitted to the public Twitter stream trace.

The real trace (``../shared/traces``, 22 days of tweets per second, mean 63.6) is a slowly
varying baseline (a daily cycle between about 44 and 77 per second) with log-normal fluctuation
on time scales from seconds to an hour, plus a burst about every two hours: within ~20 s the
rate jumps about 2.9 baseline means above the baseline, holds for a few minutes (median plateau
4.4 min) and decays over ~4 minutes. This generator reproduces that structure. In real time
``τ`` (seconds)::

    s(τ) = (D(τ) + Σ_i A_i p(τ - τ_i; L_i)) · exp(X(τ) - Var X / 2)

- ``D``: the daily cycle, a 4-harmonic Fourier series (mean 1 over a day);
- ``X``: log-normal noise, a sum of three Ornstein-Uhlenbeck (continuous AR(1)) processes with
  the fitted standard deviations and time constants (fitted to the trace's autocovariance from
  1 s to an hour);
- bursts: onsets ``τ_i`` a renewal process with gamma gaps (fitted mean and coefficient of
  variation), amplitude ``A_i`` (in baseline means) and plateau length ``L_i`` log-normal, the
  pulse ``p`` a linear rise over ``R`` s, the plateau, a linear decay over ``D`` s.

Parameters:

- ``mean_qps``: the mean of the per-second rate over the run (exact);
- ``peak_qps``: its maximum over the run (exact), or None for the fitted shape's own peak;
- ``peak_to_mean``: instead of ``peak_qps``, the ratio ``peak_qps / mean_qps`` (keeps the shape
  when sweeping ``mean_qps``);
- ``time_scale``: real seconds one simulated second represents (time compression, default 3);
- ``phase_s``: real time at ``t = 0``, in seconds from the start of the real trace's first day
  (sets where in the daily cycle the run starts);
- ``min_bursts``: bursts guaranteed in every run (default 1; 0 leaves it to chance);
- ``burst_gap_s``: mean real time between burst onsets (default: fitted, about 1.9 h).

Simulated time ``t`` maps to real time ``τ = phase_s + time_scale · t``. The whole process
(daily cycle, noise, bursts) is compressed alike, so a simulated second is a sample of the
real-time process every ``time_scale`` s. The per-second rate is ``s`` at each simulated second,
scaled so that its mean over the run is ``mean_qps``; with ``peak_qps`` it is
``mean_qps · s^γ / mean(s^γ)`` with ``γ`` solved so that its maximum over the run is
``peak_qps`` (``γ = 1``, the fitted shape, when ``peak_qps`` is None; ``γ = 0``, a constant
rate, when ``peak_qps == mean_qps``). Arrivals within each second are Poisson given the rate,
placed uniformly. The guaranteed bursts are placed uniformly in the run when the renewal
process put fewer there (a burst counts as in the run when its plateau's midpoint is). ``rate``
and ``arrivals`` called with generators in the same state see the same rate curve.

Statistics of the real trace it reproduces (``tests/traces/test_twitter_vs_real.py`` checks them,
``python -m traces.fit_twitter`` prints the table): scaled to the real mean, with
``time_scale=1`` over the trace's 22 days, the per-second counts' mean, peak-to-mean ratio
(6.1), coefficient of variation (0.66) and autocorrelation at lags 1 s (0.96) and 60 s (0.88);
with ``time_scale=c`` the same against the real trace sampled every ``c`` s; and over 10-minute
windows the median peak-to-mean ratio and CV. Not reproduced: the capture gaps (2 % zero
seconds), the bursts' tendency to fall on odd clock hours, and the real noise's coming in
spells (within quiet 10-minute windows the real counts are less autocorrelated).

The defaults make a 10-minute run show fluctuation and at least one burst, like the slices the
papers replayed: with ``time_scale=3`` a 10-minute run covers 30 real minutes and its burst rises
in ~7 s and lasts about 3 simulated minutes; over 200 seeded 10-minute runs the natural
(``peak_qps=None``) peak-to-mean ratio has median 2.9, 10-90 % 2.1-3.5 (InfAdapter's 1,260 s
slice: 274 / 97 = 2.8). A ``peak_qps`` well outside that range still holds exactly, at the cost
of the shape: a larger ratio sharpens the bursts and sinks the baseline, a smaller one flattens
everything towards the mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from infaas_sim.errors import ConfigError
from traces.base import FloatArray, Trace, check_duration, integer, number, poisson_piecewise
from traces.registry import register_trace

# Fitted on ../shared/traces/twitter_per_second.txt.bz2 by
#   .venv/bin/python -m traces.fit_twitter
# (see traces/fit_twitter.py for the method). Times are real seconds.
FIT_DIURNAL: tuple[float, ...] = (-0.0162, -0.0815, 0.1861, -0.0718, -0.1196, -0.0016, -0.0164, -0.0279, 0.0118)
FIT_NOISE: tuple[tuple[float, float], ...] = ((0.0538, 2.15), (0.0992, 1467.8), (0.1024, 2154.43))
FIT_BURST_GAP_MEAN_S = 6920.8
FIT_BURST_GAP_CV = 0.423
# Median peak-to-mean ratio of the natural shape over 200 seeded 10-minute runs (module
# docstring): the peak an operator expects when the trace does not fix one.
NATURAL_PEAK_TO_MEAN = 2.9
FIT_BURST_AMP_MEDIAN = 2.881
FIT_BURST_AMP_SIGMA = 0.109
FIT_BURST_LEN_MEDIAN_S = 265.1
FIT_BURST_LEN_SIGMA = 0.757
FIT_BURST_RISE_S = 21.2
FIT_BURST_DECAY_S = 262.5

DAY_S = 86400.0
MAX_BURST_LEN_S = 3600.0  # plateau lengths are clipped here


def diurnal(tau: FloatArray, coef: tuple[float, ...] = FIT_DIURNAL) -> FloatArray:
    """The daily cycle at real times ``tau`` (mean 1 over a day)."""
    phase = 2 * np.pi * (np.asarray(tau, dtype=np.float64) % DAY_S) / DAY_S
    log_d = np.full(phase.shape, coef[0])
    for k in range(1, (len(coef) - 1) // 2 + 1):
        log_d += coef[2 * k - 1] * np.cos(k * phase) + coef[2 * k] * np.sin(k * phase)
    return np.exp(log_d)


def ou_noise(n: int, step_s: float, rng: np.random.Generator,
             components: tuple[tuple[float, float], ...] = FIT_NOISE) -> FloatArray:  # fmt: skip
    """Sum of stationary Ornstein-Uhlenbeck processes (std, time constant in s) sampled every
    ``step_s`` real seconds: AR(1) with coefficient ``exp(-step_s / T)``."""
    out = np.zeros(n)
    for std, tau in components:
        a = math.exp(-step_s / tau)
        e = rng.standard_normal(n) * std * math.sqrt(1.0 - a * a)
        e[0] = rng.standard_normal() * std
        out += _ar1(e, a)
    return out


def _ar1(e: FloatArray, a: float) -> FloatArray:
    """``y[i] = e[i] + a y[i-1]``: the recursion ``scipy.signal.lfilter([1], [1, -a], e)``
    computes, with the same rounding (checked bit for bit in tests/traces), without importing
    scipy.signal (1.4 CPU s of every default run's start-up)."""
    out = np.empty_like(e)
    y = 0.0
    for i, x in enumerate(e.tolist()):
        y = x + a * y
        out[i] = y
    return out


def _bisect(f: Callable[[float], float], lo: float, hi: float) -> float:
    """The root of increasing ``f`` in ``[lo, hi]`` (``f(lo) < 0 <= f(hi)``) to the last bit
    the floats between can tell: about 60 halvings of a mean over the run's seconds, where
    ``scipy.optimize.brentq`` cost 0.4 CPU s of every default run's start-up to import. (The
    rates differ from brentq's at xtol 1e-10 by under 1e-10 relative; the Poisson counts drawn
    from them were identical in 360 of 360 runs tried, 600-7,200 s, peak-to-mean 1.5-5.)"""
    f_lo = f(lo)
    while True:
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            return hi if abs(f(hi)) < abs(f_lo) else lo
        f_mid = f(mid)
        if f_mid == 0.0:
            return mid
        if f_mid < 0.0:
            lo, f_lo = mid, f_mid
        else:
            hi = mid


@register_trace("twitter")
@dataclass(frozen=True)
class TwitterTrace(Trace):
    mean_qps: float = 200.0
    peak_qps: float | None = None
    peak_to_mean: float | None = None
    time_scale: float = 3.0
    phase_s: float = 0.0
    min_bursts: int = 1
    burst_gap_s: float = FIT_BURST_GAP_MEAN_S

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "mean_qps", number(self, "mean_qps", self.mean_qps, low=0.0, low_open=True))
        if self.peak_qps is not None:
            peak = number(self, "peak_qps", self.peak_qps, low=0.0, low_open=True)
            if peak < self.mean_qps:
                raise self._fail("peak_qps", f"must be >= mean_qps ({self.mean_qps:g}), got {peak:g}")
            set_(self, "peak_qps", peak)
        if self.peak_to_mean is not None:
            if self.peak_qps is not None:
                raise self._fail("peak_to_mean", "cannot be given together with peak_qps")
            set_(self, "peak_to_mean", number(self, "peak_to_mean", self.peak_to_mean, low=1.0))
        set_(self, "time_scale", number(self, "time_scale", self.time_scale, low=0.0, low_open=True))
        set_(self, "phase_s", number(self, "phase_s", self.phase_s))
        set_(self, "min_bursts", integer(self, "min_bursts", self.min_bursts, low=0))
        # At least a second of real time between burst onsets: the bursts are drawn one by one,
        # and a gap near zero would draw them without end (the fit's mean is about 1.9 h).
        set_(self, "burst_gap_s", number(self, "burst_gap_s", self.burst_gap_s, low=1.0))

    # -----------------------------------------------------------------------------------------

    def _bursts(self, tau0: float, span: float, rng: np.random.Generator) -> list[tuple[float, float, float]]:
        """(onset, plateau length, amplitude) of every burst that touches ``[tau0, tau0 + span)``."""
        rise, decay = FIT_BURST_RISE_S, FIT_BURST_DECAY_S
        lookback = rise + MAX_BURST_LEN_S + decay
        shape = 1.0 / FIT_BURST_GAP_CV**2
        scale = self.burst_gap_s / shape

        def draw() -> tuple[float, float]:
            length = FIT_BURST_LEN_MEDIAN_S * math.exp(FIT_BURST_LEN_SIGMA * rng.standard_normal())
            length = min(length, MAX_BURST_LEN_S)
            amp = FIT_BURST_AMP_MEDIAN * math.exp(FIT_BURST_AMP_SIGMA * rng.standard_normal())
            return length, amp

        bursts = []
        t = tau0 - lookback - rng.random() * self.burst_gap_s
        end = tau0 + span
        while True:
            t += rng.gamma(shape, scale)
            if t >= end:
                break
            length, amp = draw()
            if t + rise + length + decay > tau0:
                bursts.append((t, length, amp))
        inside = sum(1 for t, length, _ in bursts if tau0 <= t + rise + length / 2 < end)
        for _ in range(self.min_bursts - inside):
            length, amp = draw()
            total = rise + length + decay
            if total <= span:
                onset = tau0 + rng.random() * (span - total)
            else:  # longer than the run: centre its plateau somewhere in the run
                onset = tau0 + rng.random() * span - rise - length / 2
            bursts.append((onset, length, amp))
        return bursts

    def shape(self, n: int, rng: np.random.Generator) -> FloatArray:
        """The unscaled real-time shape ``s`` sampled at ``n`` simulated seconds."""
        step = self.time_scale
        tau = self.phase_s + step * np.arange(n, dtype=np.float64)
        level = diurnal(tau)
        rise, decay = FIT_BURST_RISE_S, FIT_BURST_DECAY_S
        for onset, length, amp in self._bursts(self.phase_s, step * n, rng):
            lo = max(0, math.ceil((onset - self.phase_s) / step))
            hi = min(n, math.ceil((onset + rise + length + decay - self.phase_s) / step))
            if hi <= lo:
                continue
            u = tau[lo:hi] - onset
            pulse = np.minimum(np.minimum(u / rise, 1.0), np.clip((rise + length + decay - u) / decay, 0.0, 1.0))
            level[lo:hi] += amp * np.clip(pulse, 0.0, 1.0)
        var = sum(std * std for std, _ in FIT_NOISE)
        return level * np.exp(ou_noise(n, step, rng) - var / 2)

    def expected_rate(self, duration_s: float) -> tuple[float, float]:
        """What the operator declares: ``mean_qps`` and the peak it asked for (``peak_qps``, or
        ``peak_to_mean`` x the mean; with neither, the natural shape's median ratio over
        10-minute runs, :data:`NATURAL_PEAK_TO_MEAN`), never this run's drawn curve."""
        if self.peak_qps is not None:
            return self.mean_qps, self.peak_qps
        ratio = self.peak_to_mean if self.peak_to_mean is not None else NATURAL_PEAK_TO_MEAN
        return self.mean_qps, self.mean_qps * ratio

    def rate(self, duration_s: float, rng: np.random.Generator) -> FloatArray:
        """The expected arrivals in each second of the run (random, drawn from ``rng``)."""
        duration = check_duration(duration_s)
        n = math.ceil(duration)
        if n == 0:
            return np.zeros(0)
        s = self.shape(n, rng)
        if self.ratio is not None:
            s = s ** self._gamma(s, self.ratio)
        rate = self.mean_qps * s / s.mean()
        rate[-1] *= duration - (n - 1)  # the last second may be cut short
        return rate

    @property
    def ratio(self) -> float | None:
        """The requested peak-to-mean ratio, or None for the fitted shape's own."""
        if self.peak_qps is not None:
            return self.peak_qps / self.mean_qps
        return self.peak_to_mean

    def _gamma(self, s: FloatArray, ratio: float) -> float:
        """The exponent that makes ``max(s^γ) / mean(s^γ)`` equal to ``ratio``."""
        target = math.log(ratio)
        if target == 0.0:
            return 0.0
        log_s = np.log(s)
        log_max = float(log_s.max())

        def excess(g: float) -> float:  # log(max / mean) of s^g, minus the target; increasing in g
            z = g * (log_s - log_max)
            return -math.log(float(np.exp(z).mean())) - target

        hi = 1.0
        while excess(hi) < 0:
            hi *= 2
            if hi > 1e3:
                raise ConfigError(
                    f"trace twitter: peak_qps / mean_qps = {ratio:g} is more than a run of {len(s)} s can reach"
                )
        return _bisect(excess, 0.0, hi)

    def arrivals(self, duration_s: float, rng: np.random.Generator) -> FloatArray:
        duration = check_duration(duration_s)
        rate = self.rate(duration, rng)
        n = len(rate)
        edges = np.arange(n + 1, dtype=np.float64)
        if n:
            rate[-1] /= duration - (n - 1)  # back to a rate over the cut last second
        return poisson_piecewise(edges, rate, duration, rng)
