"""INFaaS's VM-level autoscaler, as a component the ``infaas`` and ``infaas-ilp`` policies hold.

Every ``period_s`` (2 s), per hardware kind: a worker is added when the model autoscaler (or
the route) found no room for the kind, or when every ready worker is above ``high_util``
(80% CPU and GPU, 70% Inferentia); a worker below ``low_util`` (10%) for ``quiet_checks`` (15)
checks in a row is released, never below the kind's minimum and only where the policy says it
may be (:meth:`VmAutoscaler.run`'s ``releasable``); after an action the kind backs off
``backoff_s`` (30 s). ``scale_out``: ``one`` (the released rule: one worker per action) or
``demand`` (the workers the unplaced replicas need, in one step; not INFaaS: at 10k QPS the
released rule reaches 6 workers in 60 s).

The policy tells it what it could not place (:meth:`VmAutoscaler.want_room`) and, for
``demand``, how many workers' worth (:meth:`want_workers`, folded into a per-check peak by
:meth:`end_tick`); it asks :meth:`first_worker_in` when a new worker's replicas could start.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

from infaas_sim.hardware import HardwareKind
from infaas_sim.hysteresis import Cooldown
from infaas_sim.policy import Action, AddWorker, RemoveWorker
from infaas_sim.view import ClusterView, WorkerState, WorkerView

SCALE_OUT = ("one", "demand")


class VmAutoscaler:
    """The VM autoscaler's rule and its state across ticks."""

    def __init__(self, period_s: float, high_util: Mapping[HardwareKind, float], low_util: float,
                 quiet_checks: int, backoff_s: float, scale_out: str = "one") -> None:  # fmt: skip
        self.period_s = float(period_s)
        self.high_util = dict(high_util)
        self.low_util = float(low_util)
        self.quiet_checks = int(quiet_checks)
        self.backoff_s = float(backoff_s)
        self.scale_out = scale_out
        self._want_room: dict[HardwareKind, int] = {}  # placements that found no room, per kind
        # scale_out="demand": workers the unplaced replicas need, this tick (summed) and the
        # most of any tick since the last check
        self._want_workers: dict[HardwareKind, float] = {}
        self._want_peak: dict[HardwareKind, float] = {}
        self._quiet: dict[int, int] = {}  # per worker: low-utilisation checks in a row
        self._cooldown: Cooldown[HardwareKind] = Cooldown(self.backoff_s)  # per kind, after an action
        self._last = 0.0

    # --- what the policy tells it ------------------------------------------------------
    def want_room(self, kind: HardwareKind) -> None:
        """A replica of ``kind`` found no room."""
        self._want_room[kind] = self._want_room.get(kind, 0) + 1

    def want_workers(self, kind: HardwareKind, workers: float) -> None:
        """``workers`` workers' worth of ``kind`` replicas found no room this tick."""
        self._want_workers[kind] = self._want_workers.get(kind, 0.0) + workers

    def end_tick(self) -> None:
        """The tick's unplaced demand counts towards the next check's peak."""
        for kind, w in self._want_workers.items():
            self._want_peak[kind] = max(w, self._want_peak.get(kind, 0.0))
        self._want_workers.clear()

    def first_worker_in(self, kind: HardwareKind, now: float, startup_s: float) -> tuple[float, float]:
        """(seconds until a new worker of ``kind`` would be up, seconds between further ones)."""
        first = max(0.0, self._cooldown.until(kind) - now) + startup_s
        return first, 0.0 if self.scale_out == "demand" else self.backoff_s

    # --- the check ---------------------------------------------------------------------
    def due(self, now: float) -> bool:
        """Whether a check is due at ``now`` (every ``period_s``); if so, it counts as made."""
        if now - self._last >= self.period_s - 1e-9:
            self._last = now
            return True
        return False

    def run(self, view: ClusterView, kinds: Iterable[HardwareKind], actions: list[Action], allow_add: bool,
            releasable: Callable[[WorkerView], bool]) -> None:  # fmt: skip
        """One check: append the AddWorker / RemoveWorker actions it takes to ``actions``."""
        now = view.now
        live_ids: set[int] = set()
        for kind in kinds:
            ws = view.workers(kind)
            active = [w for w in ws if w.state in (WorkerState.READY, WorkerState.STARTING)]
            ready = [w for w in active if w.state is WorkerState.READY]
            utils = {w.wid: view.utilisation(w.wid, self.period_s) for w in ready}
            for w in ready:
                live_ids.add(w.wid)
                self._quiet[w.wid] = self._quiet.get(w.wid, 0) + 1 if utils[w.wid] < self.low_util else 0
            want = self._want_room.pop(kind, 0)
            peak = self._want_peak.pop(kind, 0.0)
            if not self._cooldown.ready(kind, now):
                if want:
                    self._want_room[kind] = want  # keep asking after the back-off
                    self._want_peak[kind] = peak
                continue
            hot = bool(ready) and all(u > self.high_util[kind] for u in utils.values())
            if allow_add and (want or hot) and len(active) < view.max_workers(kind):
                n = max(1, math.ceil(peak - 1e-9)) if self.scale_out == "demand" else 1
                n = min(n, view.max_workers(kind) - len(active))
                for _ in range(n):
                    actions.append(AddWorker(view.instance_type_for(kind).name))
                self._cooldown.acted(kind, now)
                continue
            if len(active) <= view.min_workers(kind):
                continue
            quiet = [w for w in ready if self._quiet.get(w.wid, 0) >= self.quiet_checks and releasable(w)]
            if quiet:
                w = min(quiet, key=lambda x: (len(x.instance_views()), utils[x.wid], x.wid))
                actions.append(RemoveWorker(w.wid))
                self._quiet.pop(w.wid, None)
                self._cooldown.acted(kind, now)
        for wid in [k for k in self._quiet if k not in live_ids]:
            del self._quiet[wid]
