"""Dispatch rules: which replica of a deployment a query goes to.

Each rule is a pure selection over the deployment's routable replicas (a policy's
``route`` calls it once per query, so each is a single pass with no allocation):

- ``least_backlog`` (the default): the replica a query queued now would start soonest on,
  by :meth:`InstanceView.backlog_s` (time left loading, on the running batch, and the
  queued work in full batches). The best a dispatcher can do with what it knows: with
  deterministic batch-1 replicas it sends each query where a central FCFS queue would start
  it, so per-replica FIFO queues behave exactly as one M/D/c queue.
- ``shortest_queue``: join-shortest-queue by outstanding inputs (queued + running). Blind
  to how far the running batch has got: of two replicas with one input each it may pick the
  one that has just started a batch (4 deterministic replicas at utilisation 0.8 under
  Poisson arrivals then wait about 20% longer than M/D/4).
- ``round_robin``: replica ``turn`` modulo their number, the caller counting turns: how
  INFaaS's released baselines dispatched. Blind to load; with identical deterministic
  replicas it matches ``least_backlog`` (FCFS over c such servers serves them in turn), and
  falls behind where replicas differ (sizes, batching, loading, noise).

Ties go to the first replica in list order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from infaas_sim.errors import ConfigError
from infaas_sim.view import InstanceState

LEAST_BACKLOG = "least_backlog"
ROUND_ROBIN = "round_robin"
SHORTEST_QUEUE = "shortest_queue"
DISPATCH_RULES = (LEAST_BACKLOG, ROUND_ROBIN, SHORTEST_QUEUE)

_READY = InstanceState.READY  # bound once: enum attribute reads cost on the per-query path


class Routable(Protocol):
    """What the rules read of a replica (an :class:`~infaas_sim.view.InstanceView` has it)."""

    @property
    def queued_inputs(self) -> int: ...
    @property
    def inflight_inputs(self) -> int: ...
    @property
    def busy_until(self) -> float: ...
    @property
    def state(self) -> InstanceState: ...

    def backlog_s(self, now: float) -> float: ...


R = TypeVar("R", bound=Routable)


def check_dispatch(where: str, rule: object) -> str:
    """``rule`` if it names a dispatch rule, else a one-line ConfigError (``where``: the
    component, e.g. ``policy static``)."""
    if rule not in DISPATCH_RULES:
        raise ConfigError(f"{where}: dispatch must be one of {', '.join(DISPATCH_RULES)}, got {rule!r}")
    return str(rule)


def least_backlog(instances: Sequence[R], now: float) -> R | None:
    """The replica with the least backlog in time (None: no replica)."""
    best: R | None = None
    best_wait = 0.0
    for inst in instances:
        # An idle ready replica has no backlog: nothing can beat it, so stop looking.
        if inst.queued_inputs == 0 and inst.busy_until <= now and inst.state is _READY:
            return inst
        wait = inst.backlog_s(now)
        if best is None or wait < best_wait:
            best, best_wait = inst, wait
    return best


def shortest_queue(instances: Sequence[R]) -> R | None:
    """The replica with the fewest outstanding (queued and running) inputs."""
    best: R | None = None
    best_load = 0
    for inst in instances:
        load = inst.queued_inputs + inst.inflight_inputs
        if best is None or load < best_load:
            if load == 0:
                return inst
            best, best_load = inst, load
    return best


def round_robin(instances: Sequence[R], turn: int) -> R | None:
    """Replica ``turn`` modulo the number of replicas (None: no replica)."""
    n = len(instances)
    return instances[turn % n] if n else None
