"""Clocks: SimPy's virtual time, or wall-clock time that wakes on completions from threads.

:class:`Clock` is the executors' side of time, the seam that keeps SimPy out of them: the
time now, a :class:`Completion` that resolves itself after a delay (a simulated load or batch),
one the executor resolves (a real runtime's), a call later, and, on wall-clock time, a
thread-safe :meth:`Clock.post` for runtime threads. Completions are SimPy events underneath;
only the core (the cluster, which waits on them) relies on that.

``WallClockEnvironment`` is a ``simpy.Environment`` whose ``now`` follows the wall clock
(optionally sped up by ``factor``). Its loop sleeps until the next scheduled event, but wakes
early when another thread posts a callback with :meth:`post` (a runtime thread finishing a
batch, a Ray future resolving); the callback then runs on the loop's thread at the current
wall time. The cluster code is the same on either environment.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any, Protocol

import simpy
from simpy.core import EmptySchedule

# How long before an event is due the loop stops sleeping and polls instead.
SPIN_S = 0.0003


class Completion(Protocol):
    """A load's or a batch's outcome, resolved once on the loop's thread: ``succeed`` with
    the result (a batch's runtime seconds, or (seconds, outputs)), or ``fail`` with the fault.
    ``defused``: a failure that is already accounted for (its queries failed another way)."""

    def succeed(self, value: Any = None) -> Any: ...
    def fail(self, exception: Exception) -> Any: ...
    @property
    def defused(self) -> bool: ...
    @defused.setter
    def defused(self, value: bool) -> None: ...


class Clock:
    """What an executor may do with time (given to :meth:`Executor.bind`)."""

    __slots__ = ("_env", "after", "pending")

    def __init__(self, env: simpy.Environment) -> None:
        self._env = env
        # Bound once: ``after`` runs once per simulated batch.
        self.after: Callable[[float], Completion] = env.timeout  # resolves itself ``seconds`` from now
        self.pending: Callable[[], Completion] = env.event  # resolved by the executor

    @property
    def now(self) -> float:
        return self._env.now

    @property
    def realtime(self) -> bool:
        """Wall-clock time, where runtime threads post their completions."""
        return isinstance(self._env, WallClockEnvironment)

    def call_later(self, seconds: float, fn: Callable[[], Any]) -> None:
        """Run ``fn()`` on the loop's thread ``seconds`` from now (0: after the current event)."""
        self._env.timeout(seconds).callbacks.append(lambda _e: fn())

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Thread-safe, wall-clock time only: run ``fn(*args)`` on the loop's thread soon."""
        env = self._env
        if not isinstance(env, WallClockEnvironment):
            raise TypeError("Clock.post needs wall-clock time (a WallClockEnvironment)")
        env.post(fn, *args)


class WallClockEnvironment(simpy.Environment):
    def __init__(self, factor: float = 1.0) -> None:
        super().__init__(initial_time=0.0)
        if factor <= 0:
            raise ValueError("factor must be > 0")
        self.factor = factor
        # The clock starts at the first step: set-up before the run (opening sessions,
        # starting Ray actors) does not eat into the trace's time.
        self._t0: float | None = None
        self._inbox: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.SimpleQueue()
        self.max_lag_s = 0.0  # how late the loop ran an event (for diagnostics)

    def wall(self) -> float:
        if self._t0 is None:
            return 0.0
        return (time.monotonic() - self._t0) * self.factor

    def start(self) -> None:
        """Start the clock now (the first :meth:`step` does it if nobody has)."""
        if self._t0 is None:
            self._t0 = time.monotonic()

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Thread-safe: run ``fn(*args)`` on the loop's thread as soon as possible."""
        self._inbox.put((fn, args))

    def _run_posted(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._now = max(self._now, self.wall())
        fn(*args)

    def step(self) -> None:
        self.start()
        while True:
            # Completions that already arrived run first, at the current wall time, but
            # only when no scheduled event is due before it (time never goes backwards).
            nxt = self.peek()
            wall = self.wall()
            if nxt <= wall:
                break
            if nxt == float("inf"):
                fn, args = self._inbox.get()
            else:
                # The OS wakes a timed wait up to ~0.2 ms late on a busy machine (docs/real_execution.md),
                # which every batch's timer pays; sleep until just before the event is due
                # and poll for the rest.
                wait = (nxt - wall) / self.factor - SPIN_S
                try:
                    fn, args = self._inbox.get(timeout=wait) if wait > 0 else self._inbox.get_nowait()
                except queue.Empty:
                    if wait <= 0:
                        # Polling: give the GIL away each round, or the runtime threads'
                        # callbacks wait out the interpreter's 5 ms switch interval.
                        time.sleep(0)
                    continue
            self._run_posted(fn, args)
            if self.peek() <= self._now:
                break
        self.max_lag_s = max(self.max_lag_s, self.wall() - self.peek())
        try:
            super().step()
        except EmptySchedule:
            raise
