"""The Twitter-like generator's contract (no real file needed): exact mean and peak of the rate
over a run, a burst in every run, visible variation in a default 10-minute run, time compression
and determinism."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from infaas_sim.errors import ConfigError
from traces import make_trace
from traces.twitter import FIT_BURST_AMP_MEDIAN, TwitterTrace


def test_rate_mean_and_peak_are_exact_over_the_run() -> None:
    for seed in range(5):
        rate = make_trace("twitter", mean_qps=200, peak_qps=600).rate(600, np.random.default_rng(seed))
        assert rate.mean() == pytest.approx(200, rel=1e-9)
        assert rate.max() == pytest.approx(600, rel=1e-6)
    flat = make_trace("twitter", mean_qps=50, peak_qps=50).rate(100, np.random.default_rng(0))
    assert np.allclose(flat, 50)
    by_ratio = make_trace("twitter", mean_qps=1000, peak_to_mean=2.5).rate(600, np.random.default_rng(0))
    assert by_ratio.mean() == pytest.approx(1000) and by_ratio.max() == pytest.approx(2500)
    with pytest.raises(ConfigError, match="peak_to_mean"):
        make_trace("twitter", peak_qps=600, peak_to_mean=3)


def test_arrivals_follow_the_rate() -> None:
    trace = make_trace("twitter", mean_qps=300)
    rate = trace.rate(600, np.random.default_rng(1))
    times = trace.arrivals(600, np.random.default_rng(1))
    assert len(times) == pytest.approx(300 * 600, rel=0.01)
    counts = np.bincount(times.astype(int), minlength=600)
    # Poisson given the rate: residuals have variance about equal to the rate
    assert np.mean((counts - rate) ** 2 / rate) == pytest.approx(1.0, abs=0.15)


def test_a_default_ten_minute_run_fluctuates_and_bursts() -> None:
    """Every seeded 10-minute run holds a burst: its highest 20 s are well above its lowest 20 s
    (a burst lifts the rate by about 3 baseline means), and outside bursts it still fluctuates."""
    for seed in range(20):
        rate = TwitterTrace(mean_qps=100).rate(600, np.random.default_rng(seed))
        smooth = np.convolve(rate, np.ones(20) / 20, mode="valid")
        assert smooth.max() / smooth.min() > 1 + FIT_BURST_AMP_MEDIAN / 2, seed
        quiet = rate[rate < np.median(rate)]
        assert quiet.std() / quiet.mean() > 0.03, seed
    no_guarantee = [
        TwitterTrace(mean_qps=100, min_bursts=0).rate(600, np.random.default_rng(s)).max() for s in range(10)
    ]
    assert min(no_guarantee) < 200  # without the guarantee some runs are burst-free


def test_time_scale_compresses_the_daily_cycle() -> None:
    """With a day in 864 simulated seconds, two runs' hourly means follow the fitted daily cycle."""
    trace = TwitterTrace(mean_qps=100, time_scale=100, min_bursts=0)
    a = trace.rate(864 * 4, np.random.default_rng(0)).reshape(4, 864)
    profile = a.mean(axis=0).reshape(24, 36).mean(axis=1)
    assert profile.max() / profile.min() > 1.4


def test_same_seed_same_arrays_and_defaults() -> None:
    trace = make_trace("twitter")
    assert trace == TwitterTrace(mean_qps=200.0, peak_qps=None, time_scale=3.0)
    a = trace.arrivals(120, np.random.default_rng(3))
    assert np.array_equal(a, trace.arrivals(120, np.random.default_rng(3)))


def test_impossible_peak_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="peak_qps / mean_qps"):
        make_trace("twitter", mean_qps=1, peak_qps=1e6).rate(10, np.random.default_rng(0))


def test_the_ar1_recursion_is_scipy_lfilters_bit_for_bit() -> None:
    # ou_noise runs its AR(1) filter without scipy.signal (1.4 CPU s of start-up); the
    # recursion must round as lfilter does, so that traces stay the same bit for bit.
    from scipy.signal import lfilter

    from traces.twitter import _ar1

    rng = np.random.default_rng(3)
    for n in (1, 7, 5000):
        for a in (0.5, math.exp(-1 / 37.0), 0.999):
            e = rng.standard_normal(n)
            assert np.array_equal(_ar1(e, a), lfilter([1.0], [1.0, -a], e))


def test_the_peak_to_mean_exponent_is_the_root_brentq_finds_and_its_counts_are_the_same() -> None:
    # _gamma finds its exponent by bisection, without scipy.optimize (0.4 CPU s to import):
    # to the last bit of the bracket, so within brentq's 1e-10 of the same root, and the
    # Poisson counts drawn from the rates are the same as with brentq's exponent.
    from scipy.optimize import brentq

    from traces.twitter import _bisect

    for ratio, seed in ((1.5, 0), (2.0, 1), (3.0, 2), (5.0, 3)):
        trace = TwitterTrace(mean_qps=100.0, peak_to_mean=ratio)
        s = trace.shape(3600, np.random.default_rng(seed))
        log_s = np.log(s)
        log_max = float(log_s.max())

        def excess(g: float, log_s: np.ndarray = log_s, log_max: float = log_max, ratio: float = ratio) -> float:
            return -math.log(float(np.exp(g * (log_s - log_max)).mean())) - math.log(ratio)

        ours, theirs = trace._gamma(s, ratio), brentq(excess, 0.0, 16.0, xtol=1e-10)
        assert ours == _bisect(excess, 0.0, 16.0)
        assert abs(ours - theirs) < 1e-9 and abs(excess(ours)) <= abs(excess(theirs)) + 1e-15
        r_ours, r_theirs = s**ours / (s**ours).mean(), s**theirs / (s**theirs).mean()
        assert (r_ours.max() / r_ours.mean()) == pytest.approx(ratio, rel=1e-12)
        counts = [np.random.default_rng(k).poisson(100.0 * r) for k in range(3) for r in (r_ours, r_theirs)]
        assert all(np.array_equal(counts[i], counts[i + 1]) for i in range(0, len(counts), 2))


def test_a_default_run_imports_no_scipy(tmp_path: Path) -> None:
    # The default experiment (shortened, figures off) from the command line, in a fresh
    # interpreter: the scipy modules loaded by its end are listed at exit.
    code = (
        "import atexit, runpy, sys; "
        "atexit.register(lambda: print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))); "
        f"sys.argv = ['infaas-sim', 'run.duration_s=30', 'outputs.figures=false', 'run.progress=false', "
        f"'hydra.run.dir={tmp_path}']; "
        "runpy.run_module('experiments.run', run_name='__main__')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "queries.parquet").exists()
