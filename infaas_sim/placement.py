"""Where replicas fit: the placement bookkeeping every policy plans with, written once.

Two rules, each stated here and nowhere else:

- **The cluster's own placement** (:class:`KindRoom`): a load goes to the first worker of its
  kind, ready before starting, then the most free units, the most free memory, the lowest id,
  that fits it (:meth:`infaas_sim.cluster.Worker.fits`). A policy that routes a query into a
  load it does not place itself reads this to know where (and how soon) the load would run.
- **A policy's plan within one tick** (:class:`TickRoom` for the INFaaS family,
  :class:`Room` for the baselines): what the tick's own loads and unloads take, on top of what
  the view shows. CPU replicas hold cores, Inferentia replicas NeuronCores, and a GPU replica
  **one device** (:func:`free_devices`): the cluster time-shares a GPU worker's devices by
  memory, so a second replica placed on the same device adds memory use but no throughput; a
  plan that counts devices never puts two replicas meant to add capacity on one device.

``TickRoom`` is strict (memory and units, and at most ``caps[kind]`` replicas of one variant
per worker) and counts starting workers; ``Room`` adds worker pools (a dedicated deployment's
VMs) and the workers a tick has asked for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from infaas_sim.hardware import HardwareKind, InstanceType
from infaas_sim.variant import Variant
from infaas_sim.view import ClusterView, InstanceState, WorkerState, WorkerView

_READY = InstanceState.READY
_INF = math.inf


def replica_units(variant: Variant) -> float:
    """Capacity units one replica holds for placement and pricing: cores on CPU, NeuronCores
    on Inferentia, one device on GPU (a replica that needs a GPU's throughput holds it)."""
    return 1.0 if variant.hardware is HardwareKind.GPU else float(variant.allocation)


def worker_memory_mb(itype: InstanceType) -> float:
    """Memory a worker offers to instances, as the cluster counts it."""
    if itype.kind is HardwareKind.CPU:
        return float(itype.memory_mb)
    if itype.kind is HardwareKind.GPU:
        return float(itype.accelerator_memory_mb * itype.accelerators)
    return float(itype.accelerator_memory_mb)


def free_devices(w: WorkerView) -> int:
    """GPU devices of ``w`` a policy may still plan a replica onto: one device per replica."""
    return w.itype.accelerators - len(w.instance_views())


class KindRoom:
    """One hardware kind's workers that can take a load, as the cluster's placement rule
    orders them (ready before starting, then the most free units, then the most free memory,
    then the lowest id): the first that fits a variant is where the cluster would put it."""

    __slots__ = ("full", "live", "max_memory", "max_units", "startup_s", "workers")

    def __init__(self, view: ClusterView, kind: HardwareKind) -> None:
        ws = view.workers(kind)
        self.live = len(ws)
        self.full = self.live >= view.max_workers(kind)  # no worker of the kind may be added
        self.startup_s = view.instance_type_for(kind).startup_s
        rows = []
        for w in ws:
            if w.state not in (WorkerState.READY, WorkerState.STARTING):
                continue
            mem, units = w.free_memory_mb(), w.free_units()
            rows.append(((0 if w.state is WorkerState.READY else 1, -units, -mem), mem, units, w.ready_at, w.wid))
        rows.sort(key=lambda r: (r[0], r[4]))
        self.workers = rows
        # a worker fits a variant only if its memory and its units do: none fits beyond these
        self.max_memory = max((r[1] for r in rows), default=-_INF)
        self.max_units = max((r[2] for r in rows), default=-_INF)


class TickRoom:
    """The INFaaS family's placement within one tick: what the tick's own loads and unloads
    change. Strict rule: memory, plus cores (CPU) / NeuronCores (Inferentia) / one device per
    replica (GPU), and at most ``caps[kind]`` replicas of one variant per worker. Workers that
    are starting count: a load placed there starts when they are up."""

    def __init__(self, view: ClusterView, caps: Mapping[HardwareKind, int] | None = None) -> None:
        self.view = view
        self.caps = dict(caps or {})
        self.delta: dict[int, list[float]] = {}  # wid -> [memory, units] taken this tick
        self.added: dict[tuple[int, int], int] = {}  # (wid, variant) -> replicas placed this tick
        self._workers: dict[HardwareKind, list[WorkerView]] = {}

    def workers(self, kind: HardwareKind) -> list[WorkerView]:
        ws = self._workers.get(kind)
        if ws is None:
            ws = [w for w in self.view.workers(kind) if w.state in (WorkerState.READY, WorkerState.STARTING)]
            self._workers[kind] = ws
        return ws

    def free(self, w: WorkerView) -> tuple[float, float]:
        d = self.delta.get(w.wid, (0.0, 0.0))
        gpu = w.kind is HardwareKind.GPU
        units = float(free_devices(w)) if gpu else w.free_units()
        return w.free_memory_mb() - d[0], units - d[1]

    def copies(self, w: WorkerView, vi: int) -> int:
        here = sum(1 for i in w.instance_views() if i.vi == vi and i.state in (_READY, InstanceState.LOADING))
        return here + self.added.get((w.wid, vi), 0)

    def take(self, wid: int, memory: float, units: float) -> None:
        d = self.delta.setdefault(wid, [0.0, 0.0])
        d[0] += memory
        d[1] += units

    def fits(self, w: WorkerView, v: Variant, vi: int) -> int:
        """How many more replicas of ``v`` fit on ``w``."""
        mem, units = self.free(w)
        if mem < 0 or units < 0:
            return 0
        n = int(min(mem / v.memory_mb, units / replica_units(v)) + 1e-9)
        return max(0, min(n, self.caps.get(v.hardware, n) - self.copies(w, vi)))

    def place(self, v: Variant, vi: int) -> int | None:
        """Reserve room for one replica of ``v``: the worker with the most headroom (ready
        before starting), or None."""
        best: WorkerView | None = None
        best_key: tuple[int, float, float] = (2, 0.0, 0.0)
        for w in self.workers(v.hardware):
            if self.fits(w, v, vi) >= 1:
                mem, units = self.free(w)
                key = (0 if w.state is WorkerState.READY else 1, -units, -mem)
                if best is None or key < best_key:
                    best, best_key = w, key
        if best is None:
            return None
        self.take(best.wid, v.memory_mb, replica_units(v))
        self.added[(best.wid, vi)] = self.added.get((best.wid, vi), 0) + 1
        return best.wid

    def wait_s(self, v: Variant, vi: int, n: int, new_s: float, step_s: float) -> float:
        """Seconds before ``n`` more replicas of ``v`` can start loading: 0 where ready workers
        take them, the start-up left of the starting workers that do; else new workers, the
        first after ``new_s``, each further one ``step_s`` later (the VM autoscaler starts one
        at a time); inf where the kind may not add enough."""
        if n <= 0:
            return 0.0
        now = self.view.now
        got = 0
        for left, w in sorted(((max(0.0, w.ready_at - now), w) for w in self.workers(v.hardware)),
                              key=lambda x: (x[0], x[1].wid)):  # fmt: skip
            got += self.fits(w, v, vi)
            if got >= n:
                return left
        per = self.per_worker(v, vi)
        k = math.ceil((n - got) / per) if per > 0 else _INF
        if k > self.view.max_workers(v.hardware) - len(self.view.workers(v.hardware)):
            return _INF
        return new_s + (k - 1) * step_s

    def per_worker(self, v: Variant, vi: int) -> int:
        """Replicas of ``v`` one new worker of its kind takes."""
        itype = self.view.instance_type_for(v.hardware)
        per = int(min(worker_memory_mb(itype) / v.memory_mb, itype.capacity_units / replica_units(v)) + 1e-9)
        return min(per, self.caps.get(v.hardware, per))

    def count(self, v: Variant, vi: int, limit: int, new_workers: bool = False) -> int:
        """How many more replicas of ``v`` the live workers can take (up to ``limit``): what
        INFaaS's worker-local autoscaler checks before it replicates; with ``new_workers``,
        also on the workers the kind may still add."""
        n = 0
        for w in self.workers(v.hardware):
            n += self.fits(w, v, vi)
            if n >= limit:
                return limit
        if new_workers:
            per = self.per_worker(v, vi)
            n += per * max(0, self.view.max_workers(v.hardware) - len(self.view.workers(v.hardware)))
        return min(n, limit)


class Room:
    """One tick's placement bookkeeping: GPU devices and memory that this tick's loads take,
    workers asked for, and the hardware kinds this tick adds to (whose idle workers stay)."""

    def __init__(self, view: ClusterView) -> None:
        self.view = view
        self.taken: dict[int, list[float]] = {}  # wid -> [devices, memory MB] taken this tick
        self.units: dict[int, float] = {}  # wid -> cores taken (+) or freed (-) this tick
        # devices on workers asked for this tick, per (kind, worker pool)
        self.coming: dict[tuple[HardwareKind, str | None], int] = {}
        self.growing: set[tuple[HardwareKind, str | None]] = set()  # (kind, worker pool) added to

    def grow(self, kind: HardwareKind, pool: str | None = None) -> None:
        """Note that this tick adds replicas of ``kind`` in ``pool`` (its idle workers stay)."""
        self.growing.add((kind, pool))

    def grows(self, w: WorkerView) -> bool:
        """This tick adds replicas that may go to worker ``w``."""
        return (w.kind, w.pool) in self.growing

    def gpu_worker(self, v: Variant, pool: str | None = None) -> int | None:
        """A ready (else starting) GPU worker of ``pool`` with a device and memory free for ``v``."""
        best: tuple[int, int, int] | None = None
        for w in self.view.pool_workers(pool, HardwareKind.GPU):
            if w.state not in (WorkerState.READY, WorkerState.STARTING):
                continue
            t = self.taken.get(w.wid, [0.0, 0.0])
            devices = free_devices(w) - int(t[0])
            if devices <= 0 or w.free_memory_mb() - t[1] + 1e-9 < v.memory_mb:
                continue
            key = (0 if w.state is WorkerState.READY else 1, -devices, w.wid)
            if best is None or key < best:
                best = key
        if best is None:
            return None
        t = self.taken.setdefault(best[2], [0.0, 0.0])
        t[0] += 1
        t[1] += v.memory_mb
        return best[2]

    def free_cores(self, wid: int) -> float:
        return self.view.worker(wid).free_units() - self.units.get(wid, 0.0)

    def take_cores(self, wid: int, cores: float) -> None:
        self.units[wid] = self.units.get(wid, 0.0) + cores
