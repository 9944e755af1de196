"""The read-only view of the cluster that policies see.

``InstanceView`` and ``WorkerView`` are protocols with read-only properties: the cluster's own
objects satisfy them, so building a view costs nothing on the hot path, and mypy keeps
policies from writing to them. ``ClusterView`` exposes queries, not the cluster's methods.

What a policy can read, beyond the instances and workers: recent rates per application,
pipeline stage (:meth:`ClusterView.stage_rate`), variant and instance; per instance the last
batch's observed latency and an EWMA of observed / profiled latency
(``observed_latency_ms``); unplaced loads overall and per hardware kind; and through
``view.catalog`` the CPU core profiles (``catalog.cpu_latency_ms(variant, cores, batch)``)
to predict a resized replica's latency. Workers may belong to a worker pool (a label given
by ``Load.pool`` / ``AddWorker.pool``; a pooled load is placed only on its pool's workers):
:meth:`ClusterView.pool_instances` and :meth:`ClusterView.pool_workers` read one pool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from infaas_sim.errors import ConfigError
from infaas_sim.hardware import HardwareKind, InstanceType
from infaas_sim.variant import Variant

if TYPE_CHECKING:
    from infaas_sim.catalog import Catalog
    from infaas_sim.cluster import Cluster


class NoInstanceTypeError(ConfigError, KeyError):
    """No instance type is configured for a hardware kind. Also a KeyError, because policies
    written before this error existed catch KeyError to skip a kind the cluster lacks."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InstanceState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"
    UNLOADED = "unloaded"
    DEAD = "dead"


class WorkerState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    RELEASED = "released"
    CRASHED = "crashed"


class InstanceView(Protocol):
    @property
    def iid(self) -> int: ...
    @property
    def variant(self) -> Variant: ...
    @property
    def vi(self) -> int: ...  # variant index in the catalog
    @property
    def state(self) -> InstanceState: ...
    @property
    def ready_at(self) -> float: ...
    @property
    def cores(self) -> float: ...
    @property
    def max_batch(self) -> int: ...
    @property
    def max_wait_s(self) -> float: ...
    @property
    def queued_inputs(self) -> int: ...
    @property
    def inflight_inputs(self) -> int: ...
    @property
    def busy_until(self) -> float: ...
    @property
    def batches_done(self) -> int: ...
    @property
    def inputs_done(self) -> int: ...
    @property
    def busy_time(self) -> float: ...
    @property
    def last_used(self) -> float: ...
    @property
    def worker_id(self) -> int: ...
    @property
    def pool(self) -> str | None: ...  # its worker's pool

    @property
    def exclusive(self) -> bool: ...  # a GPU replica with a device of its own
    @property
    def last_batch_ms(self) -> float: ...  # observed execution time of its last batch (0: none yet)
    @property
    def last_batch_inputs(self) -> int: ...
    @property
    def latency_ratio(self) -> float: ...  # recent observed / profiled batch latency (EWMA, 1 at start)

    @property
    def busy(self) -> bool: ...  # a batch is running (busy_until is its expected end)
    @property
    def latency_table(self) -> Sequence[float]: ...  # latency_ms by batch, as a table (hot paths)

    def latency_ms(self, batch: int) -> float: ...  # profiled, at its current cores
    def observed_latency_ms(self, batch: int) -> float: ...  # latency_ms scaled by latency_ratio
    def arrival_rate(self, window_s: float) -> float: ...  # queries/s queued on it, finished seconds
    def backlog_s(self, now: float) -> float: ...


class WorkerView(Protocol):
    @property
    def wid(self) -> int: ...
    @property
    def itype(self) -> InstanceType: ...
    @property
    def kind(self) -> HardwareKind: ...
    @property
    def pool(self) -> str | None: ...  # only loads of this pool are placed here (None: of no pool)
    @property
    def state(self) -> WorkerState: ...
    @property
    def requested_at(self) -> float: ...
    @property
    def ready_at(self) -> float: ...
    @property
    def memory_used_mb(self) -> float: ...
    @property
    def units_used(self) -> float: ...

    @property
    def reserved_devices(self) -> int: ...  # GPU devices held by exclusive replicas

    def free_memory_mb(self) -> float: ...
    def free_units(self) -> float: ...
    def free_devices(self) -> int: ...  # GPU devices no replica uses (room for an exclusive one)
    def instance_views(self) -> Sequence[InstanceView]: ...


_NO_VARIANTS: Mapping[int, Sequence[InstanceView]] = {}


