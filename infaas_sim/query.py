"""What an application asks for, and the queries it sends.

INFaaS's three query levels: a pinned variant; an architecture + latency SLO; a task and data
set + minimum accuracy + latency SLO. The number of inputs in a query is its batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from infaas_sim.errors import ConfigError


class Level(StrEnum):
    VARIANT = "variant"
    ARCHITECTURE = "architecture"
    TASK = "task"


@dataclass(frozen=True, slots=True)
class Requirement:
    """What every query of an application needs. ``slo_ms`` is None only for pinned variants."""

    level: Level
    target: str  # variant id, architecture name, or task
    dataset: str = ""  # for the task level
    slo_ms: float | None = None
    min_accuracy: float = 0.0

    def __post_init__(self) -> None:
        if self.slo_ms is not None and self.slo_ms <= 0:
            raise ConfigError(f"requirement on {self.target!r}: slo_ms must be > 0, got {self.slo_ms}")
        if not 0.0 <= self.min_accuracy <= 1.0:
            raise ConfigError(
                f"requirement on {self.target!r}: min_accuracy must be in [0, 1], got {self.min_accuracy}"
            )
        if self.level is not Level.VARIANT and self.slo_ms is None:
            raise ConfigError(f"requirement on {self.target!r}: the {self.level.value} level needs slo_ms")
        if self.level is Level.TASK and not self.dataset:
            raise ConfigError(f"requirement on task {self.target!r}: the task level needs a dataset")

    def describe(self) -> str:
        if self.level is Level.VARIANT:
            what = f"variant {self.target}"
        elif self.level is Level.ARCHITECTURE:
            what = f"architecture {self.target}"
        else:
            what = f"task {self.target}/{self.dataset}"
        slo = f" within {self.slo_ms:g} ms" if self.slo_ms is not None else ""
        acc = f" at accuracy >= {self.min_accuracy:g}" if self.min_accuracy > 0 else ""
        return f"{what}{slo}{acc}"


@dataclass(frozen=True, slots=True)
class Application:
    """A tenant of the serving system: a name, its requirement, its share of the traffic."""

    name: str
    requirement: Requirement
    share: float = 1.0
    batch: int = 1  # inputs per query
    index: int = 0  # position in the workload, set by the workload

    def __post_init__(self) -> None:
        if self.share <= 0:
            raise ConfigError(f"application {self.name!r}: share must be > 0, got {self.share}")
        if self.batch < 1:
            raise ConfigError(f"application {self.name!r}: batch must be >= 1, got {self.batch}")


class Status(StrEnum):
    SERVED = "served"
    REJECTED = "rejected"
    FAILED = "failed"


class Query:
    """One request in flight. Mutable: the cluster stamps its timings as it moves through.

    A plain class with __slots__ rather than a dataclass: it is created once per arrival on
    the hot path.
    """

    __slots__ = ("app", "arrival", "batch", "enqueued", "payload", "qid", "ready")

    def __init__(self, qid: int, arrival: float, app: Application, batch: int, payload: Any = None) -> None:
        self.qid = qid
        self.arrival = arrival
        self.app = app
        self.batch = batch
        self.payload = payload
        self.enqueued = arrival  # when it joined an instance's queue
        self.ready = arrival  # when its instance was ready (after loading)
