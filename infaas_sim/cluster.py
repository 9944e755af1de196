"""The cluster model: workers (VMs) holding loaded variant instances, each with a batcher.

Plain objects driven by callbacks on a SimPy environment (no process per query): an arrival
is queued on an instance; an idle instance dispatches a batch when it is full or its oldest
query has waited ``max_wait_s``; the executor's event completes it. GPU workers time-share
their devices: co-located instances' batches queue for a device, as CUDA contexts do.

Every query that enters ends in exactly one record: served, or failed with its fault (a
crashed worker, a failed batch, the end of the run). Rejections happen before the cluster.
An instance unloaded (or whose worker is removed) while its worker is still starting keeps
the queries already queued on it: it loads when the worker is up, serves them, then frees.

Latency components of a served query: loading (until its instance was ready), batching (from
then until its batch closed: full, or its oldest query had waited ``max_wait_s``), queueing
(from the close until the batch started: the replica was busy, or a shared GPU device was).

Resources: a CPU instance holds ``cores`` of its worker's vCPUs; its latency at those cores
comes from the catalog's core profile (:meth:`Catalog.cpu_latency_table`), and a resize holds
the new cores at once and applies the new latency after ``resize_delay_s``. Inferentia
instances hold NeuronCores. GPU instances time-share their worker's devices (memory is the
limit), unless loaded with ``exclusive_device``: then one device is theirs alone.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import simpy

from infaas_sim.backlog_index import BacklogIndex
from infaas_sim.catalog import Catalog
from infaas_sim.dispatch import least_backlog
from infaas_sim.errors import ConfigError
from infaas_sim.hardware import HardwareKind, InstanceType
from infaas_sim.meter import RateMeter
from infaas_sim.metrics import AccountingError
from infaas_sim.policy import Action, AddWorker, Load, RemoveWorker, Resize, SetBatch, Unload
from infaas_sim.variant import Variant
from infaas_sim.view import InstanceState, WorkerState

if TYPE_CHECKING:
    from infaas_sim.executor import Executor
    from infaas_sim.metrics import Recorder
    from infaas_sim.query import Query
    from infaas_sim.reprofile import Reprofiler

# AWS bills Linux on-demand instances per second with a one-minute minimum.
BILLING_MINIMUM_S = 60.0
# Weight of the newest batch in an instance's observed-latency mean (our choice: about the
# last ten batches matter).
EWMA_ALPHA = 0.2
# Enum members bound once: reading ``InstanceState.READY`` goes through the enum class on
# every use (~60 ns on CPython 3.11), which the per-query and per-batch paths below avoid.
_LOADING = InstanceState.LOADING
_READY = InstanceState.READY
_DRAINING = InstanceState.DRAINING
_DEAD = InstanceState.DEAD
_GPU = HardwareKind.GPU
# A routable list this long is dispatched by an index (O(log n) a query) instead of a scan:
# below it the scan, which stops at the first idle replica, costs less than the upkeep.
INDEX_FROM = 32
_NO_ROUTES: dict[int, list[Instance]] = {}


def stage_key(app_index: int, stage: int) -> int:
    """The rate-meter key of one pipeline stage of an application (stages >= 1)."""
    return app_index * 1024 + stage


class Worker:
    """A VM of one instance type."""

    __slots__ = (
        "busy_meter",
        "device_busy",
        "device_waiters",
        "instances",
        "itype",
        "kind",
        "memory_used_mb",
        "pool",
        "ready_at",
        "released_at",
        "requested_at",
        "reserved_devices",
        "slowdown",
        "state",
        "units_used",
        "wid",
    )

    def __init__(self, wid: int, itype: InstanceType, now: float, startup_s: float, pool: str | None = None) -> None:
        self.wid = wid
        self.itype = itype
        self.kind = itype.kind
        self.pool = pool  # only loads of the same pool are placed here (None: of no pool)
        self.state = WorkerState.STARTING if startup_s > 0 else WorkerState.READY
        self.requested_at = now
        self.ready_at = now + startup_s
        self.released_at = math.inf
        self.memory_used_mb = 0.0
        self.units_used = 0.0  # cores (cpu) or NeuronCores (inferentia) allocated
        self.instances: list[Instance] = []
        self.device_busy = 0  # shared GPU devices running a batch now
        self.reserved_devices = 0  # GPU devices held by exclusive replicas
        self.device_waiters: deque[Instance] = deque()
        self.busy_meter = RateMeter()  # busy unit-seconds per second
        self.slowdown = 1.0

    # WorkerView
    def free_memory_mb(self) -> float:
        cap = self.itype.memory_mb if self.kind is HardwareKind.CPU else self.itype.accelerator_memory_mb
        if self.kind is HardwareKind.GPU:
            cap *= self.itype.accelerators
        return cap - self.memory_used_mb

    def free_units(self) -> float:
        if self.kind is HardwareKind.GPU:
            return float(self.shared_devices() - self.device_busy)
        return self.itype.capacity_units - self.units_used

    def shared_devices(self) -> int:
        """GPU devices that shared (non-exclusive) replicas time-share."""
        return self.itype.accelerators - self.reserved_devices

    def free_devices(self) -> int:
        """GPU devices no replica uses: what an exclusive replica can take."""
        shared_in_use = any(not i.exclusive for i in self.instances)
        return self.shared_devices() - (1 if shared_in_use else 0)

    def instance_views(self) -> Sequence[Instance]:
        return tuple(self.instances)

    def fits(self, variant: Variant, units: float, exclusive: bool = False) -> bool:
        if variant.hardware is not self.kind or self.state not in (WorkerState.READY, WorkerState.STARTING):
            return False
        if variant.memory_mb > self.free_memory_mb() + 1e-9:
            return False
        if self.kind is HardwareKind.GPU:
            # GPUs are time-shared (memory is the limit) unless a replica asks for a device
            # of its own; shared replicas need at least one device that is not reserved.
            return self.free_devices() >= 1 if exclusive else self.shared_devices() >= 1
        # Cores and NeuronCores are exclusive.
        return units <= self.itype.capacity_units - self.units_used + 1e-9

    def cost(self, now: float) -> float:
        end = min(now, self.released_at)
        return self.itype.price_per_second * max(BILLING_MINIMUM_S, end - self.requested_at)


class Instance:
    """A loaded replica of a variant on a worker, with its queue and batcher."""

    __slots__ = (
        "batches_done",
        "bix",
        "busy",
        "busy_start",
        "busy_time",
        "busy_until",
        "cluster",
        "cores",
        "device_wait_since",
        "drift",
        "due_at",
        "exclusive",
        "idle_since",
        "iid",
        "inflight",
        "inflight_inputs",
        "inputs_done",
        "last_batch_inputs",
        "last_batch_ms",
        "last_used",
        "latency_ratio",
        "latency_table",
        "max_batch",
        "max_wait_s",
        "pool",
        "queue",
        "queued_inputs",
        "ready_at",
        "resize_seq",
        "run_table",
        "state",
        "timer_at",
        "units",
        "variant",
        "vi",
        "worker",
    )

    def __init__(
        self,
        cluster: Cluster,
        iid: int,
        vi: int,
        variant: Variant,
        worker: Worker,
        cores: float,
        max_batch: int,
        max_wait_s: float,
        exclusive: bool = False,
    ) -> None:
        self.cluster = cluster
        self.iid = iid
        self.vi = vi
        self.variant = variant
        self.worker = worker
        self.pool = worker.pool  # a worker's pool never changes
        self.state = InstanceState.LOADING
        self.cores = cores
        # A GPU replica with a device of its own (exclusive) holds one device unit; shared
        # GPU replicas time-share the worker's other devices and hold no unit.
        self.exclusive = exclusive and variant.hardware is HardwareKind.GPU
        if variant.hardware is HardwareKind.GPU:
            self.units = 1.0 if self.exclusive else 0.0
        else:
            self.units = cores
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.queue: deque[Query] = deque()
        self.queued_inputs = 0
        self.inflight: list[Query] = []
        self.inflight_inputs = 0
        self.busy = False
        self.busy_start = 0.0
        self.busy_until = 0.0
        self.ready_at = math.inf
        self.idle_since = 0.0
        self.due_at = 0.0
        self.device_wait_since = -1.0
        self.timer_at = -1.0
        self.resize_seq = 0
        self.batches_done = 0
        self.inputs_done = 0
        self.busy_time = 0.0
        self.last_batch_ms = 0.0
        self.last_batch_inputs = 0
        self.latency_ratio = 1.0
        self.last_used = cluster.env.now
        # A drift fault: how many times slower than its profile this replica's hardware runs
        # (the simulated executor's factor; the policy never reads it).
        self.drift = cluster.drift_of(vi, variant.hardware)
        self.latency_table: list[float] = []
        self.run_table: list[float] = []
        self.bix: BacklogIndex | None = None  # the least-backlog index of its routable list, if any
        self._set_latency_table()

    @property
    def worker_id(self) -> int:
        return self.worker.wid

    def _set_latency_table(self) -> None:
        """``latency_table``: what the policy's catalog says this replica takes per batch size;
        ``run_table``: what the simulated hardware takes (the catalog the run started with:
        re-profiling changes only the former)."""
        cluster = self.cluster
        self.latency_table = self._table(self.variant, cluster.catalog)
        hw = cluster.hardware_catalog
        self.run_table = self.latency_table if hw is cluster.catalog else self._table(hw.variants[self.vi], hw)
        if self.bix is not None:
            self.bix.refile(self, cluster.env.now)

    def _table(self, v: Variant, catalog: Catalog) -> list[float]:
        if v.hardware is HardwareKind.CPU and self.cores != v.allocation:
            # The catalog's core profile: its rows of this model at other core counts,
            # interpolated, and Amdahl's law beyond them.
            return list(catalog.cpu_latency_table(self.vi, self.cores))
        return list(v.latency_by_batch)

    def latency_ms(self, batch: int) -> float:
        return self.latency_table[batch]

    def observed_latency_ms(self, batch: int) -> float:
        """Profiled latency at this allocation scaled by the recent observed / profiled ratio."""
        return self.latency_table[batch] * self.latency_ratio

    def arrival_rate(self, window_s: float) -> float:
        """Queries per second queued on this instance over the last ``window_s`` seconds."""
        return self.cluster.instance_meter.rate(self.iid, self.cluster.env.now, window_s)

    def backlog_s(self, now: float, pace: float = 1.0) -> float:
        """Estimated time until a query queued now would start: loading, the running batch,
        and the queued inputs in full batches, at ``pace`` times the profiled latency."""
        # Hot path (several calls per routed query): module-level constants and conditional
        # expressions instead of max()/divmod(); the arithmetic, and so every result, is the
        # same as max(0.0, x) (which keeps 0.0 for x <= 0 and NaN) and divmod.
        if self.state is _LOADING:
            t = self.ready_at - now
            t = t if t > 0.0 else 0.0
        else:
            t = 0.0
        if self.busy:
            # busy_until assumed the profiled latency: at another pace the batch ends elsewhere.
            d = (self.busy_until if pace == 1.0 else self.busy_start + (self.busy_until - self.busy_start) * pace) - now
            t += d if d > 0.0 else 0.0
        q = self.queued_inputs
        if q:
            mb = self.max_batch
            table = self.latency_table
            rest = q % mb
            t += pace * ((q // mb) * table[mb] + (table[rest] if rest else 0.0)) / 1000
        return t

    def admission_wait_s(self, now: float) -> float:
        """The wait a query queued now should expect, for admission: :meth:`backlog_s` (the
        instance's state: its worker's start-up and its own loading, the running batch, the
        queue in full batches) at the pace the instance really runs: the observed / profiled
        ratio of its recent batches, or its worker's slowdown if that is worse (a fault, a
        runtime slower than its profile)."""
        pace = self.latency_ratio if self.batches_done else 1.0
        slow = self.worker.slowdown
        return self.backlog_s(now, slow if slow > pace else pace)

    # --- batcher ------------------------------------------------------------------------
    def enqueue(self, q: Query, now: float) -> None:
        """Queue ``q`` at ``now`` (the caller's clock reading: one fewer per query)."""
        q.enqueued = now
        self.queue.append(q)
        self.queued_inputs += q.batch
        self.last_used = now
        if not self.busy and self.state is not _LOADING:
            self.try_dispatch()
            if self.busy:
                return  # dispatched: _dispatch filed it
        if self.bix is not None:
            self.bix.refile(self, now)

    def try_dispatch(self) -> None:
        st = self.state
        if self.busy or not self.queue or (st is not _READY and st is not _DRAINING):
            return
        env = self.cluster.env
        now = env.now
        if now - self.queue[0].enqueued > self.cluster.max_queue_s:
            self._drop_stale(now)
            if not self.queue:
                if st is _DRAINING:
                    self.cluster._finish_unload(self)
                return
        if self.queued_inputs < self.max_batch and self.max_wait_s > 0:
            head = self.queue[0]
            # The oldest query's wait counts from when it could first have run: its arrival
            # at the queue, or the instance's readiness if it came while loading.
            deadline = max(head.enqueued, self.ready_at) + self.max_wait_s
            if now < deadline:
                if self.timer_at != deadline:
                    self.timer_at = deadline
                    env.timeout(deadline - now).callbacks.append(self._on_timer)
                return
        w = self.worker
        if w.kind is _GPU and not self.exclusive:
            if w.device_busy >= w.shared_devices():
                if self.device_wait_since < 0:
                    self.device_wait_since = now
                    w.device_waiters.append(self)
                return
            w.device_busy += 1
            self.cluster.placement_epoch += 1
        self.device_wait_since = -1.0
        self._dispatch(now)

    def _drop_stale(self, now: float) -> None:
        """The wait bound holds for every query that runs: one that has waited past it (its
        instance slower than admission expected: a fault, a runtime slower than its profile)
        is dropped with the reason instead of run late, as IPA's queues drop requests past
        their deadline. So no served query waits longer than max_queue_s before its batch."""
        queue, bound = self.queue, self.cluster.max_queue_s
        rec = self.cluster.recorder
        while queue and now - queue[0].enqueued > bound:
            q = queue.popleft()
            self.queued_inputs -= q.batch
            reason = (
                f"dropped after waiting {now - q.enqueued:.3g} s for {self.variant.variant_id} on worker "
                f"{self.worker.wid}: over cluster.max_queue_s {bound:g} s"
            )
            rec.rejected(q, reason, now)
        if self.bix is not None:
            self.bix.refile(self, now)

    def _on_timer(self, _ev: simpy.Event) -> None:
        if self.timer_at <= self.cluster.env.now:
            self.timer_at = -1.0
            self.try_dispatch()

    def _dispatch(self, now: float) -> None:
        batch: list[Query] = []
        inputs = 0
        queue = self.queue
        limit = self.max_batch
        while queue and inputs + queue[0].batch <= limit:
            q = queue.popleft()
            inputs += q.batch
            batch.append(q)
        if not batch:  # a query larger than the batcher's limit (not the variant's) runs alone
            q = queue.popleft()
            inputs = q.batch
            batch.append(q)
        # When the batch closed: when it filled (its last query, or the next one that did not
        # fit, arrived) or its oldest query had waited max_wait_s, whichever came first. Time
        # before that is batching; time after it, until the batch starts, is queueing (for
        # the replica or for a shared GPU device).
        ready = self.ready_at
        head_avail = max(batch[0].enqueued, ready)
        if inputs >= limit:
            full_at = max(batch[-1].enqueued, ready)
        elif queue:
            full_at = max(queue[0].enqueued, ready)
        else:
            full_at = math.inf
        self.due_at = min(full_at, head_avail + self.max_wait_s)
        self.queued_inputs -= inputs
        self.busy = True
        self.inflight = batch
        self.inflight_inputs = inputs
        start = now
        self.busy_start = now
        self.busy_until = now + self.latency_table[min(inputs, len(self.latency_table) - 1)] / 1000
        # The clock makes every completion, as a SimPy event: the core waits on it as one (an
        # annotation, not a cast() call: this runs once per batch).
        ev: simpy.Event = self.cluster.executor.run(self, inputs, batch)  # type: ignore[assignment]
        ev.callbacks.append(lambda e: self._on_done(e, batch, inputs, start))
        if self.bix is not None:
            self.bix.refile(self, now)

    def _on_done(self, ev: simpy.Event, batch: list[Query], inputs: int, start: float) -> None:
        if self.state is _DEAD:
            return  # its queries were failed when the worker crashed
        cluster = self.cluster
        now = cluster.env.now
        self.busy = False
        self.inflight = []
        self.inflight_inputs = 0
        exec_s = now - start
        w = self.worker
        if w.kind is _GPU:
            if not self.exclusive:
                w.device_busy -= 1
                self.cluster.placement_epoch += 1
            w.busy_meter.add_span(0, start, now, 1.0)
        else:
            # Spread over the seconds the batch ran (a batch over 1 s is not all in its last).
            w.busy_meter.add_span(0, start, now, self.units)
        self.busy_time += exec_s
        # Recent observed batch latency: the last batch, and an exponentially weighted mean
        # of observed / profiled latency (so batches of any size compare; it shows slow-downs
        # and noise), which policies read through observed_latency_ms.
        self.last_batch_ms = exec_s * 1000
        self.last_batch_inputs = inputs
        ratio = self.last_batch_ms / self.latency_table[min(inputs, len(self.latency_table) - 1)]
        self.latency_ratio = EWMA_ALPHA * ratio + (1 - EWMA_ALPHA) * self.latency_ratio if self.batches_done else ratio
        if ev.ok:
            self.batches_done += 1
            self.inputs_done += inputs
            more = cluster.recorder.served_batch(batch, self, start, now, inputs, self.due_at)
            if more is not None:
                cluster.stages_done(more, now)
            rp = cluster.reprofiler
            if rp is not None:
                v = self.variant
                # A resized replica's table is interpolated from the core profile, not measured.
                if self.cores == v.allocation and inputs <= v.max_batch:
                    rp.observe(self.vi, inputs, self.last_batch_ms, v.latency_by_batch[inputs])
        else:
            ev.defused = True
            cluster.recorder.failed_batch(batch, f"batch failed on {self.variant.variant_id}: {ev.value}", now)
        self.idle_since = now
        if self.state is _DRAINING and not self.queue:
            cluster._finish_unload(self)
        else:
            self.try_dispatch()
        if self.bix is not None and not self.busy:  # (busy: dispatched again, and filed)
            self.bix.refile(self, now)
        if w.device_waiters:
            cluster._wake_device_waiters(w)


class Cluster:
    """Workers and instances on one environment; applies policies' actions."""

    def __init__(
        self,
        env: simpy.Environment,
        catalog: Catalog,
        executor: Executor,
        recorder: Recorder,
        instance_types: Mapping[str, InstanceType],
        type_by_kind: Mapping[HardwareKind, str],
        min_workers: Mapping[HardwareKind, int] | None = None,
        max_workers: Mapping[HardwareKind, int] | None = None,
        max_queue_s: float = 30.0,
        resize_delay_s: float = 1.0,
        default_max_wait_s: float = 0.0,
        reprofiler: Reprofiler | None = None,
    ) -> None:
        self.env = env
        self.catalog = catalog  # what policies read (re-profiling replaces it)
        # What the simulated hardware runs at: the profile as measured before the run.
        self.hardware_catalog = catalog
        self.executor = executor
        self.recorder = recorder
        self.instance_types = dict(instance_types)
        self.type_by_kind = dict(type_by_kind)
        for kind, tname in self.type_by_kind.items():
            if tname not in self.instance_types:
                raise ConfigError(f"cluster: instance type {tname!r} for {kind.value} workers is not defined")
            if self.instance_types[tname].kind is not kind:
                raise ConfigError(f"cluster: instance type {tname!r} is not a {kind.value} type")
        self.min_workers = {k: 0 for k in HardwareKind} | dict(min_workers or {})
        self.max_workers = {k: 1000 for k in HardwareKind} | dict(max_workers or {})
        self.max_queue_s = max_queue_s
        self.resize_delay_s = resize_delay_s
        self.default_max_wait_s = default_max_wait_s
        self.workers: dict[int, Worker] = {}
        self.instances: dict[int, Instance] = {}
        self.routable: dict[int, list[Instance]] = {}
        # The same instances by worker pool, then variant: what a pooled deployment routes to.
        self.routable_by_pool: dict[str | None, dict[int, list[Instance]]] = {}
        self.variant_meter = RateMeter()
        self.variant_input_meter = RateMeter()
        self.app_meter = RateMeter()
        self.total_meter = RateMeter()
        self.instance_meter = RateMeter()  # queries queued per instance id
        self.stage_meter = RateMeter()  # pipeline stages >= 1 submitted, per stage_key
        self.unplaced_loads = 0
        self.unplaced_by_kind: dict[HardwareKind, int] = {}
        self.action_log: list[tuple[float, str]] = []
        # Called with (query, now) for each pipeline query whose non-final stage completed:
        # the controller, which submits the next stage.
        self.on_stage_done: Callable[[Query, float], None] | None = None
        self.reprofiler = reprofiler  # online re-profiling (infaas_sim/reprofile.py)
        # drift faults: slow-down factors by hardware kind and by variant index
        self.drift_by_kind: dict[HardwareKind, float] = {}
        self.drift_by_variant: dict[int, float] = {}
        # Indexes that keep placement and start-up linear (issue 16: 10,000 workers took 48 s):
        # live workers (not released or crashed) and active ones (live, not draining) per kind,
        # and per (kind, pool) the workers a load could go to (ready or starting, with free
        # cores / NeuronCores; GPUs: any), by id.
        self._live: dict[HardwareKind, int] = dict.fromkeys(HardwareKind, 0)
        self._active: dict[HardwareKind, int] = dict.fromkeys(HardwareKind, 0)
        self._room: dict[tuple[HardwareKind, str | None], dict[int, Worker]] = {}
        self._next_wid = 0
        self._next_iid = 0
        # Bumped whenever what a placement reads of a worker can change (state, free memory,
        # units or GPU devices): a policy may keep what it read of the workers while it holds.
        self.placement_epoch = 0
        # Least-backlog indexes of the routable lists that grew long enough to want one.
        self._bix: dict[tuple[str | None, int], BacklogIndex] = {}

    # --- reading ------------------------------------------------------------------------
    def live_count(self, kind: HardwareKind) -> int:
        """Workers of ``kind`` not released or crashed (draining ones included)."""
        return self._live[kind]

    def least_backlog(self, vi: int, pool: str | None) -> Instance | None:
        """:func:`infaas_sim.dispatch.least_backlog` over the routable replicas of ``vi`` on
        workers of ``pool``, the same choice: a scan while the list is short, then an index
        that answers in O(log n) (:mod:`infaas_sim.backlog_index`)."""
        now = self.env.now
        idx = self._bix.get((pool, vi))
        if idx is None:
            lst = self.routable_by_pool.get(pool, _NO_ROUTES).get(vi, ())
            if len(lst) < INDEX_FROM:
                return least_backlog(lst, now)
            idx = self._bix[(pool, vi)] = BacklogIndex()
            for inst in lst:
                inst.bix = idx
                idx.add(inst, now)
        return idx.least(now)

    def _touch(self, w: Worker) -> None:
        """Keep ``w``'s membership of the placement index current after its state or room
        changed. Membership is a necessary condition of ``Worker.fits`` (which ``place``
        still checks), so the index only skips workers that cannot take a load."""
        self.placement_epoch += 1
        room = self._room.setdefault((w.kind, w.pool), {})
        if w.state in (WorkerState.READY, WorkerState.STARTING) and (
            w.kind is HardwareKind.GPU or w.itype.capacity_units - w.units_used > 1e-9
        ):
            room[w.wid] = w
        else:
            room.pop(w.wid, None)

    def live_workers(self) -> list[Worker]:
        return [w for w in self.workers.values() if w.state not in (WorkerState.RELEASED, WorkerState.CRASHED)]

    def worker_utilisation(self, wid: int, window_s: float) -> float:
        w = self.workers[wid]
        now = self.env.now
        start = max(w.ready_at, now - window_s)
        span = now - start
        if span <= 0:
            return 0.0
        busy = w.busy_meter.rate(0, now, span) * min(span, int(now)) / span if int(now) > 0 else 0.0
        return min(1.0, busy / w.itype.capacity_units)

    def cost(self) -> float:
        now = self.env.now
        return sum(w.cost(now) for w in self.workers.values())

    # --- profiles and drift ---------------------------------------------------------------
    def drift_of(self, vi: int, kind: HardwareKind) -> float:
        """How many times slower than its profile variant ``vi`` on ``kind`` runs now."""
        return self.drift_by_kind.get(kind, 1.0) * self.drift_by_variant.get(vi, 1.0)

    def drift(self, factor: float, kind: HardwareKind | None = None, variant_id: str | None = None) -> None:
        """From now on, ``kind`` (or variant ``variant_id``) runs ``factor`` times slower than
        its profile; running batches keep the time they started with. Policies are not told."""
        if variant_id is not None:
            vi = self.catalog.index_of.get(variant_id)
            if vi is None:
                raise ConfigError(f"fault drift: unknown variant {variant_id!r} in catalog {self.catalog.name}")
            self.drift_by_variant[vi] = self.drift_by_variant.get(vi, 1.0) * factor
            what = variant_id
        elif kind is not None:
            self.drift_by_kind[kind] = self.drift_by_kind.get(kind, 1.0) * factor
            what = f"{kind.value} hardware"
        else:
            raise ConfigError("fault drift needs a hardware kind or a variant")
        for inst in self.instances.values():
            inst.drift = self.drift_of(inst.vi, inst.variant.hardware)
        self.action_log.append((self.env.now, f"drift {what} x{factor:g} (the profiles are unchanged)"))

    def use_catalog(self, catalog: Catalog) -> None:
        """A new catalog (variants added while serving): what policies read and the hardware
        runs at; instances keep their tables."""
        self.catalog = self.hardware_catalog = catalog

    def reprofile(self) -> Catalog | None:
        """Apply the re-profiler's pending updates: a new catalog for the policies (the
        hardware's is unchanged), the new tables for the instances of each updated variant,
        and an action line per update. None when nothing changed."""
        rp = self.reprofiler
        if rp is None or not rp.pending:
            return None
        old = self.catalog
        cat, updates = rp.apply(old)
        self.catalog = cat
        changed = {u.vi for u in updates}
        for inst in self.instances.values():
            if inst.vi in changed:
                inst.variant = cat.variants[inst.vi]
                inst._set_latency_table()
        now = self.env.now
        for u in updates:
            what = f"{u.old_ms:.4g} ms -> {u.new_ms:.4g} ms (median of {u.samples} served batches)"
            what += f"; table x{u.new_ms / u.old_ms:.3g}"
            self.action_log.append((now, f"reprofile {old.variants[u.vi].variant_id} batch {u.batch}: {what}"))
        return cat

    # --- workers ------------------------------------------------------------------------
    def add_worker(self, type_name: str, instant: bool = False, pool: str | None = None) -> Worker | None:
        if type_name not in self.instance_types:
            raise ConfigError(f"unknown instance type {type_name!r} (known: {', '.join(self.instance_types)})")
        itype = self.instance_types[type_name]
        if self._live[itype.kind] >= self.max_workers[itype.kind]:
            return None
        w = Worker(self._next_wid, itype, self.env.now, 0.0 if instant else itype.startup_s, pool)
        self._next_wid += 1
        self.workers[w.wid] = w
        self._live[w.kind] += 1
        self._active[w.kind] += 1
        self._touch(w)
        in_pool = "" if pool is None else f", pool {pool}"
        self.action_log.append((self.env.now, f"add worker {w.wid} ({type_name}{in_pool})"))
        if w.state is WorkerState.STARTING:
            self.env.timeout(itype.startup_s).callbacks.append(lambda _e: self._worker_ready(w))
        return w

    def _worker_ready(self, w: Worker) -> None:
        if w.state is WorkerState.STARTING:
            w.state = WorkerState.READY
            self.placement_epoch += 1
        elif w.state is not WorkerState.DRAINING:
            return  # released or crashed while starting
        for inst in list(w.instances):
            if inst.state is InstanceState.LOADING:
                self._start_load(inst)
            elif inst.state is InstanceState.DRAINING:
                # Unloaded while its worker was starting: queries already queued on it still
                # run (load, serve, then free); without any, it is freed now.
                if inst.queue:
                    self._start_load(inst)
                else:
                    self._finish_unload(inst)
        self._maybe_release(w)

    def remove_worker(self, wid: int) -> None:
        w = self.workers.get(wid)
        if w is None or w.state in (WorkerState.RELEASED, WorkerState.CRASHED, WorkerState.DRAINING):
            return
        if self._active[w.kind] <= self.min_workers[w.kind]:
            return
        self.action_log.append((self.env.now, f"remove worker {wid}"))
        # Unload first, while the worker's state still says whether it is starting (an
        # instance on a starting worker without queued work is freed at once), then drain.
        for inst in list(w.instances):
            self.unload(inst.iid)
        w.state = WorkerState.DRAINING
        self._active[w.kind] -= 1
        self._touch(w)
        self._maybe_release(w)

    def _maybe_release(self, w: Worker) -> None:
        if w.state is WorkerState.DRAINING and not w.instances:
            w.state = WorkerState.RELEASED
            self.placement_epoch += 1
            w.released_at = self.env.now
            self._live[w.kind] -= 1

    def slow_worker(self, wid: int, factor: float) -> None:
        """Worker ``wid`` runs ``factor`` times slower from now on (a straggler fault)."""
        w = self.workers.get(wid)
        if w is None:
            return
        w.slowdown *= factor
        self.action_log.append((self.env.now, f"slow down worker {wid} x{factor:g}"))

    def restore_worker(self, wid: int, factor: float) -> None:
        """End a :meth:`slow_worker` of ``factor``."""
        w = self.workers.get(wid)
        if w is not None:
            w.slowdown /= factor

    def crash_worker(self, wid: int, fault: str) -> None:
        """A worker dies: its queued and running queries fail with ``fault``."""
        w = self.workers.get(wid)
        if w is None or w.state in (WorkerState.RELEASED, WorkerState.CRASHED):
            return
        now = self.env.now
        self.action_log.append((now, f"crash worker {wid}: {fault}"))
        for inst in list(w.instances):
            doomed = list(inst.inflight) + list(inst.queue)
            inst.queue.clear()
            inst.queued_inputs = 0
            inst.inflight = []
            inst.inflight_inputs = 0
            inst.state = InstanceState.DEAD
            self._unroute(inst)
            self.instances.pop(inst.iid, None)
            self.executor.unload(inst)
            self.recorder.failed_batch(doomed, f"worker {wid} crashed: {fault}", now)
        w.instances.clear()
        w.device_waiters.clear()
        self._live[w.kind] -= 1
        if w.state is not WorkerState.DRAINING:
            self._active[w.kind] -= 1
        w.state = WorkerState.CRASHED
        w.released_at = now
        self._touch(w)

    # --- instances ----------------------------------------------------------------------
    def place(
        self,
        variant: Variant,
        units: float,
        prefer: int | None = None,
        exclusive: bool = False,
        pool: str | None = None,
    ) -> Worker | None:
        """The worker a new instance would go to: ``prefer`` if it fits, else the fitting
        worker with the most free units (ready before starting), else None. ``exclusive``:
        a GPU replica that needs a device no other replica uses. Only workers of ``pool``
        count (None: only workers of no pool)."""
        if prefer is not None:
            w = self.workers.get(prefer)
            return w if w is not None and w.pool == pool and w.fits(variant, units, exclusive) else None
        best: Worker | None = None
        best_key: tuple[int, float, float, int] = (2, 0.0, 0.0, 0)
        for w in self._room.get((variant.hardware, pool), {}).values():
            if w.fits(variant, units, exclusive):
                # ties: the lowest id (the first in the workers' order, as a scan of them all)
                key = (0 if w.state is WorkerState.READY else 1, -w.free_units(), -w.free_memory_mb(), w.wid)
                if best is None or key < best_key:
                    best, best_key = w, key
        return best

    def load(
        self,
        variant_id: str,
        worker_id: int | None = None,
        cores: float | None = None,
        max_batch: int | None = None,
        allow_new_worker: bool = True,
        instant: bool = False,
        exclusive_device: bool = False,
        pool: str | None = None,
    ) -> Instance | None:
        vi = self.catalog.index_of.get(variant_id)
        if vi is None:
            raise ConfigError(f"unknown variant {variant_id!r} in catalog {self.catalog.name}")
        variant = self.catalog.variants[vi]
        if variant.hardware not in self.type_by_kind:
            raise ConfigError(f"variant {variant_id!r} needs {variant.hardware.value} workers; none configured")
        c = variant.allocation if cores is None else float(cores)
        if c <= 0:
            raise ConfigError(f"load {variant_id}: cores must be > 0, got {cores}")
        exclusive = exclusive_device and variant.hardware is HardwareKind.GPU
        w = self.place(variant, c, worker_id, exclusive, pool)
        if w is None and worker_id is None and allow_new_worker:
            w = self.add_worker(self.type_by_kind[variant.hardware], instant=instant, pool=pool)
            if w is not None and not w.fits(variant, c, exclusive):
                raise ConfigError(f"variant {variant_id!r} does not fit on an empty {w.itype.name}")
        if w is None:
            self.unplaced_loads += 1
            self.unplaced_by_kind[variant.hardware] = self.unplaced_by_kind.get(variant.hardware, 0) + 1
            return None
        mb = variant.max_batch if max_batch is None else max(1, min(max_batch, variant.max_batch))
        inst = Instance(self, self._next_iid, vi, variant, w, c, mb, self.default_max_wait_s, exclusive)
        self._next_iid += 1
        self.instances[inst.iid] = inst
        w.instances.append(inst)
        w.memory_used_mb += variant.memory_mb
        w.units_used += inst.units
        if exclusive:
            w.reserved_devices += 1
        self._touch(w)
        self.routable.setdefault(vi, []).append(inst)
        self.routable_by_pool.setdefault(w.pool, {}).setdefault(vi, []).append(inst)
        idx = self._bix.get((w.pool, vi))
        extra = f", {c:g} cores" if variant.hardware is HardwareKind.CPU and c != variant.allocation else ""
        extra += ", own device" if exclusive else ""
        self.action_log.append((self.env.now, f"load {variant_id} as instance {inst.iid} on worker {w.wid}{extra}"))
        if instant:
            self.executor.load_now(inst)
            inst.state = InstanceState.READY
            inst.ready_at = self.env.now
            inst.idle_since = self.env.now
        elif w.state is WorkerState.READY:
            self._start_load(inst)
        else:
            inst.ready_at = w.ready_at + variant.load_latency_ms / 1000  # an estimate until it starts
        if idx is not None:  # filed by its state after the load began
            inst.bix = idx
            idx.add(inst, self.env.now)
        return inst

    def _start_load(self, inst: Instance) -> None:
        inst.ready_at = self.env.now + inst.variant.load_latency_ms / 1000  # estimate for backlog
        ev: simpy.Event = self.executor.load(inst)  # type: ignore[assignment]  # the clock's completion
        ev.callbacks.append(lambda e: self._loaded(inst, e))
        if inst.bix is not None:
            inst.bix.refile(inst, self.env.now)

    def _loaded(self, inst: Instance, ev: simpy.Event) -> None:
        if inst.state is InstanceState.DEAD:
            return
        now = self.env.now
        if not ev.ok:
            ev.defused = True
            doomed = list(inst.queue)
            inst.queue.clear()
            inst.queued_inputs = 0
            self.recorder.failed_batch(doomed, f"loading {inst.variant.variant_id} failed: {ev.value}", now)
            self._unroute(inst)
            self._free(inst)
            return
        inst.ready_at = now
        inst.idle_since = now
        if inst.state is InstanceState.LOADING:
            inst.state = InstanceState.READY
        inst.try_dispatch()
        if inst.bix is not None and not inst.busy:  # (busy: dispatched, and filed)
            inst.bix.refile(inst, now)
        if inst.state is InstanceState.DRAINING and not inst.queue and not inst.busy:
            self._finish_unload(inst)

    def unload(self, iid: int) -> None:
        inst = self.instances.get(iid)
        if inst is None or inst.state in (InstanceState.DRAINING, InstanceState.UNLOADED, InstanceState.DEAD):
            return
        self.action_log.append((self.env.now, f"unload instance {iid} ({inst.variant.variant_id})"))
        was_loading = inst.state is InstanceState.LOADING and inst.worker.state is WorkerState.STARTING
        inst.state = InstanceState.DRAINING
        self._unroute(inst)
        if was_loading or (not inst.busy and not inst.queue and inst.ready_at <= self.env.now):
            self._finish_unload(inst)

    def _finish_unload(self, inst: Instance) -> None:
        if inst.queue:  # never drop queued work: it was queued before the unload
            return
        inst.state = InstanceState.UNLOADED
        self._free(inst)

    def _free(self, inst: Instance) -> None:
        w = inst.worker
        if inst in w.instances:
            w.instances.remove(inst)
            w.memory_used_mb -= inst.variant.memory_mb
            w.units_used -= inst.units
            self._touch(w)
            if inst.exclusive:
                w.reserved_devices -= 1
                if w.device_waiters:
                    self._wake_device_waiters(w)
        self.instances.pop(inst.iid, None)
        self.executor.unload(inst)
        self._maybe_release(w)

    def _unroute(self, inst: Instance) -> None:
        lst = self.routable.get(inst.vi)
        if lst is not None and inst in lst:
            lst.remove(inst)
            self.routable_by_pool[inst.pool][inst.vi].remove(inst)
        if inst.bix is not None:
            inst.bix.remove(inst)
            inst.bix = None

    def resize(self, iid: int, cores: float) -> bool:
        """Vertical scaling of a CPU instance in place, within its worker's cores. The cores
        are held at once; the new latency (the catalog's core profile) applies after
        ``resize_delay_s``. A refused resize is logged with its reason."""
        inst = self.instances.get(iid)
        now = self.env.now
        if inst is None:
            self.action_log.append((now, f"resize instance {iid} refused: no such instance"))
            return False
        if inst.variant.hardware is not HardwareKind.CPU or not cores > 0:
            self.action_log.append(
                (now, f"resize instance {iid} refused: only CPU instances resize, to > 0 cores (asked {cores:g})")
            )
            return False
        w = inst.worker
        if w.units_used - inst.units + cores > w.itype.capacity_units + 1e-9:
            self.action_log.append(
                (now, f"resize instance {iid} to {cores:g} cores refused: worker {w.wid} has "
                      f"{w.itype.capacity_units - w.units_used + inst.units:g} cores for it")
            )  # fmt: skip
            return False
        self.action_log.append((now, f"resize instance {iid} to {cores:g} cores"))
        w.units_used += cores - inst.units
        inst.units = cores
        self._touch(w)
        inst.resize_seq += 1
        seq = inst.resize_seq

        def apply(_e: simpy.Event) -> None:
            if inst.resize_seq == seq:  # a later resize supersedes this one
                inst.cores = cores
                inst._set_latency_table()

        self.env.timeout(self.resize_delay_s).callbacks.append(apply)
        return True

    def set_batch(self, iid: int, max_batch: int, max_wait_s: float | None) -> None:
        inst = self.instances.get(iid)
        now = self.env.now
        if inst is None:
            self.action_log.append((now, f"set batch of instance {iid} refused: no such instance"))
            return
        inst.max_batch = max(1, min(max_batch, inst.variant.max_batch))
        if max_wait_s is not None:
            inst.max_wait_s = max(0.0, max_wait_s)
        if inst.bix is not None:
            inst.bix.refile(inst, now)
        self.action_log.append(
            (now, f"set batch of instance {iid} to {inst.max_batch}, max wait {inst.max_wait_s * 1000:g} ms")
        )
        inst.try_dispatch()

    def _wake_device_waiters(self, w: Worker) -> None:
        while w.device_waiters and w.device_busy < w.shared_devices():
            inst = w.device_waiters.popleft()
            inst.device_wait_since = -1.0
            before = w.device_busy
            inst.try_dispatch()
            if w.device_busy == before and inst.device_wait_since >= 0:
                break

    # --- queries ------------------------------------------------------------------------
    def enqueue(self, inst: Instance, q: Query) -> None:
        now = self.env.now
        self.variant_meter.add(inst.vi, now)
        self.variant_input_meter.add(inst.vi, now, q.batch)
        self.instance_meter.add(inst.iid, now)
        inst.enqueue(q, now)

    def stages_done(self, queries: Sequence[Query], now: float) -> None:
        """Hand pipeline queries whose stage completed at ``now`` to the controller."""
        if self.on_stage_done is None:
            q = queries[0]
            raise AccountingError(f"query {q.qid} finished stage {q.stage} but nothing submits the next stage")
        for q in queries:
            self.on_stage_done(q, now)

    def new_tick(self) -> None:
        """An autoscaling tick begins: the unplaced-load counts start again from zero, so that
        the next tick's view counts this tick's failed placements and the route's since."""
        self.unplaced_loads = 0
        self.unplaced_by_kind.clear()

    def routable_instances(self) -> Iterator[Instance]:
        """Every loaded or loading instance, variant by variant."""
        for lst in self.routable.values():
            yield from lst

    def apply(self, actions: Iterable[Action], instant: bool = False) -> None:
        handlers: dict[type, Callable[..., object]] = {
            Load: lambda a: self.load(
                a.variant_id, a.worker_id, a.cores, a.max_batch, a.allow_new_worker, instant, a.exclusive_device, a.pool
            ),
            Unload: lambda a: self.unload(a.instance_id),
            Resize: lambda a: self.resize(a.instance_id, a.cores),
            SetBatch: lambda a: self.set_batch(a.instance_id, a.max_batch, a.max_wait_s),
            AddWorker: lambda a: self.add_worker(a.instance_type, instant, a.pool),
            RemoveWorker: lambda a: self.remove_worker(a.worker_id),
        }
        for a in actions:
            handler = handlers.get(type(a))
            if handler is None:
                raise ConfigError(f"a policy returned an unknown action {a!r}")
            handler(a)

    def close(self, reason: str) -> None:
        """End of run: fail whatever is still queued or running, stop billing."""
        now = self.env.now
        for inst in list(self.instances.values()):
            doomed = list(inst.inflight) + list(inst.queue)
            if doomed:
                self.recorder.failed_batch(doomed, reason, now)
            inst.queue.clear()
            inst.inflight = []
            inst.state = InstanceState.DEAD
        for w in self.workers.values():
            if w.released_at == math.inf:
                w.released_at = now
