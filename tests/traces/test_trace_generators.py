"""Synthetic generators (poisson, gamma, step, burst) and the registry: each trace's mean rate
matches its parameters, rates change where they should, the same seed gives the same arrays,
and bad parameters or names are one-line ConfigErrors."""

from __future__ import annotations

import numpy as np
import pytest

from infaas_sim.errors import ConfigError
from traces import TRACES, Trace, make_trace
from traces.base import expected_per_second
from traces.registry import register_trace


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def check_arrivals(times: np.ndarray, duration: float) -> None:
    assert times.dtype == np.float64
    assert times.ndim == 1
    assert np.all(np.diff(times) >= 0), "arrivals must be sorted"
    if len(times):
        assert times[0] >= 0 and times[-1] < duration


def test_every_trace_registers() -> None:
    assert {"poisson", "gamma", "step", "burst", "twitter", "replay"} <= set(TRACES)
    for name, cls in TRACES.items():
        assert issubclass(cls, Trace) and cls.name == name


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("poisson", {"qps": 250}),
        ("gamma", {"qps": 250, "cv": 2.0}),
        ("step", {"qps": [100, 400], "at": [0, 100]}),
        ("burst", {"base_qps": 100, "burst_qps": 500, "start_s": 50, "length_s": 30}),
        ("twitter", {"mean_qps": 200, "peak_qps": 500}),
    ],
)
def test_sorted_in_range_and_deterministic(name: str, params: dict) -> None:
    trace = make_trace(name, **params)
    a = trace.arrivals(200.5, rng(7))
    b = trace.arrivals(200.5, rng(7))
    c = trace.arrivals(200.5, rng(8))
    check_arrivals(a, 200.5)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    rate = trace.rate(200.5, rng(7))
    assert rate.shape == (201,) and np.all(rate >= 0)
    assert np.array_equal(rate, trace.rate(200.5, rng(7)))
    assert len(trace.arrivals(0, rng(7))) == 0


@pytest.mark.parametrize("qps", [5.0, 200.0, 2000.0])
def test_poisson_mean_rate_and_counts(qps: float) -> None:
    duration = 2000.0
    times = make_trace("poisson", qps=qps).arrivals(duration, rng(1))
    check_arrivals(times, duration)
    assert len(times) / duration == pytest.approx(qps, rel=0.03)
    counts = np.bincount(times.astype(int), minlength=int(duration))
    # Poisson: the per-second count's variance equals its mean (index of dispersion 1)
    assert counts.var() / counts.mean() == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("cv", [0.5, 1.0, 2.0, 4.0])
def test_gamma_mean_rate_and_interarrival_cv(cv: float) -> None:
    qps, duration = 1000.0, 1000.0
    times = make_trace("gamma", qps=qps, cv=cv).arrivals(duration, rng(2))
    check_arrivals(times, duration)
    gaps = np.diff(times)
    assert len(times) / duration == pytest.approx(qps, rel=0.03)
    assert gaps.mean() == pytest.approx(1 / qps, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.05)


def test_step_rates_change_at_the_given_times() -> None:
    trace = make_trace("step", qps=[100, 400, 50], at=[0, 60, 120])
    times = trace.arrivals(240, rng(3))
    check_arrivals(times, 240)
    counts = np.bincount(times.astype(int), minlength=240)
    assert counts[:60].mean() == pytest.approx(100, rel=0.05)
    assert counts[60:120].mean() == pytest.approx(400, rel=0.05)
    assert counts[120:].mean() == pytest.approx(50, rel=0.08)
    expected = trace.rate(240, rng(3))
    assert np.array_equal(expected[[0, 59, 60, 119, 120, 239]], [100, 100, 400, 400, 50, 50])


def test_step_with_a_fractional_change_time_splits_the_second() -> None:
    rate = make_trace("step", qps=[100, 300], at=[0, 10.25]).rate(20, rng())
    assert rate[10] == pytest.approx(0.25 * 100 + 0.75 * 300)
    assert rate.sum() == pytest.approx(10.25 * 100 + 9.75 * 300)


