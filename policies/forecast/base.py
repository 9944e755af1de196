"""The forecaster interface and its registry.

A forecaster answers one question for a policy: the maximum per-second arrival rate over the
next ``horizon_s`` seconds, given per-second counts of the past. Policies feed it the counts
they read from the view (``ClusterView.app_rate_series``), either incrementally with
:meth:`Forecaster.observe` and :meth:`Forecaster.predict`, or as a whole history with
:meth:`Forecaster.predict_from` (stateless, what the evaluation uses).

New forecasters: a subclass decorated with ``@register_forecaster("name")`` and one import
line in ``policies/forecast/__init__.py``; ``make_forecaster(name, **params)`` builds one.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from infaas_sim.errors import ConfigError
from infaas_sim.registry import Registry

FloatArray = npt.NDArray[np.float64]


class Forecaster(ABC):
    """Predicts the maximum per-second rate over the next ``horizon_s`` seconds."""

    name: ClassVar[str] = ""

    def __init__(self, horizon_s: int, history_s: int) -> None:
        check_int(self, "horizon_s", horizon_s, 1)
        check_int(self, "history_s", history_s, 1)
        self.horizon_s = horizon_s
        #: seconds of past counts the forecaster looks at (older ones are dropped)
        self.history_s = history_s
        self._hist: deque[float] = deque(maxlen=history_s)

    def observe(self, counts: Iterable[float]) -> None:
        """Append per-second counts (oldest first) that follow the ones observed before."""
        self._hist.extend(float(c) for c in counts)

    def reset(self) -> None:
        self._hist.clear()

    def predict(self) -> float:
        """The forecast from the counts observed so far (0 before any)."""
        return self.predict_from(np.fromiter(self._hist, dtype=np.float64, count=len(self._hist)))

    @abstractmethod
    def predict_from(self, history: Sequence[float] | FloatArray) -> float:
        """The forecast from ``history``: per-second counts, oldest first, the last one being
        the most recent finished second. Only the last ``history_s`` seconds matter."""

    def fit(self, series: Sequence[float] | FloatArray) -> Forecaster:
        """Train on a per-second series (the trace's past); a no-op for rule-based forecasters."""
        return self


def check_int(owner: object, param: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"forecaster {getattr(owner, 'name', '') or type(owner).__name__}: "
                          f"{param} must be an integer >= {low}, got {value!r}")  # fmt: skip


def check_float(owner: object, param: str, value: object, low: float, high: float = math.inf) -> None:
    ok = isinstance(value, int | float | np.number) and not isinstance(value, bool)
    if not ok or not (low <= float(value) <= high):  # type: ignore[arg-type]
        raise ConfigError(f"forecaster {getattr(owner, 'name', '') or type(owner).__name__}: "
                          f"{param} must be a number in [{low:g}, {high:g}], got {value!r}")  # fmt: skip


def window_maxima(history: FloatArray, window_s: int, count: int) -> FloatArray:
    """Maxima of the last ``count`` whole windows of ``window_s`` seconds, oldest first
    (``history`` must hold at least ``count * window_s`` seconds)."""
    tail = history[len(history) - count * window_s :]
    return tail.reshape(count, window_s).max(axis=1)


# --- registry ------------------------------------------------------------------------------
def _name_forecaster(name: str, cls: type[Forecaster]) -> None:
    cls.name = name


FORECASTERS: Registry[type[Forecaster]] = Registry("forecaster", "infaas_sim.forecasters", _name_forecaster)

F = TypeVar("F", bound=type[Forecaster])


def register_forecaster(name: str) -> Callable[[F], F]:
    def deco(cls: F) -> F:
        FORECASTERS.add(name, cls)
        return cls

    return deco


def forecaster_names() -> list[str]:
    return FORECASTERS.names()


def make_forecaster(name: str, **params: Any) -> Forecaster:
    """Build the forecaster registered as ``name``; a clear ConfigError otherwise."""
    cls = FORECASTERS.get(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"forecaster {name!r}: {exc}") from None
