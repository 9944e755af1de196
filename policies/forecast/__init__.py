"""Load forecasting: a forecaster interface, a moving-window maximum baseline and a learned
forecaster. Importing this package registers the built-in forecasters."""

from policies.forecast.base import Forecaster, forecaster_names, make_forecaster, register_forecaster
from policies.forecast.learned import LearnedForecaster, evaluate
from policies.forecast.window_max import WindowMax

__all__ = [
    "Forecaster",
    "LearnedForecaster",
    "WindowMax",
    "evaluate",
    "forecaster_names",
    "make_forecaster",
    "register_forecaster",
]
