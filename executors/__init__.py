"""Executors: how a batch of work takes time. Importing this package registers them."""

from executors import sim  # noqa: F401
