"""The trace seam: the arrival-stream interface, its registry, and splitting a stream among
applications.

A :class:`Trace` is a frozen dataclass holding its parameters (validated in ``__post_init__``,
raising :class:`~infaas_sim.errors.ConfigError` with a one-line message naming the parameter).
``arrivals(duration_s, rng)`` returns sorted float64 arrival times in ``[0, duration_s)``;
``rate(duration_s, rng)`` returns, for each second ``[k, k + 1)`` of the run (the last one cut
at ``duration_s``), the expected number of arrivals where the trace knows it, else the actual
count. The implementations live in the ``traces`` package (and users' packages), registered with
``@register_trace("name")`` and found through the ``infaas_sim.traces`` entry points.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from infaas_sim.errors import ConfigError
from infaas_sim.registry import Registry

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class Trace(ABC):
    """An arrival stream. Subclasses are frozen dataclasses registered with ``@register_trace``."""

    name: ClassVar[str] = ""

    @abstractmethod
    def arrivals(self, duration_s: float, rng: np.random.Generator) -> FloatArray:
        """Sorted arrival times (seconds, float64) in ``[0, duration_s)``."""

    def expected_rate(self, duration_s: float) -> tuple[float, float] | None:
        """(mean, peak) arrivals per second that an operator would declare for a run of
        ``duration_s`` before it starts: from the trace's parameters or its history, never
        from the arrivals it will draw. None: the trace cannot say (declare
        ``expected_qps`` per application in the workload)."""
        return None

    def rate(self, duration_s: float, rng: np.random.Generator) -> FloatArray:
        """Arrivals in each second of the run; this default counts :meth:`arrivals`."""
        duration = check_duration(duration_s)
        times = self.arrivals(duration, rng)
        n = math.ceil(duration)
        if n == 0:
            return np.zeros(0)
        counts = np.bincount(np.minimum(times.astype(np.int64), n - 1), minlength=n)
        return counts.astype(np.float64)

    def _fail(self, param: str, message: str) -> ConfigError:
        return ConfigError(f"trace {self.name or type(self).__name__}: {param} {message}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_duration(duration_s: Any) -> float:
    if not _is_number(duration_s) or not math.isfinite(float(duration_s)) or float(duration_s) < 0:
        raise ConfigError(f"trace: duration_s must be a finite number >= 0, got {duration_s!r}")
    return float(duration_s)


def _check_trace(name: str, cls: type[Trace]) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Trace) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"register_trace({name!r}): {cls!r} is not a Trace dataclass")
    cls.name = name


TRACES: Registry[type[Trace]] = Registry("trace", "infaas_sim.traces", _check_trace)

T = TypeVar("T", bound=type[Trace])


def register_trace(name: str) -> Callable[[T], T]:
    """Class decorator: register a Trace dataclass under ``name`` (and set its ``name``)."""

    def decorate(cls: T) -> T:
        TRACES.add(name, cls)
        return cls

    return decorate


def make_trace(name: str, **params: Any) -> Trace:
    """Build the trace registered as ``name`` from keyword parameters.

    Raises ConfigError for an unknown name (listing the known ones), an unknown or missing
    parameter (listing the accepted ones), or an invalid value.
    """
    cls = TRACES.get(name)
    fields = [f for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    known = [f.name for f in fields]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(f"trace {name}: unknown parameter(s) {', '.join(unknown)} (known: {', '.join(known)})")
    missing = [
        f.name
        for f in fields
        if f.name not in params and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"trace {name}: missing parameter(s) {', '.join(missing)}")
    return cls(**params)


def assign_apps(n: int, shares: Sequence[float], rng: np.random.Generator) -> IntArray:
    """An application index for each of ``n`` arrivals, drawn independently with probability
    proportional to ``shares`` (non-negative, not all zero)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"assign_apps: n must be an integer >= 0, got {n!r}")
    values = list(shares)
    if not values:
        raise ConfigError("assign_apps: shares must list at least one application")
    for i, share in enumerate(values):
        if isinstance(share, bool) or not isinstance(share, (int, float, np.integer, np.floating)):
            raise ConfigError(f"assign_apps: shares[{i}] must be a number, got {share!r}")
        if not math.isfinite(float(share)) or share < 0:
            raise ConfigError(f"assign_apps: shares[{i}] must be a finite number >= 0, got {share!r}")
    p = np.asarray(values, dtype=np.float64)
    total = float(p.sum())
    if total <= 0:
        raise ConfigError("assign_apps: shares must not all be zero")
    if len(p) == 1:
        return np.zeros(int(n), dtype=np.int64)
    return rng.choice(len(p), size=int(n), p=p / total).astype(np.int64)
