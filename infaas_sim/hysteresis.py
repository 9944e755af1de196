"""The delays autoscalers put around their decisions, written once (as Ray Serve writes its
upscale / downscale delays around a pure policy function).

- :class:`HoldDown`: an action is due only after ``n`` consecutive checks agree (INFaaS's
  scale-down and downgrade hold-downs, InfAdapter's scale-down votes). A check that does
  not agree resets the count; with a *target*, a check for a different target restarts it
  at one (the same move must be wanted throughout).
- :class:`Cooldown`: after an action, the next waits ``s`` seconds (INFaaS's VM back-off,
  SageMaker's scale-in cooldown).
- :func:`stabilize`: a recommendation bounded by the recent ones (Kubernetes HPA's
  stabilisation windows): at least the lowest of the scale-up window, at most the highest of
  the scale-down window.
- :class:`ScaleInWindow`: the same scale-down window for a vector of recommendations (one per
  pipeline stage) kept across calls: scale in no further than the highest of the window's
  (Themis's scale-in agreement).

Each is keyed (per variant, per deployment, per hardware kind), so one object serves a
policy's every key.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class HoldDown(Generic[K]):
    """Consecutive agreeing checks per key."""

    __slots__ = ("_count", "_target")

    def __init__(self) -> None:
        self._count: dict[K, int] = {}
        self._target: dict[K, Hashable] = {}

    def count(self, key: K) -> int:
        return self._count.get(key, 0)

    def reset(self, key: K) -> None:
        self._count[key] = 0

    def agree(self, key: K, checks: int, target: Hashable = None) -> bool:
        """One more check agrees (for ``target``, if given: a different target than the last
        check's restarts the count at one). True when this makes ``checks`` in a row; the
        count then restarts, so the next action needs as many again."""
        if target is not None and self._target.get(key) != target:
            self._target[key] = target
            n = 1
        else:
            n = self._count.get(key, 0) + 1
        if n >= checks:
            self._count[key] = 0
            return True
        self._count[key] = n
        return False


class Cooldown(Generic[K]):
    """Seconds to wait after an action, per key."""

    __slots__ = ("_last", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self._last: dict[K, float] = {}

    def ready(self, key: K, now: float) -> bool:
        """At least ``seconds`` since the key's last action (or it never acted)."""
        return now - self._last.get(key, -math.inf) >= self.seconds

    def until(self, key: K) -> float:
        """When the key may act again (-inf: it never acted)."""
        return self._last.get(key, -math.inf) + self.seconds

    def acted(self, key: K, now: float) -> None:
        self._last[key] = now


class ScaleInWindow:
    """Recommendations of the last ``seconds`` (the current one included), per component."""

    __slots__ = ("_items", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self._items: deque[tuple[float, Sequence[int]]] = deque()

    def clear(self) -> None:
        self._items.clear()

    def floor(self, now: float, recommendation: Sequence[int]) -> list[int]:
        """Add ``recommendation`` at ``now``; return, per component, the highest of those made
        at ``now - seconds`` or later (within 1e-9 s): how far a scale-in may go."""
        items = self._items
        items.append((now, recommendation))
        while items and items[0][0] < now - self.seconds - 1e-9:
            items.popleft()
        return [max(r[k] for _, r in items) for k in range(len(recommendation))]


def stabilize(history: Sequence[tuple[float, int]], now: float, current: int, recommendation: int,
              up_window_s: float = 0.0, down_window_s: float = 300.0) -> int:  # fmt: skip
    """HPA's stabilisation: at least the lowest recommendation of the scale-up window and at
    most the highest of the scale-down window (``history``: earlier (time, recommendation)
    pairs; the current ``recommendation`` counts in both), starting from ``current``."""
    up = down = recommendation
    for t, r in history:
        if t > now - up_window_s:
            up = min(up, r)
        if t > now - down_window_s:
            down = max(down, r)
    return min(max(current, up), down)
