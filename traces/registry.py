"""The trace registry: ``@register_trace("name")`` on a Trace dataclass, ``make_trace(name, **params)``.

A new trace is one new module (a frozen dataclass subclassing :class:`~traces.base.Trace`,
decorated with ``@register_trace``) plus one import line in ``traces/__init__.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from infaas_sim.errors import ConfigError
from traces.base import Trace

TRACES: dict[str, type[Trace]] = {}

T = TypeVar("T", bound=type[Trace])


def register_trace(name: str) -> Callable[[T], T]:
    """Class decorator: register a Trace dataclass under ``name`` (and set its ``name``)."""

    def decorate(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, Trace) and dataclasses.is_dataclass(cls)):
            raise TypeError(f"register_trace({name!r}): {cls!r} is not a Trace dataclass")
        old = TRACES.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"trace name {name!r} is already registered to {old.__module__}.{old.__qualname__}")
        cls.name = name
        TRACES[name] = cls
        return cls

    return decorate


def make_trace(name: str, **params: Any) -> Trace:
    """Build the trace registered as ``name`` from keyword parameters.

    Raises ConfigError for an unknown name (listing the known ones), an unknown or missing
    parameter (listing the accepted ones), or an invalid value.
    """
    cls = TRACES.get(name)
    if cls is None:
        raise ConfigError(f"unknown trace {name!r} (known: {', '.join(sorted(TRACES))})")
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
