"""Floors for the simulator benchmark: the simulator's queueing model at its barest.

Both floors do the same work per query on the same arrivals: an arrival event, a route by a
dict lookup (application -> its servers, then one of them by query id), a FIFO queue per
server, batches of up to ``max_batch`` queries started when a server is idle, a completion
event after ``service_s`` per batch, and one outcome tuple recorded per query. Nothing is
rejected; the queues drain to the end.

- :func:`simpy_callback_floor`: on SimPy, every event a ``Timeout`` with a callback (no
  process, no generator, no ``Resource``), the next arrival scheduled by the current one;
- :func:`heapq_floor`: the same without SimPy, a ``heapq`` of (time, sequence, kind, payload).

Each returns a :class:`FloorRun` whose ``cpu_s`` covers the whole call (lists from the arrays,
the servers, the loop and the records), measured with ``time.process_time``.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import simpy

Record = tuple[int, int, int, float, float, float, int]  # qid, app, server, arrival, start, completion, batch


@dataclass(frozen=True)
class FloorSpec:
    """The model both floors run: ``servers`` servers, each application routed to the
    servers listed for it (indexes into ``range(servers)``), a fixed service time per batch."""

    servers: int
    routes: Mapping[int, Sequence[int]]
    service_s: float
    max_batch: int

    def __post_init__(self) -> None:
        if self.servers < 1 or self.max_batch < 1 or self.service_s <= 0:
            raise ValueError(f"floor: servers, max_batch and service_s must be positive, got {self}")
        for app, ks in self.routes.items():
            if not ks or any(not 0 <= k < self.servers for k in ks):
                raise ValueError(f"floor: application {app} routed to {list(ks)} of {self.servers} servers")


@dataclass(frozen=True)
class FloorRun:
    queries: int
    batches: int
    cpu_s: float
    mean_latency_s: float

    @property
    def rate(self) -> float:
        """Queries per CPU second."""
        return self.queries / max(self.cpu_s, 1e-12)

    @property
    def mean_batch(self) -> float:
        return self.queries / max(self.batches, 1)


class _Server:
    __slots__ = ("busy", "index", "queue")

    def __init__(self, index: int) -> None:
        self.index = index
        self.queue: deque[tuple[int, int, float]] = deque()
        self.busy = False


def _take(queue: deque[tuple[int, int, float]], max_batch: int) -> list[tuple[int, int, float]]:
    if len(queue) <= max_batch:
        batch = list(queue)
        queue.clear()
        return batch
    return [queue.popleft() for _ in range(max_batch)]


def _finish(records: list[Record], started: float, t0: float, n: int) -> FloorRun:
    cpu = time.process_time() - t0
    if len(records) != n:
        raise AssertionError(f"floor: {len(records)} outcomes for {n} arrivals")
    latency = sum(r[5] - r[3] for r in records) / max(n, 1)
    return FloorRun(queries=n, batches=int(started), cpu_s=cpu, mean_latency_s=latency)


def simpy_callback_floor(times: np.ndarray, apps: np.ndarray, spec: FloorSpec) -> FloorRun:
    """The model on SimPy with callbacks: one ``Timeout`` per arrival and per batch."""
    t0 = time.process_time()
    env = simpy.Environment()
    timeout = env.timeout
    t: list[float] = times.tolist()
    a: list[int] = apps.tolist()
    n = len(t)
    servers = [_Server(k) for k in range(spec.servers)]
    route = {app: tuple(servers[k] for k in ks) for app, ks in spec.routes.items()}
    service, max_batch = spec.service_s, spec.max_batch
    records: list[Record] = []
    record = records.append
    started = [0]

    def start(srv: _Server) -> None:
        batch = _take(srv.queue, max_batch)
        srv.busy = True
        started[0] += 1
        timeout(service, (srv, batch, env.now)).callbacks.append(done)

    def done(ev: simpy.Event) -> None:
        payload: Any = ev.value
        srv, batch, began = payload
        now, size, k = env.now, len(batch), srv.index
        for qid, app, arrival in batch:
            record((qid, app, k, arrival, began, now, size))
        if srv.queue:
            start(srv)
        else:
            srv.busy = False

    def arrive(ev: simpy.Event) -> None:
        i: int = cast(int, ev.value)
        app = a[i]
        srvs = route[app]
        srv = srvs[i % len(srvs)]
        srv.queue.append((i, app, env.now))
        if not srv.busy:
            start(srv)
        j = i + 1
        if j < n:
            delay = t[j] - env.now
            timeout(delay if delay > 0 else 0.0, j).callbacks.append(arrive)

    if n:
        timeout(t[0], 0).callbacks.append(arrive)
    env.run()
    return _finish(records, started[0], t0, n)


def heapq_floor(times: np.ndarray, apps: np.ndarray, spec: FloorSpec) -> FloorRun:
    """The model as a plain event loop: a heap of (time, sequence, kind, payload)."""
    t0 = time.process_time()
    t: list[float] = times.tolist()
    a: list[int] = apps.tolist()
    n = len(t)
    servers = [_Server(k) for k in range(spec.servers)]
    route = {app: tuple(servers[k] for k in ks) for app, ks in spec.routes.items()}
    service, max_batch = spec.service_s, spec.max_batch
    records: list[Record] = []
    record = records.append
    heap: list[tuple[float, int, int, Any]] = []
    push, pop = heapq.heappush, heapq.heappop
    seq = itertools.count()
    started = 0
    now = 0.0

    def start(srv: _Server) -> None:
        batch = _take(srv.queue, max_batch)
        srv.busy = True
        push(heap, (now + service, next(seq), 1, (srv, batch, now)))

    if n:
        push(heap, (t[0], next(seq), 0, 0))
    while heap:
        now, _, kind, x = pop(heap)
        if kind == 0:
            i: int = x
            app = a[i]
            srvs = route[app]
            srv = srvs[i % len(srvs)]
            srv.queue.append((i, app, now))
            if not srv.busy:
                start(srv)
                started += 1
            j = i + 1
            if j < n:
                push(heap, (max(t[j], now), next(seq), 0, j))
        else:
            srv, batch, began = x
            size, k = len(batch), srv.index
            for qid, app, arrival in batch:
                record((qid, app, k, arrival, began, now, size))
            if srv.queue:
                start(srv)
                started += 1
            else:
                srv.busy = False
    return _finish(records, started, t0, n)
