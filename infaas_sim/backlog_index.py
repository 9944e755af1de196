"""Least-backlog dispatch over many replicas in O(log n) per query, with the choice of the
full scan (:func:`infaas_sim.dispatch.least_backlog`), bit for bit.

The scan returns the first idle replica in list order (no queued inputs, its estimated
batch end passed, ready), else the one with the least :meth:`backlog_s` (the first among
equals). A routable list only grows at its end and loses members in place, and instance
ids grow with every load, so list order is id order.

Between two changes of a replica (a query queued or dropped, a batch started or done, a
load started or done, a new batch limit or latency table), its backlog at time ``now`` is
``sum(a - now for each active anchor a) + W``: the anchors are its load's estimated end
(while loading) and its running batch's estimated end (while busy), active while still
ahead of ``now``; ``W`` is its queued work. So every replica sits in one of three heaps by
its number ``k`` of active anchors, keyed by ``C = sum(anchors) + W`` (backlog
``C - k * now``), and in an expiry heap by the time its form next changes (an anchor
passes, or a ready replica with nothing queued turns idle), when it is filed again.

A query reads the idle heap (the least id), or else each heap's least key, and then
evaluates the exact :meth:`backlog_s` of every replica within a rounding band of the least
bound (``C - k * now`` and the scan's ``(a - now) + W`` round differently), so the choice
is the scan's. Stale heap entries (a replica filed again, or gone) are skipped when met
and the heaps are rebuilt when stale entries outnumber the live ones.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from infaas_sim.view import InstanceState

if TYPE_CHECKING:
    from infaas_sim.cluster import Instance

_READY = InstanceState.READY
_LOADING = InstanceState.LOADING
_INF = float("inf")
_BAND = 1e-9  # relative: far above the few ulps by which the two forms of a backlog differ

Entry = tuple[float, int, int, "Instance"]  # (key, iid, revision, replica)


class BacklogIndex:
    """One routable list's replicas (see the module docstring). The cluster calls
    :meth:`add`, :meth:`remove` and :meth:`refile` as replicas change; a policy's dispatch
    calls :meth:`least`."""

    __slots__ = ("_entries", "_expiry", "_heaps", "_idle", "_members", "_rev")

    def __init__(self) -> None:
        self._members: dict[int, Instance] = {}
        self._rev: dict[int, int] = {}  # iid -> the revision its live entries carry
        self._idle: list[Entry] = []  # key: the id (list order)
        self._heaps: tuple[list[Entry], list[Entry], list[Entry]] = ([], [], [])  # by active anchors
        self._expiry: list[Entry] = []  # key: when the replica's form changes
        self._entries = 0  # in the heaps, live and stale

    def __len__(self) -> int:
        return len(self._members)

    # --- upkeep ------------------------------------------------------------------------
    def add(self, inst: Instance, now: float) -> None:
        self._members[inst.iid] = inst
        self.refile(inst, now)

    def remove(self, inst: Instance) -> None:
        if self._members.pop(inst.iid, None) is not None:
            self._rev[inst.iid] = -1  # its entries are stale

    def refile(self, inst: Instance, now: float) -> None:
        """File ``inst`` by its state at ``now`` (after any change the backlog reads)."""
        iid = inst.iid
        rev = self._rev.get(iid, 0) + 1
        self._rev[iid] = rev
        if self._entries > 8 * len(self._members) + 64:
            self._rebuild(now)  # files ``inst`` too
            return
        q = inst.queued_inputs
        ready = inst.state is _READY
        bu = inst.busy_until
        if q == 0 and ready and bu <= now:
            heapq.heappush(self._idle, (float(iid), iid, rev, inst))
            self._entries += 1
            return
        key = 0.0
        k = 0
        nxt = _INF
        if inst.state is _LOADING and inst.ready_at > now:
            key += inst.ready_at
            k += 1
            nxt = inst.ready_at
        if bu > now and (inst.busy or (q == 0 and ready)):  # a running batch's end, or turning idle
            if inst.busy:
                key += bu
                k += 1
            nxt = bu if bu < nxt else nxt
        if q:
            mb = inst.max_batch
            table = inst.latency_table
            rest = q % mb
            key += ((q // mb) * table[mb] + (table[rest] if rest else 0.0)) / 1000
        heapq.heappush(self._heaps[k], (key, iid, rev, inst))
        self._entries += 1
        if nxt < _INF:
            heapq.heappush(self._expiry, (nxt, iid, rev, inst))
            self._entries += 1

    def _rebuild(self, now: float) -> None:
        self._idle, self._heaps, self._expiry = [], ([], [], []), []
        self._rev = {}
        self._entries = 0  # at most two a member now: below the threshold, so no recursion
        for inst in list(self._members.values()):
            self.refile(inst, now)

    def _live(self, e: Entry) -> bool:
        return self._rev.get(e[1]) == e[2]

    # --- the query ---------------------------------------------------------------------
    def least(self, now: float) -> Instance | None:
        """The scan's choice at ``now`` (None: no replica)."""
        if not self._members:
            return None
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            e = heapq.heappop(expiry)
            self._entries -= 1
            if self._live(e):
                self.refile(e[3], now)
        idle = self._idle
        while idle:
            if self._live(idle[0]):
                return idle[0][3]
            heapq.heappop(idle)
            self._entries -= 1
        bound = _INF
        for k, heap in enumerate(self._heaps):
            while heap and not self._live(heap[0]):
                heapq.heappop(heap)
                self._entries -= 1
            if heap:
                b = heap[0][0] - k * now
                bound = b if b < bound else bound
        limit = bound + _BAND * (1.0 + abs(now) + abs(bound))
        best: Instance | None = None
        best_wait = 0.0
        for k, heap in enumerate(self._heaps):
            taken: list[Entry] = []
            while heap and heap[0][0] - k * now <= limit:
                e = heapq.heappop(heap)
                if not self._live(e):
                    self._entries -= 1
                    continue
                taken.append(e)
                inst = e[3]
                wait = inst.backlog_s(now)
                if best is None or wait < best_wait or (wait == best_wait and inst.iid < best.iid):
                    best, best_wait = inst, wait
            for e in taken:
                heapq.heappush(heap, e)
        return best
