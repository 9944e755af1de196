"""Stopping a run early, on SIGINT (Ctrl-C) or SIGTERM, without losing what it has.

The signal handler only records the request; the run loop reads it at its next timeline sample
(every simulated second, so within about a second of wall time in real mode and much less in
simulation) and stops there, between events, with every query accounted for: the ones still
queued or running fail with the reason. The run's outputs are then written as usual, with
``"complete": false`` and the reason in ``summary.json``. A second signal while stopping
interrupts at once (Python's default behaviour for SIGINT).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class Interrupted(Exception):
    """Raised inside the run loop when a stop was requested."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Stop:
    reason: str | None = None
    signum: int | None = None


STOP = _Stop()


def request_stop(reason: str, signum: int | None = None) -> None:
    STOP.reason, STOP.signum = reason, signum


def clear() -> None:
    STOP.reason, STOP.signum = None, None


def check() -> None:
    """Raise :class:`Interrupted` if a stop was requested (the run loop calls this)."""
    if STOP.reason is not None:
        raise Interrupted(STOP.reason)


@contextlib.contextmanager
def stop_on_signals(signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Within the block, SIGINT / SIGTERM request a stop instead of killing the run."""
    if threading.current_thread() is not threading.main_thread():  # handlers live on the main thread
        yield
        return
    clear()

    def handler(signum: int, frame: FrameType | None) -> None:
        if STOP.reason is not None:  # asked twice: stop now
            raise KeyboardInterrupt
        request_stop(f"interrupted by {signal.Signals(signum).name}", signum)

    old = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