class ClusterView:
    """What a policy may read. Wraps the cluster; every method is a query, and what it hands
    out cannot change the cluster (mappings are read-only proxies of the live ones)."""

    __slots__ = ("_c", "_routable", "_types")

    def __init__(self, cluster: Cluster) -> None:
        self._c = cluster
        # Made once: a proxy follows the live mapping, so none is built per call (routable_map is
        # read on the per-query path; a lookup through it costs ~16 ns more than a dict's).
        self._routable: Mapping[int, Sequence[InstanceView]] = MappingProxyType(cluster.routable)
        self._types: Mapping[str, InstanceType] = MappingProxyType(cluster.instance_types)

    @property
    def now(self) -> float:
        return self._c.env.now

    @property
    def catalog(self) -> Catalog:
        return self._c.catalog

    @property
    def instance_types(self) -> Mapping[str, InstanceType]:
        return self._types

    def hardware_kinds(self) -> list[HardwareKind]:
        """The hardware kinds the cluster has an instance type for (``cluster.workers``)."""
        return [k for k in HardwareKind if k in self._c.type_by_kind]

    def instance_type_for(self, kind: HardwareKind) -> InstanceType:
        name = self._c.type_by_kind.get(kind)
        if name is None:
            raise NoInstanceTypeError(f"no instance type is configured for {kind.value} workers (cluster.workers)")
        return self._c.instance_types[name]

    def workers(self, kind: HardwareKind | None = None) -> list[WorkerView]:
        """Live workers (starting, ready or draining), optionally of one kind."""
        return [w for w in self._c.live_workers() if kind is None or w.kind is kind]

    @property
    def placement_epoch(self) -> int:
        """A number that changes whenever what :meth:`workers` shows of placement can
        (a worker's state, free memory, free units or busy GPU devices): what a policy read
        of the workers still holds while it is the same."""
        return self._c.placement_epoch

    def pool_workers(self, pool: str | None, kind: HardwareKind | None = None) -> list[WorkerView]:
        """:meth:`workers` of one worker pool (None: the workers of no pool)."""
        return [w for w in self._c.live_workers() if w.pool == pool and (kind is None or w.kind is kind)]

    def worker(self, wid: int) -> WorkerView:
        return self._c.workers[wid]

    def max_workers(self, kind: HardwareKind) -> int:
        return self._c.max_workers[kind]

    def min_workers(self, kind: HardwareKind) -> int:
        return self._c.min_workers[kind]

    def instances_of(self, vi: int) -> Sequence[InstanceView]:
        """Routable instances (loading or ready) of variant ``vi``; the list is live: don't keep it."""
        return self._c.routable.get(vi, ())

    def pool_instances(self, vi: int, pool: str | None) -> Sequence[InstanceView]:
        """:meth:`instances_of`, only those on workers of ``pool`` (None: of no pool). Live:
        don't keep it. Cheap enough for the per-query path (two dict lookups)."""
        return self._c.routable_by_pool.get(pool, _NO_VARIANTS).get(vi, ())

    def least_backlog(self, vi: int, pool: str | None) -> InstanceView | None:
        """The routable replica of ``vi`` on workers of ``pool`` (None: of no pool) that
        :func:`infaas_sim.dispatch.least_backlog` picks, the same choice in O(log n) on
        long lists (the cluster keeps an index of them)."""
        return self._c.least_backlog(vi, pool)

    def routable_map(self) -> Mapping[int, Sequence[InstanceView]]:
        """Variant index -> its routable instances (:meth:`instances_of` for every variant at
        once; a variant with none may be absent or map to an empty list). Live: read it, keep
        it no longer than the call that fetched it (a read-only view of the live mapping). For
        per-query loops, where ``routable_map().get(vi, ())`` saves a method call per variant."""
        return self._routable

    def instance(self, iid: int) -> InstanceView:
        return self._c.instances[iid]

    def running_variants(self) -> list[int]:
        """Catalog indices of the variants with at least one routable instance."""
        return [vi for vi, lst in self._c.routable.items() if lst]

    def all_instances(self) -> list[InstanceView]:
        return [i for lst in self._c.routable.values() for i in lst]

    def variant_rate(self, vi: int, window_s: float) -> float:
        """Queries per second routed to variant ``vi`` over the last ``window_s`` seconds."""
        return self._c.variant_meter.rate(vi, self._c.env.now, window_s)

    def variant_input_rate(self, vi: int, window_s: float) -> float:
        """Inputs per second routed to variant ``vi`` over the last ``window_s`` seconds."""
        return self._c.variant_input_meter.rate(vi, self._c.env.now, window_s)

    def app_rate(self, app_index: int, window_s: float) -> float:
        return self._c.app_meter.rate(app_index, self._c.env.now, window_s)

    def stage_rate(self, app_index: int, stage: int, window_s: float) -> float:
        """Queries per second reaching ``stage`` of a pipeline application (stage 0: arrivals)."""
        from infaas_sim.cluster import stage_key  # the cluster imports this module

        if stage == 0:
            return self.app_rate(app_index, window_s)
        return self._c.stage_meter.rate(stage_key(app_index, stage), self._c.env.now, window_s)

    def app_rate_series(self, app_index: int, seconds: int) -> list[float]:
        """Per-second arrival counts of an application over the last ``seconds`` whole seconds."""
        return self._c.app_meter.series(app_index, self._c.env.now, seconds)

    def total_rate_series(self, seconds: int) -> list[float]:
        return self._c.total_meter.series(0, self._c.env.now, seconds)

    def utilisation(self, worker_id: int, window_s: float) -> float:
        """Busy share of a worker's capacity units over the last ``window_s`` seconds."""
        return self._c.worker_utilisation(worker_id, window_s)

    def pending_workers(self, kind: HardwareKind) -> int:
        return sum(1 for w in self._c.live_workers() if w.kind is kind and w.state is WorkerState.STARTING)

    def unplaced(self) -> int:
        """Loads the cluster could not place (no room, worker cap) since the previous tick's
        policy call: the previous tick's own actions and the route's loads since."""
        return self._c.unplaced_loads

    def unplaced_loads_by_kind(self) -> Mapping[HardwareKind, int]:
        """:meth:`unplaced`, per hardware kind of the variant that could not be placed."""
        return dict(self._c.unplaced_by_kind)

    def instance_rate(self, iid: int, window_s: float) -> float:
        """Queries per second queued on instance ``iid`` over the last ``window_s`` seconds."""
        return self._c.instance_meter.rate(iid, self._c.env.now, window_s)

    @property
    def resize_delay_s(self) -> float:
        """How long a Resize takes before the new cores' latency applies."""
        return self._c.resize_delay_s
