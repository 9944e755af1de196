"""What an application asks for, and the queries it sends.

INFaaS's three query levels: a pinned variant; an architecture + latency SLO; a task and data
set + minimum accuracy + latency SLO. The number of inputs in a query is its batch size.

Pipelines. An application may be a chain of stages (:class:`Pipeline`: detection, then
classification), each stage a model-less :class:`Requirement` of its own, all sharing one
end-to-end ``slo_ms``. A query of such an application runs stage 0; when stage k completes
the controller submits stage k + 1 at that instant, with the same inputs. ``Query.stage`` is
the stage being routed, ``Query.requirement`` its requirement (use it, not
``query.app.requirement``, which is stage 0's), ``Query.remaining_slo_ms(now)`` the budget
left of the end-to-end SLO. A stage rejected or failed ends the query with that outcome; the
query still has exactly one record, which keeps each completed stage's timing. Policies learn
the structure at set-up: ``setup(view, apps, hints)`` gets every :class:`Application`, and
``app.pipeline`` (None for a single model) lists its stages.
"""

from __future__ import annotations

import math
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
class Pipeline:
    """A chain of model-less stages sharing one end-to-end latency SLO.

    Each stage's own ``slo_ms`` bounds that stage alone (it filters the stage's candidates);
    the end-to-end ``slo_ms`` is what a query is judged by. Use the end-to-end SLO for a stage
    whose budget the policy should split freely.
    """

    stages: tuple[Requirement, ...]
    slo_ms: float

    def __post_init__(self) -> None:
        if len(self.stages) < 1:
            raise ConfigError("a pipeline needs at least one stage")
        if not self.slo_ms > 0:
            raise ConfigError(f"a pipeline's end-to-end slo_ms must be > 0, got {self.slo_ms}")

    def describe(self) -> str:
        chain = " -> ".join(r.describe() for r in self.stages)
        return f"pipeline [{chain}] within {self.slo_ms:g} ms end to end"


@dataclass(frozen=True, slots=True)
class Application:
    """A tenant of the serving system: a name, its requirement, its share of the traffic.

    A pipeline application sets ``pipeline``; its ``requirement`` is then stage 0's (build it
    with :meth:`of_pipeline`)."""

    name: str
    requirement: Requirement
    share: float = 1.0
    batch: int = 1  # inputs per query
    index: int = 0  # position in the workload, set by the workload
    pipeline: Pipeline | None = None

    def __post_init__(self) -> None:
        if self.share <= 0:
            raise ConfigError(f"application {self.name!r}: share must be > 0, got {self.share}")
        if self.batch < 1:
            raise ConfigError(f"application {self.name!r}: batch must be >= 1, got {self.batch}")
        if self.pipeline is not None and self.requirement != self.pipeline.stages[0]:
            raise ConfigError(f"application {self.name!r}: its requirement must be its pipeline's first stage")

    @classmethod
    def of_pipeline(
        cls, name: str, pipeline: Pipeline, share: float = 1.0, batch: int = 1, index: int = 0
    ) -> Application:
        return cls(name, pipeline.stages[0], share=share, batch=batch, index=index, pipeline=pipeline)

    @property
    def stages(self) -> tuple[Requirement, ...]:
        """The requirement of each stage: one for a single-model application."""
        return self.pipeline.stages if self.pipeline is not None else (self.requirement,)

    @property
    def slo_ms(self) -> float | None:
        """The SLO a query is judged by: end to end for a pipeline."""
        return self.pipeline.slo_ms if self.pipeline is not None else self.requirement.slo_ms

    def describe(self) -> str:
        return self.pipeline.describe() if self.pipeline is not None else self.requirement.describe()


class Status(StrEnum):
    SERVED = "served"
    REJECTED = "rejected"
    FAILED = "failed"


class Query:
    """One request in flight. Mutable: the cluster stamps its timings as it moves through.

    A plain class with __slots__ rather than a dataclass: it is created once per arrival on
    the hot path.
    """

    __slots__ = (
        "app",
        "arrival",
        "batch",
        "enqueued",
        "output",
        "payload",
        "qid",
        "ready",
        "requirement",
        "stage",
        "stage_log",
        "submitted",
    )

    def __init__(self, qid: int, arrival: float, app: Application, batch: int, payload: Any = None) -> None:
        self.qid = qid
        self.arrival = arrival  # when the query arrived (its first stage, for a pipeline)
        self.app = app
        self.batch = batch
        self.payload = payload
        # Serving: what the model returned for this query's payload (a real executor sets it
        # when the payload is an input array, before the batch's completion is recorded).
        self.output: Any = None
        self.enqueued = arrival  # when it joined an instance's queue
        self.ready = arrival  # when its instance was ready (after loading)
        self.stage = 0  # the pipeline stage being served (0 for a single model)
        self.requirement = app.requirement  # the current stage's requirement
        self.submitted = arrival  # when the current stage was submitted
        # Pipelines only: one record per completed stage (see metrics.Recorder); None otherwise.
        self.stage_log: list[tuple[Any, ...]] | None = [] if app.pipeline is not None else None

    @property
    def last_stage(self) -> bool:
        p = self.app.pipeline
        return p is None or self.stage == len(p.stages) - 1

    def remaining_slo_ms(self, now: float) -> float:
        """What is left of the (end-to-end) SLO at ``now``; inf without an SLO."""
        slo = self.app.slo_ms
        return math.inf if slo is None else slo - (now - self.arrival) * 1000

    def next_stage(self, now: float) -> None:
        """Move on to the next pipeline stage, submitted at ``now``."""
        p = self.app.pipeline
        if p is None or self.stage + 1 >= len(p.stages):
            raise ValueError(f"query {self.qid} has no stage after {self.stage}")
        self.stage += 1
        self.requirement = p.stages[self.stage]
        self.submitted = now
        self.enqueued = now
        self.ready = now
