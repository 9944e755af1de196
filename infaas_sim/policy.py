"""The policy seam: decisions per query, actions per tick, and the policy registry.

A policy reads a read-only :class:`~infaas_sim.view.ClusterView` and returns plain data:
a :data:`Decision` from ``route`` and a list of :data:`Action` from ``autoscale``. It never
mutates the cluster; the cluster applies what it returns, paying the delays.
"""

from __future__ import annotations

import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from infaas_sim.errors import ConfigError
from infaas_sim.registry import Registry

if TYPE_CHECKING:
    from infaas_sim.catalog import Candidates
    from infaas_sim.query import Application, Query
    from infaas_sim.view import ClusterView, InstanceView


# --- decisions (per query) ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Serve:
    """Queue the query on a loaded (or loading) instance."""

    instance: InstanceView


@dataclass(frozen=True, slots=True)
class LoadThenServe:
    """Load ``variant_id`` (on ``worker_id``, or wherever it fits) and queue the query on it.
    ``cores``, ``max_batch`` and ``exclusive_device`` mean what they mean in :class:`Load`."""

    variant_id: str
    worker_id: int | None = None
    cores: float | None = None
    max_batch: int | None = None
    exclusive_device: bool = False


@dataclass(frozen=True, slots=True)
class Reject:
    reason: str


Decision = Serve | LoadThenServe | Reject


# --- actions (per tick) ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Load:
    """Load one more instance (replica) of a variant. ``worker_id`` None: the cluster places it,
    starting a worker of the right kind if none has room and ``allow_new_worker``."""

    variant_id: str
    worker_id: int | None = None
    cores: float | None = None  # CPU allocation; None = the variant's profiled allocation
    max_batch: int | None = None  # batcher limit; None = the variant's max batch
    allow_new_worker: bool = True
    # GPU only: the replica gets a device of its own (placed only where a device is free, and
    # no other replica runs on it); False: it time-shares the worker's devices by memory.
    exclusive_device: bool = False
    # Worker pool: the replica goes only to workers of this pool (None: only to workers of
    # no pool), and a worker started for it joins the pool. Keeps a deployment on VMs of its own.
    pool: str | None = None


@dataclass(frozen=True, slots=True)
class Unload:
    """Stop routing to an instance; it drains its queue, then frees its memory."""

    instance_id: int


@dataclass(frozen=True, slots=True)
class Resize:
    """Change a CPU instance's cores in place (vertical scaling), after the resize delay."""

    instance_id: int
    cores: float


@dataclass(frozen=True, slots=True)
class SetBatch:
    """Change an instance's batcher: its max batch (<= the variant's) and max wait."""

    instance_id: int
    max_batch: int
    max_wait_s: float | None = None


@dataclass(frozen=True, slots=True)
class AddWorker:
    """Start a VM; ``pool``: the worker pool it belongs to (see :class:`Load`)."""

    instance_type: str
    pool: str | None = None


@dataclass(frozen=True, slots=True)
class RemoveWorker:
    """Release a VM: its instances drain, then billing stops."""

    worker_id: int


Action = Load | Unload | Resize | SetBatch | AddWorker | RemoveWorker


@dataclass(frozen=True)
class WorkloadHint:
    """What an operator knows offline about an application's load (from history)."""

    mean_qps: float
    peak_qps: float


class Policy(ABC):
    """Base class of every policy. Subclasses register with :func:`register_policy`."""

    name: ClassVar[str] = ""
    #: seconds between ``autoscale`` calls; None: never called.
    tick_s: float | None = 1.0

    def setup(self, view: ClusterView, apps: Sequence[Application], hints: Mapping[str, WorkloadHint]) -> list[Action]:
        """Actions applied before traffic starts (pre-provisioned, no start-up delay).
        ``hints`` give each application's mean and peak rate, as an operator knows them.
        A pipeline application has ``app.pipeline`` set: ``app.stages`` are its stages'
        requirements, ``app.slo_ms`` its end-to-end SLO; every query of it passes each stage."""
        return []

    @abstractmethod
    def route(self, query: Query, candidates: Candidates, view: ClusterView) -> Decision:
        """Pick where one query runs. ``candidates`` are the catalog's variants that meet its
        requirement at its batch size, fastest first (never empty). The controller rejects a
        choice outside them. For a pipeline application ``route`` is called once per stage:
        ``query.stage`` is the stage, ``query.requirement`` its requirement, and
        ``query.remaining_slo_ms(view.now)`` what is left of the end-to-end SLO."""

    def autoscale(self, view: ClusterView) -> list[Action]:
        return []

    @classmethod
    def error(cls, message: str) -> ConfigError:
        """A bad parameter or input of this policy, as the one-line error the CLI prints."""
        return ConfigError(f"policy {cls.name or cls.__name__}: {message}")


def _name_policy(name: str, cls: type[Policy]) -> None:
    cls.name = name


# Built-ins and users' policies alike come in through the entry-point group (pyproject.toml).
POLICIES: Registry[type[Policy]] = Registry("policy", "infaas_sim.policies", _name_policy)

P = TypeVar("P", bound=type[Policy])


def register_policy(name: str) -> Callable[[P], P]:
    def deco(cls: P) -> P:
        POLICIES.add(name, cls)
        return cls

    return deco


def policy_names() -> list[str]:
    return POLICIES.names()


def make_policy(name: str, **params: Any) -> Policy:
    factory = POLICIES.get(name)
    _check_scalar_params(f"policy {name!r}", factory, params)
    try:
        return factory(**params)
    except TypeError as exc:
        raise ConfigError(f"policy {name!r}: {exc}") from None


def _check_scalar_params(where: str, factory: Callable[..., Any], params: Mapping[str, Any]) -> None:
    """A config value of the wrong type (``max_replicas=many``) is a one-line error naming the
    parameter, before the constructor fails somewhere less clear. Checks the parameters
    annotated plainly ``int``, ``float`` or ``bool``."""
    try:
        hints = typing.get_type_hints(factory.__init__)
    except Exception:  # unresolvable annotations: leave it to the constructor
        return
    for key, value in params.items():
        ann = hints.get(key)
        if ann is bool and not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
        if ann in (int, float) and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
        if ann is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{where}: {key} must be a whole number, got {value!r}")
