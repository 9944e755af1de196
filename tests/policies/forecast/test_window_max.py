"""The moving-window maximum: the next horizon peaks where the last window did."""

from __future__ import annotations

import numpy as np
import pytest

from infaas_sim.errors import ConfigError
from policies.forecast import WindowMax, forecaster_names, make_forecaster


def test_forecast_is_the_maximum_of_the_last_window() -> None:
    f = make_forecaster("window_max", horizon_s=60, window_s=5)
    assert isinstance(f, WindowMax)
    assert f.predict_from([100, 1, 2, 3, 9, 4, 5]) == 9.0  # the 100 is older than 5 s
    assert f.predict_from([3.0]) == 3.0  # shorter history: what there is
    assert f.predict_from([]) == 0.0


def test_window_defaults_to_the_horizon_and_observe_matches_predict_from() -> None:
    f = make_forecaster("window_max", horizon_s=3)
    series = [5, 1, 1, 2, 7, 1]
    f.observe(series[:4])
    f.observe(series[4:])
    assert f.predict() == f.predict_from(series) == 7.0
    assert f.predict_from(series[:-2]) == 2.0  # window of 3 s: 1, 1, 2
    f.reset()
    assert f.predict() == 0.0


def test_registry_lists_both_and_rejects_unknown_names_and_bad_parameters() -> None:
    assert {"learned", "window_max"} <= set(forecaster_names())
    with pytest.raises(ConfigError, match=r"unknown forecaster 'lstm'.*known: .*window_max"):
        make_forecaster("lstm")
    with pytest.raises(ConfigError, match="window_s must be an integer >= 1"):
        make_forecaster("window_max", window_s=0)
    with pytest.raises(ConfigError, match=r"forecaster 'window_max'.*unexpected keyword"):
        make_forecaster("window_max", lags=3)


def test_a_rising_ramp_is_always_under_predicted() -> None:
    """What the baseline cannot do: anticipate a trend."""
    f = make_forecaster("window_max", horizon_s=10)
    ramp = np.arange(200, dtype=float)
    assert all(f.predict_from(ramp[:t]) < ramp[t : t + 10].max() for t in range(10, 190, 10))
