"""Per-second arrival counters that policies read as recent load."""

from __future__ import annotations


class RateMeter:
    """Counts per key per whole second; rates are read over whole, finished seconds."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[int, list[float]] = {}

    def add(self, key: int, now: float, n: float = 1) -> None:
        # Hot path (several calls per query): the common case is a known key within the
        # current second, which raises nothing; a new key or second takes the slow path once.
        s = int(now)
        try:
            self._counts[key][s] += n
        except (KeyError, IndexError):
            lst = self._counts.get(key)
            if lst is None:
                lst = self._counts[key] = []
            if s >= len(lst):
                lst.extend([0.0] * (s + 1 - len(lst)))
            lst[s] += n

    def series(self, key: int, now: float, seconds: int) -> list[float]:
        """Counts of the last ``seconds`` finished seconds, oldest first, zero-padded."""
        end = int(now)
        lst = self._counts.get(key, [])
        out = [lst[s] if 0 <= s < len(lst) else 0.0 for s in range(end - seconds, end)]
        return out

    def rate(self, key: int, now: float, window_s: float) -> float:
        """Mean per-second count over the finished seconds of the last ``window_s``."""
        end = int(now)
        w = min(max(1, round(window_s)), end)
        if w <= 0:
            return 0.0
        lst = self._counts.get(key)
        if not lst:
            return 0.0
        return sum(lst[max(0, end - w) : end]) / w

    def total(self, key: int) -> float:
        return sum(self._counts.get(key, ()))
