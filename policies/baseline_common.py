"""What the baseline policies (``clipper+``, ``sagemaker+``, ``hpa``, ``vpa``) share.

Each baseline serves every application with one variant chosen offline and never switches
it; they differ only in how they scale it. Shared here:

- :class:`Deployment`: one variant with the applications it serves, on the workers of its
  worker pool. ``deployment: dedicated``: one deployment per application, even where two pick
  the same variant, on VMs of its own (a pool per application): no VM hosts replicas of two
  deployments, as a SageMaker endpoint or a Clipper model container serves one model for one
  application on its own instances. ``deployment: shared``: applications that pick the same
  variant share its replicas, and replicas of different variants pack onto the same VMs (the
  hardware sharing INFaaS claims as its own gain);
- :class:`BaselinePolicy`: the offline choice (a named variant, or the cheapest meeting the
  application's SLO and accuracy at its mean or peak rate on the hardware family
  ``hardware``, :func:`choose_variant`), the pre-provisioned replicas, and the per-query
  routing to a replica of the application's own deployment by ``dispatch``
  (:mod:`infaas_sim.dispatch`; ``least_backlog``, the default, on
  :meth:`InstanceView.backlog_s`, which also orders replicas of different sizes (VPA) and
  ones still loading);
- :func:`reconcile` (on :class:`infaas_sim.placement.Room`): bring a deployment to a replica count the way a
  replica controller does, placing each new replica (in the deployment's pool) where it adds
  capacity and starting a worker (VM) when none has room; scale-in removes replicas that are
  still loading first, then those on the emptiest workers;
- :class:`Counters`: per-instance deltas of the view's cumulative counters (busy time,
  batches, inputs), which is how these policies observe utilisation and batch latency;
- :func:`release_idle_workers`: give back workers left empty (the cluster never releases a
  worker by itself).

Deviations, each with its reason
  - The variant and the first replica count are chosen from each application's declared
    expected rate (the workload hints: ``expected_qps``, or what the trace's declared
    parameters give), what a developer knows before the run, not from the run's arrivals.
  - With ``hardware: any`` the cheapest variant is picked across every hardware kind the
    cluster has workers for; the systems leave that choice to the user, who fixes one family
    (``hardware: cpu | gpu | inferentia``).

GPU replicas and placement. The cluster time-shares a GPU worker's devices between its
instances and places a load by memory only, so a second replica of a GPU variant placed on
the same one-GPU worker adds no throughput. A replica here therefore takes one device: it
goes to a worker with a device free, and where none has one the policy asks for a worker
(``AddWorker``) and loads onto it on the next tick, when the new worker is visible (the
view has no "load onto a new worker" action and ``AddWorker`` does not return the worker's
id). Before traffic, workers are instant and ready, and the cluster's placement puts a load
on the worker (of the deployment's pool) with the most free memory, the one just added.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from infaas_sim.catalog import Candidates
from infaas_sim.dispatch import LEAST_BACKLOG, ROUND_ROBIN, check_dispatch, round_robin, shortest_queue
from infaas_sim.errors import ConfigError
from infaas_sim.hardware import HardwareKind
from infaas_sim.placement import Room
from infaas_sim.policy import (
    Action,
    AddWorker,
    Decision,
    Load,
    Policy,
    Reject,
    RemoveWorker,
    Serve,
    Unload,
    WorkloadHint,
)
from infaas_sim.query import Application, Query
from infaas_sim.sizing import cheapest_variant, replicas_needed, serving_batch
from infaas_sim.variant import Variant
from infaas_sim.view import ClusterView, InstanceState, InstanceView, WorkerState

SIZINGS = ("mean", "peak")
DEDICATED, SHARED = "dedicated", "shared"
DEPLOYMENTS = (DEDICATED, SHARED)
#: ``hardware`` values: any kind, or one hardware family.
HARDWARE = ("any", *(k.value for k in HardwareKind))


@dataclass
class Deployment:
    """One variant and the applications it serves, on the workers of its pool."""

    vi: int
    variant: Variant
    apps: list[Application] = field(default_factory=list)
    slo_ms: float | None = None  # the tightest SLO among its applications
    batch: int = 1  # the largest query batch among its applications
    qps: float = 0.0  # queries per second from the hints (mean or peak)
    input_qps: float = 0.0  # inputs per second from the hints
    replicas: int = 1  # sized for ``input_qps`` at the policy's target utilisation
    key: int = 0  # the policy's key for it (its position in the plan)
    pool: str | None = None  # the worker pool its replicas live on; None: workers of no pool
    turn: int = 0  # queries dispatched to it (round_robin's turn)

    @property
    def variant_id(self) -> str:
        return self.variant.variant_id

    def instances(self, view: ClusterView) -> Sequence[InstanceView]:
        """Its routable replicas (live: don't keep the list)."""
        return view.pool_instances(self.vi, self.pool)

    @property
    def serving_batch(self) -> int:
        """The largest batch whose latency fits half the SLO (the batcher limit of a replica)."""
        return serving_batch(self.variant, self.slo_ms)

    def arrival_rate(self, view: ClusterView, window_s: float) -> float:
        """Queries per second its applications sent over the last ``window_s`` (rejected ones too)."""
        return sum(view.app_rate(a.index, window_s) for a in self.apps)

    def input_rate(self, view: ClusterView, window_s: float) -> float:
        return sum(view.app_rate(a.index, window_s) * a.batch for a in self.apps)


class BaselinePolicy(Policy):
    """A fixed variant per application, pre-provisioned, each query dispatched to a replica
    of its application's deployment. Subclasses add their scaling in ``autoscale``."""

    tick_s: float | None = 1.0

    def __init__(
        self,
        variants: Mapping[str, str] | None,
        sizing: str,
        target_util: float,
        dispatch: str = LEAST_BACKLOG,
        deployment: str = DEDICATED,
        hardware: str = "any",
    ) -> None:
        if variants is not None and not isinstance(variants, Mapping):
            raise self.error(f"variants must map application names to variant ids, got {variants!r}")
        if sizing not in SIZINGS:
            raise self.error(f"sizing must be 'mean' or 'peak', got {sizing!r}")
        self.check_number("target_util", target_util, 0, 1, low_open=True)
        self.variants = {str(k): str(v) for k, v in (variants or {}).items()}
        self.sizing = sizing
        self.target_util = float(target_util)
        self.dispatch = check_dispatch(f"policy {self.name}", dispatch)
        self.deployment = check_deployment(f"policy {self.name}", deployment)
        self.hardware = hardware_family(f"policy {self.name}", hardware)
        self.deployments: dict[int, Deployment] = {}  # deployment key -> deployment
        self.app_dep: dict[int, Deployment] = {}  # application index -> its deployment

    # --- validation --------------------------------------------------------------------
    def check_number(self, name: str, value: object, low: float, high: float = math.inf,
                     low_open: bool = False, integer: bool = False) -> None:  # fmt: skip
        """``value`` must be a number (an integer if ``integer``) in [low, high], or (low, high]
        if ``low_open``."""
        if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
            raise self.error(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
        if not ((value > low if low_open else value >= low) and value <= high):
            if high == math.inf:
                bound = f"> {low:g}" if low_open else f">= {low:g}"
            else:
                bound = f"in {'(' if low_open else '['}{low:g}, {high:g}]"
            raise self.error(f"{name} must be {bound}, got {value!r}")

    # --- setup -------------------------------------------------------------------------
    def plan(self, view: ClusterView, apps: Sequence[Application], hints: Mapping[str, WorkloadHint]) -> None:
        """Choose each application's variant offline and group applications by variant."""
        catalog = view.catalog
        unknown = set(self.variants) - {a.name for a in apps}
        if unknown:
            raise self.error(f"variants given for unknown application(s) {sorted(unknown)}")
        self.deployments = {}
        self.app_dep = {}
        by_variant: dict[int, Deployment] = {}  # shared: the deployment of each variant
        for app in apps:
            req = app.requirement
            cands = catalog.candidates(req, app.batch).indices
            hint = hints.get(app.name, WorkloadHint(0.0, 0.0))
            qps = hint.mean_qps if self.sizing == "mean" else hint.peak_qps
            named = self.variants.get(app.name, "auto")
            if named == "auto":
                vi, _ = choose_variant(view, app.name, cands, qps * app.batch, req.slo_ms, self.hardware,
                                       self.target_util, self.error)  # fmt: skip
            else:
                vi = named_variant(view, app.name, cands, named, self.hardware, self.error)
            dep = by_variant.get(vi) if self.deployment == SHARED else None
            if dep is None:
                key = len(self.deployments)
                pool = app_pool(app) if self.deployment == DEDICATED else None
                dep = Deployment(vi, catalog.variants[vi], slo_ms=req.slo_ms, batch=app.batch, key=key, pool=pool)
                self.deployments[key] = by_variant[vi] = dep
            dep.apps.append(app)
            if req.slo_ms is not None and (dep.slo_ms is None or req.slo_ms < dep.slo_ms):
                dep.slo_ms = req.slo_ms
            dep.batch = max(dep.batch, app.batch)
            dep.qps += qps
            dep.input_qps += qps * app.batch
            self.app_dep[app.index] = dep
        for dep in self.deployments.values():
            dep.replicas = replicas_needed(dep.variant, dep.input_qps, dep.slo_ms, self.target_util)

    def provision(self, view: ClusterView, dep: Deployment, n: int, cores: float | None = None,
                  max_batch: int | None = None) -> list[Action]:  # fmt: skip
        """Setup actions for ``n`` replicas of ``dep`` (workers are instant before traffic).
        GPU replicas get one device each: a worker is added whenever the last one's devices
        are taken, and the cluster places the load on the emptiest worker, the new one."""
        v = dep.variant
        actions: list[Action] = []
        per_worker = view.instance_type_for(v.hardware).accelerators if v.hardware is HardwareKind.GPU else 0
        for j in range(n):
            if per_worker and j % per_worker == 0:
                actions.append(AddWorker(view.instance_type_for(v.hardware).name, dep.pool))
            actions.append(Load(v.variant_id, cores=cores, max_batch=max_batch, pool=dep.pool))
        return actions

    # --- per query ---------------------------------------------------------------------
    def route(self, query: Query, candidates: Candidates, view: ClusterView) -> Decision:
        dep = self.app_dep.get(query.app.index)
        if dep is None:
            return Reject(f"policy {self.name} has no variant for application {query.app.name}")
        best = dispatch_to(self.dispatch, dep, view)
        if best is None:
            return Reject(f"no replica of {dep.variant_id} is running")
        return Serve(best)


# --- the offline choice, dispatch and deployments (shared with ``static``) ----------------
def check_deployment(where: str, deployment: object) -> str:
    if deployment not in DEPLOYMENTS:
        raise ConfigError(f"{where}: deployment must be 'dedicated' or 'shared', got {deployment!r}")
    return str(deployment)


def hardware_family(where: str, hardware: object) -> HardwareKind | None:
    """The hardware kind ``hardware`` names (None for ``any``), or a one-line ConfigError."""
    if hardware not in HARDWARE:
        raise ConfigError(f"{where}: hardware must be one of {', '.join(HARDWARE)}, got {hardware!r}")
    return None if hardware == "any" else HardwareKind(hardware)


def app_pool(app: Application, stage: int | None = None) -> str:
    """The worker pool of an application's dedicated deployment (one per pipeline stage)."""
    pool = f"{app.name}#{app.index}"  # the index: names need not be unique
    return pool if stage is None else f"{pool}/stage{stage}"


def choose_variant(view: ClusterView, app_name: str, cands: Sequence[int], input_qps: float, slo_ms: float | None,
                   hardware: HardwareKind | None, target_util: float,
                   error: Callable[[str], ConfigError]) -> tuple[int, int]:  # fmt: skip
    """(variant index, replicas): the cheapest of the candidates ``cands`` that runs on a
    worker type the cluster has (of family ``hardware`` only, unless None) for ``input_qps``
    (:func:`infaas_sim.sizing.cheapest_variant`); else ``error``'s one-line ConfigError."""
    catalog = view.catalog
    kinds = view.hardware_kinds()
    if hardware is not None:
        if hardware not in kinds:
            raise error(f"hardware {hardware.value}: the cluster has no {hardware.value} workers (cluster.workers)")
        kinds = [hardware]
    usable = [i for i in cands if catalog.variants[i].hardware in kinds]
    if not usable:
        if hardware is not None:
            raise error(f"no {hardware.value} variant meets application {app_name!r} (hardware: {hardware.value})")
        have = ", ".join(k.value for k in kinds)
        raise error(f"no variant that meets application {app_name!r} runs on the cluster's workers ({have})")
    by_kind = {k: view.instance_type_for(k).name for k in kinds}
    return cheapest_variant(catalog, usable, input_qps, slo_ms, view.instance_types, by_kind, target_util)


def named_variant(view: ClusterView, app_name: str, cands: Sequence[int], named: str, hardware: HardwareKind | None,
                  error: Callable[[str], ConfigError]) -> int:  # fmt: skip
    """The index of the variant an application is given by name, checked against its
    candidates and the ``hardware`` family."""
    vi = view.catalog.index_of.get(named, -1)
    if vi not in cands:
        raise error(f"variant {named!r} does not meet application {app_name!r}")
    kind = view.catalog.variants[vi].hardware
    if hardware is not None and kind is not hardware:
        raise error(f"variant {named!r} of application {app_name!r} runs on {kind.value}, not {hardware.value}")
    return vi


def dispatch_to(rule: str, dep: Deployment, view: ClusterView) -> InstanceView | None:
    """The replica of ``dep`` a query goes to under dispatch ``rule`` (None: none runs)."""
    if rule == LEAST_BACKLOG:
        return view.least_backlog(dep.vi, dep.pool)
    insts = view.pool_instances(dep.vi, dep.pool)
    if rule == ROUND_ROBIN:
        dep.turn += 1
        return round_robin(insts, dep.turn - 1)
    return shortest_queue(insts)


# --- placement and replica counts ---------------------------------------------------------
def add_replicas(view: ClusterView, room: Room, dep: Deployment, k: int, cores: float | None = None,
                 max_batch: int | None = None) -> list[Action]:  # fmt: skip
    """Actions adding ``k`` replicas of ``dep``. CPU and Inferentia replicas hold cores /
    NeuronCores, which the cluster's placement counts: it places them, starting a worker if
    none has room. A GPU replica takes a free device; without one, a worker is asked for and
    the replica is loaded there on a later tick."""
    if k <= 0:
        return []
    v = dep.variant
    pool = dep.pool
    room.grow(v.hardware, pool)
    if v.hardware is not HardwareKind.GPU:
        return [Load(v.variant_id, cores=cores, max_batch=max_batch, allow_new_worker=True, pool=pool)] * k
    actions: list[Action] = []
    itype = view.instance_type_for(HardwareKind.GPU)
    coming = (HardwareKind.GPU, pool)
    for _ in range(k):
        wid = room.gpu_worker(v, pool)
        if wid is not None:
            actions.append(Load(v.variant_id, wid, cores=cores, max_batch=max_batch, allow_new_worker=False,
                                pool=pool))  # fmt: skip
        elif room.coming.get(coming, 0) > 0:
            room.coming[coming] -= 1
        else:
            actions.append(AddWorker(itype.name, pool))
            room.coming[coming] = itype.accelerators - 1
    return actions


def pick_victims(view: ClusterView, instances: Iterable[InstanceView], k: int) -> list[InstanceView]:
    """The ``k`` replicas to remove: still loading first (the newest), then those on the
    workers with the fewest instances (so that workers empty and can be released), then the
    shortest queue."""
    pool = list(instances)
    counts: dict[int, int] = {}
    for inst in pool:
        if inst.worker_id not in counts:
            counts[inst.worker_id] = len(view.worker(inst.worker_id).instance_views())
    now = view.now
    chosen: list[InstanceView] = []
    for _ in range(min(k, len(pool))):
        best = min(
            pool,
            key=lambda i: (i.state is InstanceState.READY, counts[i.worker_id], i.backlog_s(now), -i.iid),
        )
        pool.remove(best)
        counts[best.worker_id] -= 1
        chosen.append(best)
    return chosen


def reconcile(view: ClusterView, room: Room, dep: Deployment, desired: int, cores: float | None = None,
              max_batch: int | None = None) -> list[Action]:  # fmt: skip
    """Actions bringing ``dep`` to ``desired`` replicas (a replica controller's loop: it also
    replaces replicas lost to a crashed worker)."""
    insts = dep.instances(view)
    n = len(insts)
    if n < desired:
        return add_replicas(view, room, dep, desired - n, cores, max_batch)
    if n > desired:
        return [Unload(i.iid) for i in pick_victims(view, insts, n - desired)]
    return []


def release_idle_workers(view: ClusterView, room: Room, empty_since: dict[int, float], idle_s: float) -> list[Action]:
    """Release workers that have held no instance for ``idle_s`` seconds, except those this
    tick adds replicas to (of the kind and worker pool: a load may be on its way there). The
    cluster keeps its minimum per kind."""
    now = view.now
    actions: list[Action] = []
    seen: set[int] = set()
    for w in view.workers():
        if w.state not in (WorkerState.READY, WorkerState.STARTING):
            continue
        if w.instance_views() or w.wid in room.taken:
            continue
        seen.add(w.wid)
        since = empty_since.setdefault(w.wid, now)
        if now - since >= idle_s and not room.grows(w):
            actions.append(RemoveWorker(w.wid))
    for wid in list(empty_since):
        if wid not in seen:
            del empty_since[wid]
    return actions


# --- observation --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Delta:
    """What one instance did between two looks: elapsed, busy seconds, batches, inputs."""

    elapsed_s: float
    busy_s: float
    batches: int
    inputs: int
    since: float  # when the previous look was

    @property
    def utilisation(self) -> float:
        return min(1.0, self.busy_s / self.elapsed_s) if self.elapsed_s > 0 else 0.0

    @property
    def batch_latency_ms(self) -> float:
        """Mean execution latency of the batches completed in the interval."""
        return 1000.0 * self.busy_s / self.batches if self.batches else 0.0

    @property
    def mean_batch(self) -> float:
        return self.inputs / self.batches if self.batches else 0.0


class Counters:
    """Per-instance deltas of the view's cumulative counters (``busy_time``,
    ``batches_done``, ``inputs_done``). A batch counts in the interval it completes in."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[float, float, int, int]] = {}

    def delta(self, inst: InstanceView, now: float) -> Delta | None:
        """Since the previous call for this instance (None on the first)."""
        cur = (now, inst.busy_time, inst.batches_done, inst.inputs_done)
        prev = self._last.get(inst.iid)
        self._last[inst.iid] = cur
        if prev is None:
            return None
        return Delta(now - prev[0], cur[1] - prev[1], cur[2] - prev[2], cur[3] - prev[3], prev[0])

    def watch(self, inst: InstanceView, now: float) -> None:
        """Start counting for an instance not seen before (so that its first delta covers a
        whole interval rather than waiting for a second look)."""
        if inst.iid not in self._last:
            self._last[inst.iid] = (now, inst.busy_time, inst.batches_done, inst.inputs_done)

    def prune(self, live: Iterable[int]) -> None:
        keep = set(live)
        for iid in [i for i in self._last if i not in keep]:
            del self._last[iid]
