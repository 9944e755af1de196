"""The executor seam: how loading a variant and running a batch take time.

The simulated executor takes the profiled latency; real executors run the model and post
their completion to the loop. Executors see time only through the
:class:`~infaas_sim.clock.Clock` they are bound to (its completions, calls and posts), never
SimPy itself. Swapping the executor is the only difference between the two modes. Executors
register by name so that a new one is a new file and one line.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from infaas_sim.clock import Clock, Completion
from infaas_sim.errors import ConfigError
from infaas_sim.registry import Registry

if TYPE_CHECKING:
    from infaas_sim.cluster import Instance
    from infaas_sim.query import Query


class Executor(ABC):
    """Runs loads and batches for the cluster. ``bind`` is called once before the run."""

    name = ""
    #: real executors run on wall-clock time (a WallClockEnvironment)
    realtime = False

    def bind(self, clock: Clock, seed: int) -> None:
        self.clock = clock
        self.seed = seed

    @abstractmethod
    def load(self, instance: Instance) -> Completion:
        """A completion that succeeds when ``instance`` is loaded."""

    @abstractmethod
    def run(self, instance: Instance, inputs: int, queries: Sequence[Query]) -> Completion:
        """A completion that succeeds when the batch is done; it fails with the fault if the
        batch could not run (the cluster fails those queries with it)."""

    def load_now(self, instance: Instance) -> None:  # noqa: B027 - optional hook
        """Make ``instance`` ready at once: it was loaded instantly (the policy's set-up,
        before traffic starts). Real executors open its session here, synchronously."""

    def unload(self, instance: Instance) -> None:  # noqa: B027 - optional hook
        """Free whatever ``load`` holds."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release runtime resources at the end of a run."""


def _name_executor(name: str, cls: type[Executor]) -> None:
    cls.name = name


EXECUTORS: Registry[type[Executor]] = Registry("executor", "infaas_sim.executors", _name_executor)
E = TypeVar("E", bound=type[Executor])


def register_executor(name: str) -> Callable[[E], E]:
    def deco(cls: E) -> E:
        EXECUTORS.add(name, cls)
        return cls

    return deco


def executor_names() -> list[str]:
    return EXECUTORS.names()


def make_executor(name: str, **params: Any) -> Executor:
    cls = EXECUTORS.get(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"executor {name!r}: {exc}") from None
