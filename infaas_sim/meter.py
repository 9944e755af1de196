"""Per-second counters: arrivals that policies read as recent load, and busy unit-seconds.

A count that covers an interval of time (a batch's busy time) is spread over the seconds the
interval covers (:meth:`RateMeter.add_span`), so that no second holds more than it could: a
2.5 s batch on 8 cores adds 8 core-seconds to each second it ran through, not 20 to the one it
ended in.
"""

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

    def add_span(self, key: int, start: float, end: float, rate: float) -> None:
        """Add ``rate`` per second of ``[start, end)`` to the seconds that interval covers."""
        s0 = int(start)
        s1 = int(end)
        if s0 == s1:
            # The common case (a batch within one second): one add of the same product as a
            # whole-batch add, so the stored numbers are what they were before spreading.
            self.add(key, end, (end - start) * rate)
            return
        lst = self._counts.get(key)
        if lst is None:
            lst = self._counts[key] = []
        if s1 >= len(lst):
            lst.extend([0.0] * (s1 + 1 - len(lst)))
        lst[s0] += (s0 + 1 - start) * rate
        for s in range(s0 + 1, s1):
            lst[s] += rate
        lst[s1] += (end - s1) * rate

    def counts(self, key: int) -> list[float]:
        """Every second's count of ``key`` from second 0 to the last with one (a copy)."""
        return list(self._counts.get(key, ()))

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
