"""Errors for bad input: each renders as one line naming the problem."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input (config, catalog, trace, query). The message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class ConfigError(InputError):
    """A configuration value is wrong (unknown name, out of range, impossible SLO)."""


class CatalogError(InputError):
    """A catalog file or row is malformed."""


class TraceError(InputError):
    """A trace file is malformed or a trace parameter is invalid."""
