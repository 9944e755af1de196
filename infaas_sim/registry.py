"""One registry type for every kind of plug-in: policies, executors, runners, builders, traces,
forecasters.

A plug-in registers itself with the decorator of its kind (``@register_policy("name")`` is
``POLICIES.register("name")``) when its module is imported. The core never imports a plug-in
package: the first lookup of a kind loads the entry points of its group (``infaas_sim.policies``
and so on, declared in ``pyproject.toml``), which imports the modules that register. A user's
own package adds a plug-in the same way, with an entry point of its own, without editing this
repository.

One rule for duplicates: registering a name again with the same object (a module imported
twice, a reload) is harmless; another object under a taken name is a ``RegistryError``
naming both.
"""

from __future__ import annotations

import importlib.metadata
import types
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from infaas_sim.errors import ConfigError

T = TypeVar("T")


class RegistryError(ValueError):
    """Two different plug-ins claim one name."""


def _qualified(obj: object) -> str:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{name}"


class Registry(Generic[T]):
    """Plug-ins of one kind by name, completed from the entry-point group ``group`` on the
    first lookup. ``prepare(name, obj)`` runs at registration (checks, setting ``obj.name``)."""

    def __init__(self, kind: str, group: str, prepare: Callable[[str, T], None] | None = None) -> None:
        self.kind = kind
        self.group = group
        self._prepare = prepare
        self._items: dict[str, T] = {}
        self._loaded = False

    # --- registration -------------------------------------------------------------------
    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name``."""

        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        old = self._items.get(name)
        if old is not None and old is not obj and _qualified(old) != _qualified(obj):
            raise RegistryError(f"{self.kind} {name!r} is registered twice: {_qualified(old)} and {_qualified(obj)}")
        if self._prepare is not None:
            self._prepare(name, obj)
        self._items[name] = obj

    # --- lookup -------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        """Import every plug-in of this kind declared as an entry point (once)."""
        if self._loaded:
            return
        self._loaded = True
        for ep in sorted(importlib.metadata.entry_points(group=self.group), key=lambda e: e.name):
            if ep.name in self._items:
                continue
            self._load(ep)

    def _load(self, ep: importlib.metadata.EntryPoint) -> None:
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plug-in is named, in one line
            detail = f"{type(exc).__name__}: {exc}".splitlines()[0]
            raise ConfigError(f"{self.kind} plug-in {ep.name!r} ({ep.value}) failed to load: {detail}") from None
        if isinstance(obj, types.ModuleType):
            if ep.name not in self._items:  # the module registers itself on import
                raise ConfigError(f"{self.kind} plug-in {ep.name!r}: module {ep.value} registers no {ep.name!r}")
        elif ep.name not in self._items:
            self.add(ep.name, obj)

    def get(self, name: str) -> T:
        """The plug-in registered as ``name``; a one-line ConfigError naming the known ones."""
        if isinstance(name, str) and name not in self._items and not self._loaded:
            for ep in importlib.metadata.entry_points(group=self.group, name=name):
                self._load(ep)  # only its own entry point: the others are not imported
        if not isinstance(name, str) or name not in self._items:
            self.load_entry_points()
        if not isinstance(name, str) or name not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r} (known: {', '.join(self.names())})")
        return self._items[name]

    def names(self) -> list[str]:
        self.load_entry_points()
        return sorted(self._items)

    def declared(self) -> list[str]:
        """The names registered or declared as entry points, without importing any plug-in
        (for listings at start-up: importing them all cost 0.2 CPU s of every run)."""
        eps = importlib.metadata.entry_points(group=self.group)
        return sorted(set(self._items) | {ep.name for ep in eps})

    def __contains__(self, name: object) -> bool:
        self.load_entry_points()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        self.load_entry_points()
        return sorted(self._items.items())
