"""A policy's view built from plain data: :func:`view_from`, so a policy is tested (or asked
"what would you do here?") without building and driving a cluster.

The data say which workers exist (kind, pool, still starting or not), which instances are on
them (variant, cores, batch limit, still loading or not, queries given to them) and the
recent rates per application and per variant. :func:`view_from` builds the state they
describe with the cluster's own code, at time ``now``, and returns its
:class:`~infaas_sim.view.ClusterView`; time never advances, so loads and batches in progress
stay in progress. Everything a policy reads (free units, backlog, GPU devices, placement
order, admission estimates) is therefore the cluster's own answer, not a second model of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import simpy

from infaas_sim.catalog import Catalog
from infaas_sim.clock import Clock, Completion
from infaas_sim.cluster import Cluster
from infaas_sim.errors import ConfigError
from infaas_sim.executor import Executor
from infaas_sim.hardware import HardwareKind
from infaas_sim.metrics import Recorder
from infaas_sim.query import Application, Level, Query, Requirement
from infaas_sim.view import ClusterView

if TYPE_CHECKING:
    from infaas_sim.cluster import Instance
    from infaas_sim.simulation import ClusterSpec


@dataclass(frozen=True)
class WorkerData:
    """One worker (VM) of ``kind``; ``starting``: requested now, its start-up still to run."""

    kind: HardwareKind | str
    pool: str | None = None
    starting: bool = False


@dataclass(frozen=True)
class InstanceData:
    """One replica of ``variant`` on ``workers[worker]``. ``loading``: its load began now (on a
    starting worker: it begins when the worker is up). ``queries``: single-input queries given
    to it; on a ready replica the first batch of them runs, the rest wait."""

    variant: str
    worker: int
    cores: float | None = None
    max_batch: int | None = None
    loading: bool = False
    queries: int = 0
    exclusive_device: bool = False


@dataclass(frozen=True)
class Rates:
    """Recent traffic, per second, over the ``history_s`` whole seconds before ``now``:
    arrivals per application index, queries routed per variant id."""

    apps: Mapping[int, float] = field(default_factory=dict)
    variants: Mapping[str, float] = field(default_factory=dict)
    history_s: int = 60


class _Frozen(Executor):
    """Time does not pass in a snapshot: loads and batches never end."""

    name = "snapshot"

    def load(self, instance: Instance) -> Completion:
        return self.clock.pending()

    def run(self, instance: Instance, inputs: int, queries: Sequence[Query]) -> Completion:
        return self.clock.pending()


def view_from(
    catalog: Catalog,
    workers: Sequence[WorkerData],
    instances: Sequence[InstanceData] = (),
    *,
    now: float = 0.0,
    rates: Rates | None = None,
    spec: ClusterSpec | None = None,
) -> ClusterView:
    """The view of a cluster in the state the data describe, at ``now`` (``spec``: instance
    types, limits and batching; the simulator's defaults if None)."""
    from infaas_sim.simulation import ClusterSpec  # the run module imports most of the core

    spec = spec if spec is not None else ClusterSpec()
    if now < 0:
        raise ConfigError(f"snapshot: now must be >= 0, got {now}")
    env = simpy.Environment(initial_time=now)
    executor = _Frozen()
    executor.bind(Clock(env), 0)
    cluster = Cluster(env, catalog, executor, Recorder(catalog, []), spec.instance_types, spec.type_by_kind,
                      spec.min_workers, spec.max_workers, spec.max_queue_s, spec.resize_delay_s,
                      spec.max_wait_s)  # fmt: skip
    wids = []
    for k, wd in enumerate(workers):
        kind = HardwareKind(wd.kind)
        tname = cluster.type_by_kind.get(kind)
        if tname is None:
            raise ConfigError(f"snapshot: worker {k} is {kind.value}, for which the cluster has no instance type")
        w = cluster.add_worker(tname, instant=not wd.starting, pool=wd.pool)
        if w is None:
            raise ConfigError(f"snapshot: worker {k} is over cluster.max_workers.{kind.value}")
        wids.append(w.wid)
    qid = 0
    for k, idata in enumerate(instances):
        if not 0 <= idata.worker < len(wids):
            raise ConfigError(f"snapshot: instance {k} is on worker {idata.worker}, not one of the {len(wids)} given")
        inst = cluster.load(idata.variant, wids[idata.worker], idata.cores, idata.max_batch, allow_new_worker=False,
                            instant=not idata.loading and not workers[idata.worker].starting,
                            exclusive_device=idata.exclusive_device, pool=workers[idata.worker].pool)  # fmt: skip
        if inst is None:
            raise ConfigError(f"snapshot: instance {k} ({idata.variant}) does not fit on worker {idata.worker}")
        app = Application(f"snapshot-{idata.variant}", Requirement(Level.VARIANT, idata.variant))
        for _ in range(idata.queries):
            cluster.enqueue(inst, Query(qid, now, app, 1))
            qid += 1
    _fill_rates(cluster, catalog, rates or Rates(), now)
    return ClusterView(cluster)


def _fill_rates(cluster: Cluster, catalog: Catalog, rates: Rates, now: float) -> None:
    for vid in rates.variants:
        if vid not in catalog.index_of:
            raise ConfigError(f"snapshot: rate for unknown variant {vid!r} in catalog {catalog.name}")
    for s in range(max(0, int(now) - rates.history_s), int(now)):
        for app, qps in rates.apps.items():
            cluster.app_meter.add(app, s, qps)
            cluster.total_meter.add(0, s, qps)
        for vid, qps in rates.variants.items():
            vi = catalog.index_of[vid]
            cluster.variant_meter.add(vi, s, qps)
            cluster.variant_input_meter.add(vi, s, qps)
