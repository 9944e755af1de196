"""Clocks: SimPy's virtual time, or wall-clock time that wakes on completions from threads.

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
from typing import Any

import simpy
from simpy.core import EmptySchedule

# How long before an event is due the loop stops sleeping and polls instead.
SPIN_S = 0.0003


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