def test_burst_single_and_repeated() -> None:
    one = make_trace("burst", base_qps=100, burst_qps=500, start_s=200, length_s=60)
    times = one.arrivals(600, rng(4))
    counts = np.bincount(times.astype(int), minlength=600)
    assert counts[:200].mean() == pytest.approx(100, rel=0.05)
    assert counts[200:260].mean() == pytest.approx(500, rel=0.05)
    assert counts[260:].mean() == pytest.approx(100, rel=0.05)

    rep = make_trace("burst", base_qps=10, burst_qps=50, start_s=5, length_s=10, repeats=3, period_s=30)
    rate = rep.rate(100, rng())
    high = np.flatnonzero(rate == 50)
    assert list(high) == [*range(5, 15), *range(35, 45), *range(65, 75)]
    assert np.all(rate[np.setdiff1d(np.arange(100), high)] == 10)


def test_expected_per_second_integrates_pieces() -> None:
    out = expected_per_second(np.array([0.0, 1.5, 3.0]), np.array([2.0, 4.0]), 2.5)
    assert np.allclose(out, [2.0, 1.0 + 2.0, 2.0])  # [0,1), [1,2) half at 2 half at 4, [2,2.5)


@pytest.mark.parametrize(
    ("name", "params", "param"),
    [
        ("poisson", {"qps": -1}, "qps"),
        ("poisson", {"qps": "fast"}, "qps"),
        ("poisson", {"qps": float("nan")}, "qps"),
        ("gamma", {"qps": 10, "cv": 0}, "cv"),
        ("step", {"qps": [1, 2], "at": [0]}, "at"),
        ("step", {"qps": [1, 2], "at": [0, 0]}, "at"),
        ("step", {"qps": [1, 2], "at": [5, 10]}, "at"),
        ("step", {"qps": [], "at": []}, "qps"),
        ("burst", {"length_s": 0}, "length_s"),
        ("burst", {"repeats": 2}, "period_s"),
        ("burst", {"repeats": 2, "period_s": 10, "length_s": 20}, "period_s"),
        ("burst", {"repeats": 1.5}, "repeats"),
        ("twitter", {"mean_qps": 100, "peak_qps": 50}, "peak_qps"),
        ("twitter", {"time_scale": 0}, "time_scale"),
        ("twitter", {"peak_to_mean": 0.5}, "peak_to_mean"),
        ("twitter", {"min_bursts": -1}, "min_bursts"),
    ],
)
def test_bad_parameters_are_one_line_config_errors(name: str, params: dict, param: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_trace(name, **params)
    message = str(err.value)
    assert "\n" not in message and name in message and param in message


def test_unknown_name_and_parameters() -> None:
    with pytest.raises(ConfigError, match=r"unknown trace 'poison' \(known: .*poisson.*\)"):
        make_trace("poison", qps=1)
    with pytest.raises(ConfigError, match=r"trace poisson: unknown parameter\(s\) rate \(known: qps\)"):
        make_trace("poisson", rate=1)
    with pytest.raises(ConfigError, match=r"trace replay: missing parameter\(s\) path"):
        make_trace("replay")


def test_bad_duration_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="duration_s"):
        make_trace("poisson", qps=1).arrivals(-1, rng())


def test_register_trace_rejects_a_second_class_under_a_taken_name() -> None:
    from dataclasses import dataclass

    with pytest.raises(ValueError, match="registered twice"):

        @register_trace("poisson")
        @dataclass(frozen=True)
        class Other(Trace):
            def arrivals(self, duration_s: float, rng: np.random.Generator) -> np.ndarray:
                return np.zeros(0)


def test_generators_declare_their_expected_rate_from_their_parameters() -> None:
    from traces import make_trace

    assert make_trace("poisson", qps=40).expected_rate(60) == (40, 40)
    assert make_trace("gamma", qps=40, cv=2).expected_rate(60) == (40, 40)
    mean, peak = make_trace("step", qps=[10, 30], at=[0, 30]).expected_rate(60)
    assert mean == pytest.approx(20) and peak == 30
    mean, peak = make_trace("burst", base_qps=10, burst_qps=50, start_s=20, length_s=10).expected_rate(60)
    assert mean == pytest.approx((50 * 10 + 10 * 50) / 60) and peak == 50
    assert make_trace("twitter", mean_qps=100, peak_to_mean=3).expected_rate(600) == (100, 300)
    assert make_trace("twitter", mean_qps=100, peak_qps=250).expected_rate(600) == (100, 250)
