"""Fit the Twitter-like generator's shape parameters to the real per-second Twitter trace.

Run from the repository root::

    .venv/bin/python -m traces.fit_twitter [PATH]

(PATH defaults to ``../shared/traces/twitter_per_second.txt.bz2``, see
:func:`traces.paper_slices.real_trace_path`). It prints the fitted parameters as Python
constants (pasted into ``traces/twitter.py``) and a table of the real trace's statistics next to
the generator's, at full time resolution and compressed.

The model (real time ``τ`` in seconds, ``see traces/twitter.py``)::

    rate(τ) ∝ (D(τ) + Σ_i A_i p(τ - τ_i; L_i)) · exp(X(τ) - Var X / 2)

and the steps of the fit:

1. **gaps**: zero seconds (capture gaps: at 50+ tweets/s a real zero never happens) and 60 s
   around them are masked out of every fit;
2. **bursts**: 10 s means above twice a running median (±30 min) of 10 s means, merged across
   gaps under 60 s and at least 60 s long; at 1 s resolution each burst's half-height crossings
   give its onset and end; the median profile around the onsets gives the rise time ``R`` and
   around the ends the decay time ``D`` (10 %→90 % over 0.8, linear ramps); the plateau length
   ``L = (end - onset) - R/2 - D/2`` and the amplitude ``A = (level - baseline) / mean
   baseline`` are fitted as log-normal (median, and sigma from the interquartile range); the
   gaps between onsets give the renewal process's mean and coefficient of variation (gamma);
3. **diurnal** ``D``: a Fourier series (4 harmonics of one day) fitted to the log of per-minute
   means outside bursts and gaps, normalised to mean 1 over a day;
4. **noise** ``X``: a sum of three Ornstein-Uhlenbeck (continuous AR(1)) processes whose
   autocovariance ``Σ v_j exp(-k / T_j)`` is fitted by least squares at lag 0 and 60
   log-spaced lags from 1 to 3600 s (every triple from a grid of time constants, non-negative
   least squares for the variances) to the log-normal covariance ``log(1 + Cov(y_τ, y_τ+k))`` of ``y = count /
   D`` outside bursts and gaps, with the Poisson part ``E[count] / D²`` removed at lag 0.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from scipy.ndimage import median_filter
from scipy.optimize import nnls

from traces.stats import STAT_NAMES, rate_stats

FloatArray = npt.NDArray[np.float64]

DAY_S = 86400.0
HARMONICS = 4
BIN_S = 10  # burst detection resolution
BASELINE_WINDOW_S = 3600  # running-median window for the burst baseline
BURST_FACTOR = 2.0
MIN_BURST_S = 60
MERGE_S = 60


@dataclass(frozen=True)
class TwitterFit:
    diurnal: tuple[float, ...]  # log D(phase) = c0 + Σ_k a_k cos(2πk·phase) + b_k sin(2πk·phase)
    baseline_mean: float  # mean tweets/s outside bursts and gaps
    noise: tuple[tuple[float, float], ...]  # (std of the log-rate component, time constant in s)
    burst_gap_mean_s: float
    burst_gap_cv: float
    burst_amp_median: float  # amplitude relative to the baseline mean
    burst_amp_sigma: float  # log-normal sigma
    burst_len_median_s: float  # plateau length
    burst_len_sigma: float
    burst_rise_s: float
    burst_decay_s: float
    n_bursts: int
    zero_fraction: float


def fourier_design(phase: FloatArray, harmonics: int = HARMONICS) -> FloatArray:
    cols = [np.ones_like(phase)]
    for k in range(1, harmonics + 1):
        cols += [np.cos(2 * np.pi * k * phase), np.sin(2 * np.pi * k * phase)]
    return np.stack(cols, axis=1)


def detect_bursts(x: FloatArray) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], FloatArray]:
    """Burst segments ``[start, end)`` in seconds (10 s resolution) and the running baseline (per
    10 s bin) they were detected against."""
    nb = len(x) // BIN_S
    m = x[: nb * BIN_S].reshape(nb, BIN_S).mean(axis=1)
    base = median_filter(m, size=BASELINE_WINDOW_S // BIN_S + 1, mode="nearest")
    hi = (m > BURST_FACTOR * base) & (base > 5)
    d = np.diff(np.concatenate([[0], hi.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    merged: list[list[int]] = []
    for s, e in zip(starts, ends, strict=True):
        if merged and (s - merged[-1][1]) * BIN_S < MERGE_S:
            merged[-1][1] = int(e)
        else:
            merged.append([int(s), int(e)])
    seg = np.array([p for p in merged if (p[1] - p[0]) * BIN_S >= MIN_BURST_S], dtype=np.int64).reshape(-1, 2)
    return seg[:, 0] * BIN_S, seg[:, 1] * BIN_S, base


def _near_zero(x: FloatArray, margin: int) -> npt.NDArray[np.bool_]:
    """Seconds within ``margin`` s of a zero second (a capture gap)."""
    zero = np.concatenate([[0], np.cumsum(x == 0)])
    idx = np.arange(len(x))
    lo, hi = np.maximum(idx - margin, 0), np.minimum(idx + margin + 1, len(x))
    return (zero[hi] - zero[lo]) > 0


def _ramp_time(profile: FloatArray, rising: bool) -> float:
    """Seconds from 10 % to 90 % (rising) or 90 % to 10 % (falling) of a profile, over 0.8."""
    if rising:
        t10 = int(np.argmax(profile >= 0.1))
        t90 = int(np.argmax(profile >= 0.9))
        return max(t90 - t10, 1) / 0.8
    t90 = len(profile) - 1 - int(np.argmax(profile[::-1] >= 0.9))
    t10 = len(profile) - 1 - int(np.argmax(profile[::-1] >= 0.1))
    return max(t10 - t90, 1) / 0.8


def _lognormal(values: FloatArray) -> tuple[float, float]:
    """Log-normal median and sigma, robustly: the sigma from the interquartile range of the logs
    (a few short spikes among the bursts would otherwise inflate it)."""
    q25, q50, q75 = np.percentile(np.log(values), [25, 50, 75])
    return float(np.exp(q50)), float((q75 - q25) / 1.349)


def fit_ou_components(lags: npt.NDArray[np.int64], target: FloatArray, n: int = 3) -> tuple[tuple[float, float], ...]:
    """``n`` OU components ``(std, T)`` whose covariance ``Σ std² exp(-lag / T)`` best fits
    ``target`` (least squares): every choice of ``n`` time constants from a log grid, with
    non-negative least squares for the variances (deterministic, no local minima)."""
    grid = np.logspace(-1, 4.5, 34)
    basis = np.exp(-lags[:, None] / grid[None, :])
    best: tuple[float, tuple[int, ...], FloatArray] = (math.inf, (), np.zeros(0))
    for combo in itertools.combinations(range(len(grid)), n):
        v, residual = nnls(basis[:, combo], target)
        if residual < best[0]:
            best = (float(residual), combo, v)
    _, combo, v = best
    return tuple(
        (round(math.sqrt(float(vi)), 4), round(float(grid[i]), 2)) for i, vi in zip(combo, v, strict=True) if vi > 0
    )


def fit(x_counts: npt.ArrayLike) -> TwitterFit:
    x = np.asarray(x_counts, dtype=np.float64)
    n = len(x)
    gap = _near_zero(x, 60)

    # 2. bursts
    b_start, b_end, base10 = detect_bursts(x)
    keep = (b_start >= 600) & (b_end + 900 <= n)
    b_start, b_end = b_start[keep], b_end[keep]
    burst_mask = np.zeros(n, dtype=bool)
    for s, e in zip(b_start, b_end, strict=True):
        burst_mask[max(0, s - 120) : e + 600] = True
    quiet = ~gap & ~burst_mask
    baseline_mean = float(x[quiet].mean())

    kernel = np.ones(15) / 15
    onsets, ends, levels, bases = [], [], [], []
    rise_rows, decay_rows = [], []
    for s, e in zip(b_start, b_end, strict=True):
        base = float(base10[s // BIN_S])
        level = float(np.median(x[s:e]))
        lo, hi = s - 300, e + 600
        ma = np.convolve(x[lo:hi], kernel, mode="same")
        above = np.flatnonzero(ma >= base + 0.5 * (level - base))
        if above.size == 0 or level <= base:
            continue
        on, off = lo + int(above[0]), lo + int(above[-1])
        if on - 120 < 0 or off + 300 > n:
            continue
        onsets.append(on)
        ends.append(off)
        levels.append(level)
        bases.append(base)
        rise_rows.append((x[on - 120 : on + 120] - base) / (level - base))
        decay_rows.append((x[off - 300 : off + 300] - base) / (level - base))
    onsets_a, ends_a = np.array(onsets), np.array(ends)
    rise = _ramp_time(np.median(np.array(rise_rows), axis=0), rising=True)
    decay = _ramp_time(np.median(np.array(decay_rows), axis=0), rising=False)
    plateau = np.maximum(ends_a - onsets_a - rise / 2 - decay / 2, 10.0)
    amps = (np.array(levels) - np.array(bases)) / baseline_mean
    amp_med, amp_sigma = _lognormal(amps)
    len_med, len_sigma = _lognormal(plateau)
    gaps_s = np.diff(onsets_a).astype(np.float64)
    gaps_s = gaps_s[~np.array([gap[a:b].any() for a, b in itertools.pairwise(onsets_a)])]

    # 3. diurnal
    m = n // 60
    minute = x[: m * 60].reshape(m, 60).mean(axis=1)
    ok = quiet[: m * 60].reshape(m, 60).all(axis=1) & (minute > 0)
    phase = (np.arange(m, dtype=np.float64) * 60.0 % DAY_S) / DAY_S
    coef, *_ = np.linalg.lstsq(fourier_design(phase[ok]), np.log(minute[ok]), rcond=None)
    day_phase = np.arange(0, DAY_S, 10.0) / DAY_S
    coef[0] -= math.log(float(np.exp(fourier_design(day_phase) @ coef).mean()))

    # 4. noise
    d_all = np.exp(fourier_design((np.arange(n, dtype=np.float64) % DAY_S) / DAY_S) @ coef) * baseline_mean
    y = x / d_all
    y_mean = float(y[quiet].mean())
    y = y / y_mean
    w = quiet.astype(np.float64)
    yc = np.where(quiet, y - 1.0, 0.0)
    max_lag = 3600
    size = 1 << math.ceil(math.log2(2 * n))
    fy, fw = np.fft.rfft(yc, size), np.fft.rfft(w, size)
    num = np.fft.irfft(fy * np.conj(fy), size)[: max_lag + 1]
    den = np.fft.irfft(fw * np.conj(fw), size)[: max_lag + 1]
    cov = num / np.maximum(den, 1.0)
    poisson = float((x / (d_all * y_mean) ** 2)[quiet].mean())
    cov[0] -= poisson
    cx = np.log1p(cov)
    lags = np.unique(np.round(np.logspace(0, math.log10(max_lag), 60)).astype(int))
    lags = np.concatenate([[0], lags])

    noise = fit_ou_components(lags, cx[lags])

    return TwitterFit(
        diurnal=tuple(round(float(c), 4) for c in coef),
        baseline_mean=round(baseline_mean, 2),
        noise=noise,
        burst_gap_mean_s=round(float(gaps_s.mean()), 1),
        burst_gap_cv=round(float(gaps_s.std() / gaps_s.mean()), 3),
        burst_amp_median=round(amp_med, 3),
        burst_amp_sigma=round(amp_sigma, 3),
        burst_len_median_s=round(len_med, 1),
        burst_len_sigma=round(len_sigma, 3),
        burst_rise_s=round(rise, 1),
        burst_decay_s=round(decay, 1),
        n_bursts=len(onsets),
        zero_fraction=round(float((x == 0).mean()), 4),
    )


def compare(
    x: FloatArray, time_scales: tuple[float, ...] = (1.0, 3.0), seed: int = 0
) -> list[tuple[str, dict[str, float]]]:
    """Statistics of the real trace and of the generator (fitted defaults, scaled to the real
    mean, Poisson counts per second) over the same stretch of real time: with ``time_scale = c``
    the generator's per-second series is compared with the real trace sampled every ``c`` s."""
    from traces.twitter import TwitterTrace

    rows = []
    for c in time_scales:
        step = int(c)
        real = x[::step]
        trace = TwitterTrace(mean_qps=float(x.mean()), time_scale=c)
        rng = np.random.default_rng(seed)
        gen = rng.poisson(trace.rate(len(real), rng)).astype(np.float64)
        rows.append((f"real, every {step} s", rate_stats(real)))
        rows.append((f"generated, time_scale={c:g}", rate_stats(gen)))
    return rows


def main(argv: list[str] | None = None) -> int:
    from traces.paper_slices import real_trace_path
    from traces.replay import read_trace_file

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", nargs="?", help="per-second counts file (default: the shared real trace)")
    parser.add_argument("--no-compare", action="store_true", help="skip the real-vs-generated table")
    args = parser.parse_args(argv)
    path = args.path or real_trace_path()
    if path is None:
        print("error: real trace not found (give a path or set INFAAS_TRACE_DIR)", file=sys.stderr)
        return 2
    x = read_trace_file(path, "counts").values.astype(np.float64)
    result = fit(x)
    print(f"# fitted on {path}: {len(x)} s, {result.n_bursts} bursts, {result.zero_fraction:.2%} zero seconds")
    for key, value in asdict(result).items():
        print(f"FIT_{key.upper()} = {value!r}")
    if not args.no_compare:
        print()
        print(f"{'series':32s}" + "".join(f"{name:>14s}" for name in STAT_NAMES))
        for label, stats in compare(x):
            print(f"{label:32s}" + "".join(f"{stats[name]:14.3f}" for name in STAT_NAMES))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
