"""``infaas``: INFaaS (Romero et al., USENIX ATC'21) as a policy of the simulator.

Per query (``route``), model-level autoscaling every tick (1 s) and VM-level autoscaling every
``vm_period_s`` (2 s), reading only the :class:`~infaas_sim.view.ClusterView`.

What follows the paper
  - Model-less selection: the controller hands over the variants meeting the query's level
    (pinned variant / architecture / task + accuracy), its batch and its SLO; the policy picks
    the variant, the hardware and the worker.
  - Loaded variants first, scored by estimated latency = profiled latency at the query's
    batch + the expected queueing on their least-loaded instance (a query that must wait is
    counted in a full batch: later arrivals fill its batch while it waits, and the released
    code estimates batched variants at their full batch too); the tightest fit (least
    slack) wins, which favours cheaper hardware. A variant that is not loaded is scored
    load latency + inference latency and chosen only when no loaded one fits.
  - Model-level autoscaling per running variant: demand (recent input rate) against capacity
    (replicas x saturation throughput at the SLO it serves); replicate, or upgrade to a faster variant of the same
    architecture; scale down by one replica after a hold-down; downgrade accelerated variants
    serving a loose SLO at a small share of their capacity to a cheaper CPU variant.
  - VM-level autoscaling: a worker of a kind is added when all its workers are busy or the
    model autoscaler found no room; workers are released after sustained quiet.

What follows the released code (../shared/reference/policies.md, src/master/queryfe_server.cc)
  - Loose SLOs (> 100 ms) look at CPU variants first, loaded or not.
  - Among variants that are not running, the least load + inference latency (the waiting
    query pays it); this is also what is loaded for an application that has nothing.
  - Overload mark ("blacklist") kept 2 s; overloaded variants are used only if nothing else
    fits. Here a variant is overloaded when the queue on its least-loaded instance is beyond
    what it drains within the SLO (the wait alone, without the batch it would run in,
    exceeds the SLO), which is the code's
    "outstanding requests > h_q x replicas x 1000 / latency" test with the SLO as budget.
    A variant that merely cannot fit one query (its wait plus the query's latency exceed
    the SLO) is skipped for that query, not marked. The mark holds for queries with the
    SLO that found it or a tighter one (the code's mark has no SLO; one tight application
    must not push a loose one off a variant whose queue is short for it).
  - Scale-up by ceil(deficit / per-replica throughput); upgrade instead when the new
    replicas' total load time exceeds 1.5x the upgrade's, or replica / memory limits force
    it: the code's autoscaler runs on each worker, with at most 2 CPU, 1 GPU and 2
    Inferentia replicas of a variant per worker (``*_replicas_per_worker``), and upgrades
    when the worker cannot take the deficit; here, when the live workers cannot. With no
    faster variant it replicates, and the VM autoscaler adds workers for the rest.
  - Scale down one replica when one fewer suffices, after 10 (CPU), 20 (GPU) or 15
    (Inferentia) consecutive checks, the code's delays (``*scale_down_holddown``).
  - Downgrade a GPU variant serving an SLO > 10x its latency at < 3% of its capacity
    (Inferentia: 5x, 20%) to a CPU variant, loading the target before unloading the source.
  - VM autoscaler every 2 s: 80% (CPU, GPU) / 70% (Inferentia) utilisation thresholds, 15
    quiet checks before a removal, never below the minimum, 30 s back-off after an action,
    one worker per action. (Until 2026-12-02 it also waited for a starting worker of the kind
    to be up before adding the next, a rule of ours that is not the code's: one worker per
    60-90 s instead of per 30 s.)
  - Reject "no model can satisfy this request" naming the variant that came closest.

Deviations, each with its reason
  - Batch limit and capacity (:func:`policies.infaas_common.capacity`, the rule the ILP and
    the greedy count with too): a variant runs at the largest batch whose profiled latency
    fits half the SLO it serves, and a replica's capacity is 1000 x batch / latency(batch).
    The released code takes the batch from the profiled latency that fits the SLO and counts
    capacity as replicas x 1000 / latency_ms x batch, with the average batch seen
    (../shared/reference/policies.md); the simulator's batcher builds batches up to the
    instance's limit, so the SLO-bounded batch is what a replica sustains within its SLO.
    *Which* SLO: the tightest among the queries the variant served within ``rate_window_s``
    (the window its demand is read over), kept while it serves nothing; before it has served,
    the SLO of what loaded it (the query or application that started it, the source of an
    upgrade or downgrade, the applications the ILP gave it). Not the tightest SLO of every
    requirement that *may* use it: in the medium scenario a 50 ms application that never
    routed to the NeuronCore variants held them at batch 1 for the 200 ms and 2 s ones that
    did, with seconds of queueing in the burst. Loosening is taken at the next tick (nothing
    tighter came for the whole window); tightening only once a tighter SLO has been served
    within the window at each of the kind's scale-down hold-down ticks (CPU 10, GPU 20,
    Inferentia 15): a tighter limit lowers a replica's capacity, as a scale-down does, and
    breaks the estimates of the looser queries already queued under the old limit. Without
    it the limit flapped: the route estimates a query on an idle instance at its own batch
    (with no batching wait it dispatches at once, alone, whatever the limit), so the 50 ms
    application took an idle NeuronCore instance sized for 200 ms whenever it found one, and
    each such query cut the limit to 1 for 2 s (29 SetBatch, 50 late 200 ms queries, seed 0).
    A query that joins a busy instance is estimated in a full batch of its current limit, so
    none is admitted that its limit would make late.
    Loads carry the limit (``Load.max_batch``, ``LoadThenServe.max_batch``); every tick
    ``SetBatch`` brings instances whose limit differs to it.
  - Demand also counts the inputs the policy rejected because the variant was overloaded
    (routed rate alone hides the load that a saturated variant turns away).
  - Upgrade target: the cheapest faster variant of the same architecture that every
    application using the source can use (the code takes the "next faster" one).
    Downgrade target: the cheapest CPU variant of the same architecture (see below), or of
    any architecture the applications accept when the architecture has none.
  - An upgrade or downgrade is a transition: the target is loaded, and the source's replicas
    are unloaded once all the target's are ready (make-before-break in both directions).
    While an upgrade waits for a new worker, the source still replicates into existing room
    (``stopgap``), so that a burst is not left unserved for the worker's start-up, and asks
    for a worker of its own kind when its replicas would serve before the target's
    (``_room_wait``: new workers as the VM autoscaler adds them, one at a time). The code's
    upgrades stay on the worker's own hardware; here an upgrade into a new 90 s Inferentia VM
    left the CPU source overloaded for 90 s (low scenario, seed 4: 100 s of rejections).
  - Downgrade target: among CPU variants whose batch-1 latency fits the SLO's batch share
    (half), else the fastest (the code's target): the cheapest 31 ms one for a 50 ms SLO is
    counted at 32/s but queues past the SLO at half that (seed 4: flapping replica, 300 rejects).
  - Placement of autoscaler loads counts one GPU device per replica (a replica needing a
    GPU's throughput holds it); the cluster itself time-shares GPUs by memory only.
  - The model autoscaler checks room itself and tells the VM autoscaler which hardware kind
    lacks it: the core resets ``view.unplaced()`` right after applying the tick's actions, so
    it never reports the model autoscaler's own failures, and it does not say which kind.
    It is still read, for the loads the route asked for between ticks.
  - The VM autoscaler's back-off is per hardware kind, and a worker is released only when no
    instance on it is the last copy of a variant used within ``idle_s`` (else releasing it
    would only trade VM cost for reloads).
  - Cold start: ``preload`` loads, before traffic, the variant each application's first query
    would pick (INFaaS's evaluation warms models up). When a query finds nothing loaded and
    no load fits its SLO, it is rejected and the variant it would have used is loaded on the
    next tick, so the application is not starved.
  - Downgrade target: a CPU variant that every requirement the variant *served* within
    ``idle_s`` accepts (all that may use it, when none did). Requiring it to suit every
    requirement that may use the variant kept a GPU variant that a loose, accuracy-hungry
    application could use (but did not) pinned to its GPU worker at 1% utilisation in the
    reproduction (docs/reproduction.md); INFaaS's code decides per variant on its own load.
  - Accuracy binning of the task-level search is not reproduced: the catalog's candidates are
    filtered by the exact minimum accuracy.

Option (off by default; not INFaaS): ``price_aware`` starts, for an application with nothing
running, the variant whose replicas for its recent rate cost least per hour, and upgrades
only when the upgrade costs less per hour than the replicas (or the worker limit leaves no
room for them); it places replicas by memory and cores alone (no per-worker replica cap); and
in place of INFaaS's downgrade rule it *rightsizes*: a variant whose recent load a cheaper
variant (any hardware, any architecture its applications accept, within their SLO) would carry
for at least ``rightsize_margin`` less per hour, for ``downgrade_holddown`` ticks in a row (the same
target each tick), moves there (target loaded first, then the source dropped, as a downgrade);
a variant a move went to is not moved again for ``rightsize_cooldown_s``. Without it an
application that found an expensive variant running (another's GPU) stays on it for good.
INFaaS's own selection is latency-first and price-blind; the option measures what that costs
(benchmarks/bench_infaas.py).

Option (off by default; not INFaaS): ``vm_scale_out="demand"`` adds, in one step, the workers
that the replicas the model autoscaler could not place need (the most of any tick since the
last VM check, at the replicas one worker of the kind takes), instead of the released rule's
one worker per back-off: at 10k QPS the released rule reaches 6 workers in 60 s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from infaas_sim.catalog import Candidates, Catalog
from infaas_sim.hardware import HardwareKind
from infaas_sim.hysteresis import HoldDown
from infaas_sim.placement import KindRoom, TickRoom, replica_units
from infaas_sim.policy import (
    Action,
    Decision,
    Load,
    LoadThenServe,
    Policy,
    Reject,
    Serve,
    SetBatch,
    Unload,
    WorkloadHint,
    register_policy,
)
from infaas_sim.query import Application, Query, Requirement
from infaas_sim.sizing import BATCH_SLO_SHARE, replica_cost_per_hour
from infaas_sim.variant import Variant
from infaas_sim.view import ClusterView, InstanceState, InstanceView, WorkerView
from policies.infaas_common import (
    Option,
    capacity,
    cheapest_option,
    cold_key,
    downgrade_due,
    plan_scale_up,
    price_key,
    replicas_for,
    saturation_throughput,
)
from policies.infaas_vm import SCALE_OUT, VmAutoscaler

_READY = InstanceState.READY
_LOADING = InstanceState.LOADING
_INF = math.inf


class _Cands:
    """What route needs about one memoised candidate set (one requirement at one batch)."""

    __slots__ = ("by_floor", "cpu", "floor", "group", "lat", "loose", "obj", "order", "over", "req", "rows",
                 "rows_epoch", "running", "slo", "under", "use_key", "version")  # fmt: skip

    def __init__(self, obj: Candidates, req: Requirement, batch: int, catalog: Catalog, loose_ms: float) -> None:
        self.obj = obj
        self.req = req
        self.order = obj.indices
        self.slo = _INF if req.slo_ms is None else float(req.slo_ms)
        self.loose = self.slo > loose_ms
        self.lat = [catalog.variants[vi].latency_by_batch[batch] for vi in self.order]
        self.cpu = [catalog.variants[vi].hardware is HardwareKind.CPU for vi in self.order]
        # load + inference latency: the least a query pays to have a variant loaded for it
        self.floor = [catalog.variants[vi].load_latency_ms + x for vi, x in zip(self.order, self.lat, strict=True)]
        self.by_floor = sorted(range(len(self.order)), key=self.floor.__getitem__)
        # Split once (the SLO and the floors are fixed): the candidates a load could fit, in
        # order, and those it cannot even without waiting, by (floor, position).
        self.under = [(k, vi) for k, vi in enumerate(self.order) if self.floor[k] <= self.slo]
        self.over = [(self.floor[k], k, self.order[k]) for k in self.by_floor if self.floor[k] > self.slo]
        self.running: list[tuple[int, float, bool]] = []
        self.version = -1
        self.rows: list[tuple[int, int, float, int | None, float]] = []  # InfaasPolicy._placeable
        self.rows_epoch = -1  # the placement epoch ``rows`` was read at
        self.group: frozenset[int] = frozenset()  # the variants this requirement may use
        self.use_key: tuple[frozenset[int], float] = (frozenset(), _INF)  # (group, SLO) for _used_by


@dataclass
class _Transition:
    """Replace ``src`` by ``replicas`` of ``dst``; unload ``src`` once they are all ready."""

    src: int
    dst: int
    kind: str  # "upgrade", "downgrade" or "rightsize"
    replicas: int  # the target's replicas the move waits for (its own load's and the source's)
    started: float
    for_src: int = 0  # of ``replicas``: those for the source's load


@register_policy("infaas")
class InfaasPolicy(Policy):
    """INFaaS: per-query variant selection, model-level and VM-level autoscaling."""

    def __init__(
        self,
        tick_s: float = 1.0,
        vm_period_s: float = 2.0,
        rate_window_s: float = 2.0,
        slack: float = 1.05,
        loose_slo_ms: float = 100.0,
        blacklist_s: float = 2.0,
        upgrade_load_ratio: float = 1.5,
        max_replicas: int = 32,
        cpu_replicas_per_worker: int = 2,
        gpu_replicas_per_worker: int = 1,
        inf_replicas_per_worker: int = 2,
        scale_down_holddown: int = 10,
        gpu_scale_down_holddown: int = 20,
        inf_scale_down_holddown: int = 15,
        downgrade_holddown: int = 10,
        gpu_downgrade_slo_factor: float = 10.0,
        gpu_downgrade_load_share: float = 0.03,
        inf_downgrade_slo_factor: float = 5.0,
        inf_downgrade_load_share: float = 0.20,
        cpu_high_util: float = 0.8,
        gpu_high_util: float = 0.8,
        inf_high_util: float = 0.7,
        vm_low_util: float = 0.10,
        vm_quiet_checks: int = 15,
        vm_backoff_s: float = 30.0,
        evict_idle_s: float = 10.0,
        idle_s: float = 60.0,
        transition_timeout_s: float = 300.0,
        stopgap: bool = True,
        preload: bool = True,
        price_aware: bool = False,
        rightsize_margin: float = 0.1,
        rightsize_cooldown_s: float = 60.0,
        vm_scale_out: str = "one",
    ) -> None:
        if vm_scale_out not in SCALE_OUT:
            raise self.error(f"vm_scale_out must be 'one' or 'demand', got {vm_scale_out!r}")
        for key, val in (("tick_s", tick_s), ("vm_period_s", vm_period_s), ("rate_window_s", rate_window_s),
                         ("blacklist_s", blacklist_s), ("upgrade_load_ratio", upgrade_load_ratio),
                         ("transition_timeout_s", transition_timeout_s)):  # fmt: skip
            if not val > 0:
                raise self.error(f"{key} must be > 0, got {val}")
        if slack < 1:
            raise self.error(f"slack must be >= 1, got {slack}")
        if not 0 <= rightsize_margin < 1:
            raise self.error(f"rightsize_margin must be in [0, 1), got {rightsize_margin}")
        for key, ival in (("max_replicas", max_replicas), ("scale_down_holddown", scale_down_holddown),
                          ("gpu_scale_down_holddown", gpu_scale_down_holddown),
                          ("inf_scale_down_holddown", inf_scale_down_holddown),
                          ("cpu_replicas_per_worker", cpu_replicas_per_worker),
                          ("gpu_replicas_per_worker", gpu_replicas_per_worker),
                          ("inf_replicas_per_worker", inf_replicas_per_worker),
                          ("downgrade_holddown", downgrade_holddown),
                          ("vm_quiet_checks", vm_quiet_checks)):  # fmt: skip
            if ival < 1:
                raise self.error(f"{key} must be >= 1, got {ival}")
        for key, share in (("gpu_downgrade_load_share", gpu_downgrade_load_share),
                           ("inf_downgrade_load_share", inf_downgrade_load_share), ("cpu_high_util", cpu_high_util),
                           ("gpu_high_util", gpu_high_util), ("inf_high_util", inf_high_util),
                           ("vm_low_util", vm_low_util)):  # fmt: skip
            if not 0 <= share <= 1:
                raise self.error(f"{key} must be in [0, 1], got {share}")
        if min(loose_slo_ms, gpu_downgrade_slo_factor, inf_downgrade_slo_factor, vm_backoff_s, evict_idle_s,
               idle_s, rightsize_cooldown_s) < 0:  # fmt: skip
            raise self.error("thresholds and periods must be >= 0")
        self.tick_s = self._period = float(tick_s)
        self.rate_window_s = float(rate_window_s)
        self.slack = float(slack)
        self.loose_slo_ms = float(loose_slo_ms)
        self.blacklist_s = float(blacklist_s)
        self.upgrade_load_ratio = float(upgrade_load_ratio)
        self.max_replicas = int(max_replicas)
        self.replicas_per_worker = {
            HardwareKind.CPU: int(cpu_replicas_per_worker),
            HardwareKind.GPU: int(gpu_replicas_per_worker),
            HardwareKind.INFERENTIA: int(inf_replicas_per_worker),
        }
        self.scale_down_holddown = int(scale_down_holddown)
        self.holddown = {
            HardwareKind.CPU: int(scale_down_holddown),
            HardwareKind.GPU: int(gpu_scale_down_holddown),
            HardwareKind.INFERENTIA: int(inf_scale_down_holddown),
        }
        self.downgrade_holddown = int(downgrade_holddown)
        self.gpu_downgrade_slo_factor = float(gpu_downgrade_slo_factor)
        self.gpu_downgrade_load_share = float(gpu_downgrade_load_share)
        self.inf_downgrade_slo_factor = float(inf_downgrade_slo_factor)
        self.inf_downgrade_load_share = float(inf_downgrade_load_share)
        self.evict_idle_s = float(evict_idle_s)
        self.idle_s = float(idle_s)
        self.transition_timeout_s = float(transition_timeout_s)
        self.stopgap = bool(stopgap)
        self.preload = bool(preload)
        self.price_aware = bool(price_aware)
        self.rightsize_margin = float(rightsize_margin)
        self.rightsize_cooldown_s = float(rightsize_cooldown_s)
        # the VM-level autoscaler's rule and state (its parameters live there, not here too)
        high_util = {HardwareKind.CPU: float(cpu_high_util), HardwareKind.GPU: float(gpu_high_util),
                     HardwareKind.INFERENTIA: float(inf_high_util)}  # fmt: skip
        self.vm = VmAutoscaler(float(vm_period_s), high_util, float(vm_low_util), int(vm_quiet_checks),
                               float(vm_backoff_s), vm_scale_out)  # fmt: skip
        # --- state, keyed by variant index / worker id / instance id ---------------------
        self._catalog: Catalog | None = None
        self._kinds: list[HardwareKind] = []  # hardware kinds the cluster can start
        self._kind_ok: list[bool] = []  # per variant: its kind is configured
        self._price: list[float] = []  # per variant: $/h of one replica
        self._black: list[float] = []  # per variant: overloaded until
        self._black_slo: list[float] = []  # per variant: for SLOs up to this
        self._cands: dict[int, _Cands] = {}  # id(Candidates) -> route data
        self._groups: dict[tuple[Requirement, int], frozenset[int]] = {}
        self._vi_slo: dict[int, float] = {}  # tightest SLO among requirements that may use it (fallback)
        # per variant: the SLO its batch limit and capacity are sized for (see _sizing_slo)
        self._slo_now: dict[int, float] = {}
        self._cold_slo: dict[int, float] = {}  # per variant in _cold: the tightest SLO that wanted it
        # per variant served tighter than it is sized for: (consecutive ticks, SLO served throughout)
        self._tighten: dict[int, tuple[int, float]] = {}
        self._vi_groups: dict[int, list[frozenset[int]]] = {}
        # per variant: (group, SLO) of each requirement it served -> when it last did
        self._used_by: dict[int, dict[tuple[frozenset[int], float], float]] = {}
        self._running: set[int] = set()
        self._version = 0
        # _load_choice's reading of the workers, while the cluster's placement epoch holds
        self._room_epoch = -1
        self._kind_rooms: dict[HardwareKind, KindRoom] = {}
        self._placed: dict[int, tuple[float, int | None] | None] = {}
        self._serve: dict[int, Serve] = {}
        self._missed: dict[int, float] = {}  # inputs turned away per variant since the tick
        self._cold: dict[int, float] = {}  # variants wanted by queries that found nothing loaded
        self._route_kinds: set[HardwareKind] = set()  # kinds of loads the route asked for
        self._down: HoldDown[int] = HoldDown()  # per variant: scale-down checks in a row
        self._dg: HoldDown[int] = HoldDown()  # per variant: downgrade (rightsize) checks in a row
        self._rs_since: dict[int, float] = {}  # per variant: when a rightsizing made it the target
        self._trans: dict[int, _Transition] = {}  # by source variant
        self._last_tick = 0.0

    # --- binding to a catalog and cluster --------------------------------------------------
    def _bind(self, view: ClusterView) -> Catalog:
        cat = view.catalog
        if cat is self._catalog:
            return cat
        self._catalog = cat
        self._room_epoch = -1  # a new catalog: its variants' sizes are read afresh (and _cands below)
        self._kinds = []
        for kind in HardwareKind:
            try:
                view.instance_type_for(kind)
            except KeyError:
                continue
            self._kinds.append(kind)
        self._kind_ok = [v.hardware in self._kinds for v in cat.variants]
        self._price = [
            replica_cost_per_hour(v, view.instance_type_for(v.hardware)) if ok else _INF
            for v, ok in zip(cat.variants, self._kind_ok, strict=True)
        ]
        self._black = [0.0] * len(cat)
        self._black_slo = [0.0] * len(cat)
        self._cands.clear()
        self._groups.clear()
        self._vi_slo.clear()
        self._slo_now.clear()
        self._tighten.clear()
        self._vi_groups.clear()
        self._used_by.clear()
        self._serve.clear()
        return cat

    def _register(self, req: Requirement, batch: int, indices: Sequence[int]) -> None:
        """Remember which variants a requirement may use: the autoscaler only moves a variant's
        load to variants every requirement using it accepts."""
        key = (req, batch)
        if key in self._groups:
            return
        group = frozenset(indices)
        self._groups[key] = group
        slo = _INF if req.slo_ms is None else float(req.slo_ms)
        for vi in indices:
            self._vi_slo[vi] = min(self._vi_slo.get(vi, _INF), slo)
            self._vi_groups.setdefault(vi, []).append(group)

    def _cands_for(self, candidates: Candidates, query: Query, view: ClusterView) -> _Cands:
        cat = self._bind(view)
        req = query.requirement  # the current stage's, for a pipeline
        info = _Cands(candidates, req, query.batch, cat, self.loose_slo_ms)
        self._cands[id(candidates)] = info
        self._register(req, query.batch, candidates.indices)
        info.group = self._groups[(req, query.batch)]
        info.use_key = (info.group, _INF if req.slo_ms is None else float(req.slo_ms))
        return info

    def _refresh(self, info: _Cands) -> None:
        running = self._running
        info.running = [
            (vi, info.lat[k], info.cpu[k]) for k, vi in enumerate(info.order) if vi in running and self._kind_ok[vi]
        ]
        info.version = self._version

    def _mark_running(self, vi: int) -> None:
        if vi not in self._running:
            self._running.add(vi)
            self._version += 1

    def _sync_running(self, view: ClusterView) -> None:
        now_running = {int(vi) for vi in view.running_variants()}
        if now_running != self._running:
            self._running = now_running
            self._version += 1

    # --- setup -----------------------------------------------------------------------------
    def setup(self, view: ClusterView, apps: Sequence[Application], hints: Mapping[str, WorkloadHint]) -> list[Action]:
        cat = self._bind(view)
        actions: list[Action] = []
        chosen: dict[int, None] = {}  # in the order the applications choose them
        for app, req in ((a, r) for a in apps for r in a.stages):
            cands = cat.candidates(req, app.batch)
            self._register(req, app.batch, cands.indices)
            if not self.preload or not cands.indices:
                continue
            vi = self._cold_choice(cands.indices, req, app.batch)
            if vi is None:
                continue
            slo = _INF if req.slo_ms is None else float(req.slo_ms)
            # sized for the tightest application that starts it, until it has served
            self._slo_now[vi] = min(slo, self._slo_now.get(vi, _INF)) if vi in chosen else slo
            chosen[vi] = None
        for vi in chosen:
            actions.append(Load(cat.variants[vi].variant_id, max_batch=self._batch_limit(vi)))
            self._mark_running(vi)
        return actions

    def _cold_choice(
        self, indices: Sequence[int], req: Requirement, batch: int, demand: float = 0.0, view: ClusterView | None = None
    ) -> int | None:
        """The variant a query loads when none is running: the least load + inference
        latency, CPU first for loose SLOs (as the released code does); with ``price_aware``,
        the cheapest replicas for ``demand`` (inputs/s). With ``view`` (while serving), the
        wait for room counts as well, as it does for the route's own loads (``_load_choice``):
        a variant that needs a new VM waits for its start-up (a minute), one that fits on a
        live worker does not, and one with no room and no worker left to start is skipped
        (unless none has room: then without the wait, for ``_place``'s eviction to make room).
        (Without it, a 50 ms application whose variants were all evicted in a lull waited
        for a new GPU VM, rejected, while a CPU variant could load on a live worker in 1 s.)"""
        assert self._catalog is not None
        slo = _INF if req.slo_ms is None else float(req.slo_ms)
        best: tuple[tuple[float, float], int] | None = None
        for vi in indices:
            if not self._kind_ok[vi]:
                continue
            v = self._catalog.variants[vi]
            lat = v.latency_by_batch[batch]
            load_ms = v.load_latency_ms
            if view is not None:
                room = self._route_room(view, vi, view.now)
                if room is None:
                    continue
                load_ms += room[0] * 1000.0
            if self.price_aware:
                thr = saturation_throughput(v.latency_by_batch, slo)
                key = (price_key(self._price[vi], thr, load_ms, lat, demand, self.slack), vi)
            else:
                key = (cold_key(load_ms, lat, slo, v.hardware is HardwareKind.CPU, self.loose_slo_ms), vi)
            if best is None or key < best:
                best = key
        if best is None and view is not None:  # no room anywhere: for _place's eviction to make some
            return self._cold_choice(indices, req, batch, demand)
        return None if best is None else best[1]

    def _sizing_slo(self, vi: int) -> float | None:
        """The SLO ``vi`` is sized for (batch limit and capacity): the tightest it served within
        ``rate_window_s`` (``_update_slos``), the last such value while it serves nothing, and
        before it has served, the SLO of what made it load. The tightest SLO of every
        requirement that *may* use it is only the fallback: one tight application that never
        routes to a variant must not hold it at batch 1 for the loose ones that do."""
        slo = self._slo_now.get(vi)
        return self._vi_slo.get(vi) if slo is None else slo

    def _batch_limit(self, vi: int) -> int:
        assert self._catalog is not None
        return capacity(self._catalog.variants[vi].latency_by_batch, self._sizing_slo(vi)).batch

    def _update_slos(self, view: ClusterView) -> None:
        """Once a tick, per running variant, the SLO it is sized for, from the tightest SLO it
        served within the rate window (``_used_by``, which route keeps: one dict store per
        query, nothing added to the hot path). Looser: taken at once (nothing tighter came for
        the whole window). Tighter: taken only once a tighter SLO has been served within the
        window at each of ``holddown`` consecutive ticks (the kind's scale-down hold-down), and
        then the loosest of those ticks' tightest SLOs, the one served throughout."""
        assert self._catalog is not None
        variants = self._catalog.variants
        now = view.now
        window = self.rate_window_s
        tighten: dict[int, tuple[int, float]] = {}  # kept only across consecutive ticks
        for vi in self._running:
            used = self._used_by.get(vi)
            if not used:
                continue
            tightest = min((slo for (_, slo), t in used.items() if now - t < window), default=None)
            if tightest is None:  # serves nothing: keep its size
                continue
            cur = self._slo_now.get(vi)
            if cur is None or tightest >= cur:
                self._slo_now[vi] = tightest
                continue
            n, held = self._tighten.get(vi, (0, 0.0))
            n, held = n + 1, max(held, tightest)
            if n >= self.holddown[variants[vi].hardware]:
                self._slo_now[vi] = held
            else:
                tighten[vi] = (n, held)
        self._tighten = tighten

    # --- per query -------------------------------------------------------------------------
    def route(self, query: Query, candidates: Candidates, view: ClusterView) -> Decision:
        info = self._cands.get(id(candidates))
        if info is None or info.obj is not candidates:
            info = self._cands_for(candidates, query, view)
        if info.version != self._version:
            self._refresh(info)
        now = view.now
        b = query.batch
        slo = info.slo
        loose = info.loose
        black = self._black
        black_slo = self._black_slo
        blacklist_s = self.blacklist_s
        routable = view.routable_map().get  # hot path: a dict lookup, not a method call per variant
        best: InstanceView | None = None  # loaded, not overloaded, fits
        best_slack = _INF
        best_cpu: InstanceView | None = None  # the same among CPU variants (loose SLOs)
        cpu_slack = _INF
        fb: InstanceView | None = None  # overloaded (blacklisted) but fits now
        fb_slack = _INF
        close_vi = -1
        close_est = _INF
        for vi, lat, cpu in info.running:
            inst_best: InstanceView | None = None
            est = _INF
            run_ms = 0.0  # of est: the execution of the batch it runs in (the rest is waiting)
            for inst in routable(vi, ()):
                q = inst.queued_inputs
                st = inst.state
                hold = inst.max_wait_s
                if q == 0 and inst.busy_until <= now and st is _READY and not hold:
                    # idle, and it dispatches at once (no batching wait): it runs alone, at
                    # its own batch, whatever the limit; nothing can be faster
                    inst_best, est, run_ms = inst, lat, lat
                    break
                # it waits for the backlog, then runs in a batch that later arrivals fill up
                # to the instance's limit while it waits (the released code, too, estimates
                # batched variants at their full batch), after waiting up to the batcher's
                # max wait for that batch to fill.
                # The backlog is inst.backlog_s(now) inlined, with the same arithmetic in the
                # same order (so the same floats): this loop runs ~6 times per query.
                if st is _LOADING:
                    t = inst.ready_at - now
                    t = t if t > 0.0 else 0.0
                else:
                    t = 0.0
                if inst.busy:
                    d = inst.busy_until - now
                    t += d if d > 0.0 else 0.0
                mb = inst.max_batch
                table = inst.latency_table
                rest = q % mb
                if q:
                    t += ((q // mb) * table[mb] + (table[rest] if rest else 0.0)) / 1000
                e = t * 1000.0
                if hold and mb > b:
                    e += hold * 1000.0
                x = lat if mb <= b else table[mb]
                e += x
                if mb > b and rest and rest + b <= mb:  # it joins the last, partial batch
                    e -= table[rest]
                if e < est:
                    inst_best, est, run_ms = inst, e, x
            if inst_best is None:
                continue
            if est > slo:
                # overloaded when the wait alone exceeds the SLO: a query that only misses
                # because a full batch of the instance's limit runs longer than its SLO allows
                # is skipped, not a mark on the variant
                if est - run_ms > slo:
                    if black[vi] <= now or slo > black_slo[vi]:
                        black_slo[vi] = slo
                    black[vi] = now + blacklist_s
                if est < close_est:
                    close_est, close_vi = est, vi
                continue
            s = slo - est
            if black[vi] > now and slo <= black_slo[vi]:
                if fb is None or s < fb_slack:  # None: an SLO-free query has infinite slack
                    fb, fb_slack = inst_best, s
            elif loose and cpu:
                if best_cpu is None or s < cpu_slack:
                    best_cpu, cpu_slack = inst_best, s
            elif best is None or s < best_slack:
                best, best_slack = inst_best, s
        chosen = best_cpu if best_cpu is not None else best
        if chosen is None:
            load = self._load_choice(info, query, view)
            if isinstance(load, LoadThenServe):
                return load
            if fb is not None:
                chosen = fb
            else:
                return self._reject(info, query, close_vi, close_est, load, view)
        used = self._used_by.get(chosen.vi)
        if used is None:
            used = self._used_by[chosen.vi] = {}
        used[info.use_key] = now
        serve = self._serve.get(chosen.iid)
        if serve is None or serve.instance is not chosen:
            serve = self._serve[chosen.iid] = Serve(chosen)
        return serve

    def _route_room(self, view: ClusterView, vi: int, now: float) -> tuple[float, int | None] | None:
        """(seconds before a load of variant ``vi`` can start, worker) by the cluster's
        placement rule (GPU: memory only), or None where the cluster could not place it."""
        room = self._where(view, vi)
        if room is None:
            return None
        at, wid = room
        return (max(0.0, at - now), wid) if wid is not None else (at, None)

    def _where(self, view: ClusterView, vi: int) -> tuple[float, int | None] | None:
        """Where the cluster would place variant ``vi``: (the worker's ready time, worker), or
        (start-up seconds, None) on a new worker, or None where it could not. It reads no
        clock, so it is kept while the cluster's placement epoch holds, and each kind's
        workers are read once per epoch, not per candidate (issue 16 measured 106 ms a query
        with 10,000 variants and 100 workers a kind; an overloaded burst asks this for every
        query it rejects)."""
        assert self._catalog is not None
        if view.placement_epoch != self._room_epoch:
            self._room_epoch = view.placement_epoch
            self._kind_rooms = {}
            self._placed = {}
        placed = self._placed
        if vi in placed:
            return placed[vi]
        v = self._catalog.variants[vi]
        kind = v.hardware
        room = self._kind_rooms.get(kind)
        if room is None:
            room = self._kind_rooms[kind] = KindRoom(view, kind)
        gpu = kind is HardwareKind.GPU
        # no live worker fits: a new one, if the kind may still grow
        where: tuple[float, int | None] | None = None if room.full else (room.startup_s, None)
        if room.max_memory + 1e-9 >= v.memory_mb and (gpu or room.max_units + 1e-9 >= v.allocation):
            for _key, mem, units, ready_at, wid in room.workers:
                if mem + 1e-9 >= v.memory_mb and (gpu or units + 1e-9 >= v.allocation):
                    where = (ready_at, wid)
                    break
        placed[vi] = where
        return where

    def _placeable(self, info: _Cands, view: ClusterView) -> list[tuple[int, int, float, int | None, float]]:
        """The candidates a load could fit (``info.under``) that the cluster could place now,
        in order: (position, variant, the worker's ready time or a new one's start-up,
        worker or None, load ms). It holds while the placement epoch does."""
        assert self._catalog is not None
        variants = self._catalog.variants
        rows = []
        for k, vi in info.under:
            if self._kind_ok[vi] and (room := self._where(view, vi)) is not None:
                rows.append((k, vi, room[0], room[1], variants[vi].load_latency_ms))
        return rows

    def _load_choice(self, info: _Cands, query: Query, view: ClusterView) -> LoadThenServe | tuple[int, float]:
        """A variant that is not loaded but fits the SLO with its load: LoadThenServe; else
        the closest one, (variant index, estimated ms), or (-1, inf)."""
        assert self._catalog is not None
        now = view.now
        demand = view.app_rate(query.app.index, self.rate_window_s) * query.batch if self.price_aware else 0.0
        variants = self._catalog.variants
        slo = info.slo
        loaded = view.routable_map().get  # a dict lookup per candidate, not a method call (hot when overloaded)
        kind_ok = self._kind_ok
        lat = info.lat
        best: tuple[tuple[float, float], int, int | None] | None = None
        # the closest: the least estimate, the first in candidate order among equals, over the
        # candidates a load could fit (estimated with their wait) and those it cannot (floor)
        close: tuple[int, float, int] = (-1, _INF, -1)
        # the placeable candidates, kept while the placement epoch holds (see _where)
        if info.rows_epoch != view.placement_epoch:
            info.rows = self._placeable(info, view)
            info.rows_epoch = view.placement_epoch
        for k, vi, at, wid, load_ms in info.rows:
            if loaded(vi, ()):
                continue
            wait_s = (at - now if at > now else 0.0) if wid is not None else at
            est = wait_s * 1000.0 + load_ms + lat[k]
            if est > slo:
                if est < close[1]:
                    close = (vi, est, k)
                continue
            if self.price_aware:
                thr = saturation_throughput(variants[vi].latency_by_batch, slo)
                key = (price_key(self._price[vi], thr, est - lat[k], lat[k], demand, self.slack), vi, wid)
            else:
                key = (cold_key(est - lat[k], lat[k], slo, info.cpu[k], self.loose_slo_ms), vi, wid)
            if best is None or key[:2] < best[:2]:
                best = key
        if best is None:
            for f, k, vi in info.over:  # by (floor, position): the first unloaded one is theirs
                if kind_ok[vi] and not loaded(vi, ()):
                    if f < close[1] or (f == close[1] and k < close[2]):
                        close = (vi, f, k)
                    break
            return (close[0], close[1])
        _, vi, wid = best
        self._mark_running(vi)
        self._route_kinds.add(variants[vi].hardware)
        self._slo_now[vi] = slo  # a fresh start: sized for the query that loads it
        return LoadThenServe(variants[vi].variant_id, wid, max_batch=self._batch_limit(vi))

    def _reject(
        self, info: _Cands, query: Query, close_vi: int, close_est: float, load: tuple[int, float], view: ClusterView
    ) -> Reject:
        assert self._catalog is not None
        variants = self._catalog.variants
        what = info.req.describe()
        if close_vi >= 0:
            # a loaded variant is overloaded: its demand grows by what it turned away
            self._missed[close_vi] = self._missed.get(close_vi, 0.0) + query.batch
        if close_vi >= 0 and close_est <= load[1]:
            v = variants[close_vi]
            return Reject(
                f"no variant can serve {what} in time now: the closest, {v.variant_id} ({v.hardware.value}), "
                f"would take {close_est:.0f} ms with its queue"
            )
        loaded = view.routable_map().get
        if close_vi < 0 and not any(loaded(vi, ()) for vi in info.order):
            demand = view.app_rate(query.app.index, self.rate_window_s) * query.batch
            want = self._cold_choice(info.order, info.req, query.batch, demand, view)
            if want is not None:
                self._cold[want] = view.now
                self._cold_slo[want] = min(info.slo, self._cold_slo.get(want, _INF))
        if load[0] >= 0:
            v = variants[load[0]]
            return Reject(
                f"no loaded variant can serve {what} and loading one takes too long: the closest, "
                f"{v.variant_id} ({v.hardware.value}), would take {load[1]:.0f} ms including "
                f"{v.load_latency_ms:.0f} ms to load"
            )
        return Reject(f"no variant can serve {what}: none is loaded and none can be placed")

    # --- per tick --------------------------------------------------------------------------
    def autoscale(self, view: ClusterView) -> list[Action]:
        self._bind(view)
        now = view.now
        dt = max(now - self._last_tick, self._period)
        self._last_tick = now
        self._sync_running(view)
        actions: list[Action] = []
        room = TickRoom(view, None if self.price_aware else self.replicas_per_worker)
        if view.unplaced():
            for kind in self._route_kinds:
                self.vm.want_room(kind)
        self._route_kinds.clear()
        self._update_slos(view)
        self._advance_transitions(view, room, actions)
        self._model_autoscale(view, room, actions, dt)
        self._cold_starts(view, room, actions)
        self._missed.clear()
        self.vm.end_tick()
        if self.vm.due(now):
            self.vm.run(view, self._kinds, actions, True, lambda w: self._releasable(view, w))
        self._prune(view)
        return actions

    def _prune(self, view: ClusterView) -> None:
        if len(self._serve) > 4 * max(1, len(view.all_instances())) + 64:
            live = {i.iid for i in view.all_instances()}
            self._serve = {iid: s for iid, s in self._serve.items() if iid in live}

    def _demand(self, view: ClusterView, vi: int, dt: float) -> float:
        return view.variant_input_rate(vi, self.rate_window_s) + self._missed.get(vi, 0.0) / dt

    def _room_wait(self, view: ClusterView, room: TickRoom, vi: int, n: int) -> float:
        """Seconds before ``n`` more replicas of ``vi`` can start loading, new workers as the VM
        autoscaler would add them: the first after the kind's back-off and a start-up, then
        one per back-off (``vm_scale_out="demand"``: all at once)."""
        assert self._catalog is not None
        v = self._catalog.variants[vi]
        kind = v.hardware
        first, step = self.vm.first_worker_in(kind, view.now, view.instance_type_for(kind).startup_s)
        return room.wait_s(v, vi, n, first, step)

    def _stopgap(self, view: ClusterView, room: TickRoom, actions: list[Action], vi: int, n: int, dst: int) -> None:
        """While an upgrade to ``dst`` is pending, replicate the source by ``n``: into existing
        room, and asking for a worker where its replicas would serve before the target's."""
        if n <= 0:
            return
        now = view.now
        pending = [i.ready_at - now for i in view.instances_of(dst)]
        pending += [view.worker(wid).ready_at - now for (wid, u), k in room.added.items() if u == dst and k > 0]
        dst_wait = max(0.0, min(pending)) if pending else self._room_wait(view, room, dst, 1)
        request = self._room_wait(view, room, vi, n) < dst_wait
        self._place_n(view, room, actions, vi, n, {vi}, request=request)

    def _option(self, vi: int, slo: float | None) -> Option:
        assert self._catalog is not None
        v = self._catalog.variants[vi]
        return Option(vi, capacity(v.latency_by_batch, slo).throughput, v.load_latency_ms / 1000.0, self._price[vi],
                      v.latency_by_batch[1])  # fmt: skip

    def _eligible(self, vi: int) -> frozenset[int]:
        """Variants every requirement that may use ``vi`` accepts."""
        groups = self._vi_groups.get(vi)
        if not groups:
            return frozenset({vi})
        out = groups[0]
        for g in groups[1:]:
            out = out & g
        return out

    def _place(
        self,
        view: ClusterView,
        room: TickRoom,
        actions: list[Action],
        vi: int,
        protect: set[int],
        request: bool = True,
        rest: int = 1,
    ) -> bool:
        """Load one replica of ``vi`` where the strict rule finds room; else evict the least
        recently used idle instance that makes room; else (``request``) ask the VM
        autoscaler for a worker of its kind."""
        assert self._catalog is not None
        v = self._catalog.variants[vi]
        wid = room.place(v, vi)
        if wid is None and request:
            wid = self._evict_for(view, room, actions, v, protect)
        if wid is None:
            if request:
                self.vm.want_room(v.hardware)
                per = room.per_worker(v, vi)
                if per > 0:
                    self.vm.want_workers(v.hardware, rest / per)
            return False
        actions.append(Load(v.variant_id, worker_id=wid, max_batch=self._batch_limit(vi), allow_new_worker=False))
        self._mark_running(vi)
        return True

    def _place_n(
        self,
        view: ClusterView,
        room: TickRoom,
        actions: list[Action],
        vi: int,
        n: int,
        protect: set[int],
        request: bool = True,
    ) -> int:
        """``_place`` up to ``n`` replicas; the first that finds no room asks (``request``) for
        the workers all the rest need (``vm_scale_out="demand"`` adds them in one step)."""
        for k in range(n):
            if not self._place(view, room, actions, vi, protect, request=request, rest=n - k):
                return k
        return n

    def _evict_for(
        self, view: ClusterView, room: TickRoom, actions: list[Action], v: Variant, protect: set[int]
    ) -> int | None:
        now = view.now
        need_u = replica_units(v)
        best: tuple[float, int, int, float, float] | None = None
        for w in room.workers(v.hardware):
            mem, units = room.free(w)
            for inst in w.instance_views():
                if (
                    inst.state is not _READY
                    or inst.vi in protect
                    or inst.vi in self._trans
                    or inst.queued_inputs
                    or inst.inflight_inputs
                    or now - inst.last_used < self.evict_idle_s
                ):
                    continue
                freed_u = replica_units(inst.variant)
                if mem + inst.variant.memory_mb + 1e-9 >= v.memory_mb and units + freed_u + 1e-9 >= need_u:
                    key = (inst.last_used, inst.iid, w.wid, inst.variant.memory_mb, freed_u)
                    if best is None or key < best:
                        best = key
        if best is None:
            return None
        _, iid, wid, mem_freed, units_freed = best
        actions.append(Unload(iid))
        room.take(wid, v.memory_mb - mem_freed, need_u - units_freed)
        return wid

    def _model_autoscale(self, view: ClusterView, room: TickRoom, actions: list[Action], dt: float) -> None:
        assert self._catalog is not None
        variants = self._catalog.variants
        in_transition = {t.dst for t in self._trans.values()} | set(self._trans)
        for vi in sorted(self._running):
            insts = list(view.instances_of(vi))
            if not insts or not self._kind_ok[vi]:
                continue
            v = variants[vi]
            r = len(insts)
            slo = self._sizing_slo(vi)
            self._set_batches(vi, insts, actions)
            cur = self._option(vi, slo)
            demand = self._demand(view, vi, dt)
            need = replicas_for(demand, cur.throughput, self.slack)
            if vi in in_transition:
                self._down.reset(vi)
                self._dg.reset(vi)
                tr = self._trans.get(vi)
                if tr is not None and tr.kind == "upgrade":
                    self._grow_transition(view, room, actions, tr, demand, slo)
                    if self.stopgap and need > r:
                        self._stopgap(view, room, actions, vi, min(need, self.max_replicas) - r, tr.dst)
                continue
            if need > r:
                self._down.reset(vi)
                self._dg.reset(vi)
                elig = self._eligible(vi)
                ups = [
                    self._option(u, slo)
                    for u in sorted(elig)
                    if u != vi and self._kind_ok[u] and variants[u].architecture == v.architecture
                ]
                plan = plan_scale_up(cur, r, demand, ups, self.slack, self.upgrade_load_ratio, self.max_replicas,
                                     room.count(v, vi, need - r, self.price_aware), self.price_aware)  # fmt: skip
                if plan.action == "upgrade":
                    self._start_transition(view, room, actions, vi, plan.target, plan.replicas, "upgrade")
                    if self.stopgap:
                        self._stopgap(view, room, actions, vi, min(need, self.max_replicas) - r, plan.target)
                elif plan.action == "replicate":
                    self._place_n(view, room, actions, vi, plan.replicas - r, {vi})
                continue
            if need < r:
                if self._down.agree(vi, self.holddown[v.hardware]):
                    victim = min(insts, key=lambda i: self._unload_key(view, i))
                    actions.append(Unload(victim.iid))
                    room.take(victim.worker_id, -v.memory_mb, -replica_units(v))
                    r -= 1
            else:
                self._down.reset(vi)
            if self.price_aware:
                # The same target for the hold-down, and not soon after a move here: demand
                # that moves between two variants' replica steps must not move the load back and forth.
                settled = view.now - self._rs_since.get(vi, -_INF) >= self.rightsize_cooldown_s
                target = self._rightsize_target(room, vi, demand, max(need, 1), view.now) if settled else None
                if target is None:
                    self._dg.reset(vi)
                elif self._dg.agree(vi, self.downgrade_holddown, target=target[0]):
                    self._rs_since[target[0]] = view.now
                    self._start_transition(view, room, actions, vi, target[0], target[1], "rightsize")
            elif slo is not None and downgrade_due(
                v.hardware, slo, v.latency_by_batch[1], demand, r * cur.throughput,
                self.gpu_downgrade_slo_factor, self.gpu_downgrade_load_share,
                self.inf_downgrade_slo_factor, self.inf_downgrade_load_share,
            ):  # fmt: skip
                if self._dg.agree(vi, self.downgrade_holddown):
                    target = self._downgrade_target(vi, slo, demand, r, view.now)
                    if target is not None:
                        self._start_transition(view, room, actions, vi, target[0], target[1], "downgrade")
            else:
                self._dg.reset(vi)

    def _set_batches(self, vi: int, insts: Sequence[InstanceView], actions: list[Action]) -> None:
        """Keep every instance's batcher at the variant's batch limit: it follows the SLO the
        variant is sized for as that changes."""
        limit = self._batch_limit(vi)
        for inst in insts:
            if inst.max_batch != limit:
                actions.append(SetBatch(inst.iid, limit))

    def _unload_key(self, view: ClusterView, inst: InstanceView) -> tuple[int, int, int]:
        """Scale down where it frees a worker soonest: fewest instances on its worker, then
        the least queued, then the newest."""
        return (len(view.worker(inst.worker_id).instance_views()), inst.queued_inputs + inst.inflight_inputs, -inst.iid)

    def _eligible_recent(self, vi: int, now: float) -> frozenset[int]:
        """Variants every requirement that ``vi`` served within ``idle_s`` accepts (all that may
        use it when none did): a downgrade moves the load it has, not load it might get."""
        groups = [g for (g, _), t in self._used_by.get(vi, {}).items() if now - t < self.idle_s]
        if not groups:
            return self._eligible(vi)
        out = groups[0]
        for g in groups[1:]:
            out = out & g
        return out

    def _downgrade_target(self, vi: int, slo: float, demand: float, r: int, now: float) -> tuple[int, int] | None:
        assert self._catalog is not None
        variants = self._catalog.variants
        v = variants[vi]
        cpu = HardwareKind.CPU
        elig = [u for u in sorted(self._eligible_recent(vi, now)) if self._kind_ok[u] and variants[u].hardware is cpu]
        same = [u for u in elig if variants[u].architecture == v.architecture]
        pool = same or elig
        # the cheapest whose batch-1 latency fits the SLO's batch share (its capacity holds
        # within the SLO); else the fastest, the released code's target
        fits = [u for u in pool if variants[u].latency_by_batch[1] <= BATCH_SLO_SHARE * slo]
        if not fits and pool:
            fits = [min(pool, key=lambda u: (variants[u].latency_by_batch[1], u))]
        pick = cheapest_option([self._option(u, slo) for u in fits], demand, self.slack)
        if pick is None:
            return None
        opt, n = pick
        if n * opt.price_per_hour >= r * self._price[vi]:
            return None
        return opt.index, n

    def _rightsize_target(
        self, room: TickRoom, vi: int, demand: float, need: int, now: float
    ) -> tuple[int, int] | None:
        """``price_aware``: the cheapest variant (and replicas) for ``vi``'s recent load among
        those its recent users accept within their tightest SLO and the cluster has room for
        (live workers plus those its kind may add), if it saves at least ``rightsize_margin``
        of the ``need`` replicas' price. Room matters: a target without it would be upgraded
        away again, and the two would alternate."""
        assert self._catalog is not None
        variants = self._catalog.variants
        recent = [slo for (_, slo), t in self._used_by.get(vi, {}).items() if now - t < self.idle_s]
        sized = self._sizing_slo(vi)
        slo = min(recent, default=_INF if sized is None else sized)
        elig = [
            u
            for u in sorted(self._eligible_recent(vi, now))
            if u != vi and self._kind_ok[u] and variants[u].latency_by_batch[1] <= slo
        ]
        opts = []
        for u in elig:
            o = self._option(u, slo)
            n = replicas_for(demand, o.throughput, self.slack)
            if room.count(variants[u], u, n, new_workers=True) >= n:
                opts.append(o)
        pick = cheapest_option(opts, demand, self.slack)
        if pick is None:
            return None
        opt, n = pick
        if n * opt.price_per_hour > (1.0 - self.rightsize_margin) * need * self._price[vi]:
            return None
        return opt.index, n

    def _start_transition(
        self, view: ClusterView, room: TickRoom, actions: list[Action], src: int, dst: int, replicas: int, kind: str
    ) -> None:
        have = len(view.instances_of(dst))
        # the target takes over the source's load: size it for the source's SLO (and for its
        # own, if it already serves)
        src_slo = self._sizing_slo(src)
        src_slo = _INF if src_slo is None else src_slo
        self._slo_now[dst] = min(src_slo, self._slo_now.get(dst, _INF)) if have else src_slo
        total = self._target_replicas(view, src, dst, replicas, have)
        self._trans[src] = _Transition(src, dst, kind, total, view.now, for_src=min(replicas, total))
        self._place_n(view, room, actions, dst, total - have, {src, dst})

    def _target_replicas(self, view: ClusterView, src: int, dst: int, replicas: int, have: int) -> int:
        """Replicas the target of a move needs: ``replicas`` for the source's load alone when
        it serves nothing yet; when it already serves, enough for its own load plus the
        source's. Counting the target's existing replicas as the move's (as before) made a move
        onto a serving target complete at once: the source's fresh replicas were unloaded the
        tick after they were placed, and replicated again, 40 loads in 20 s in the medium
        burst on the measured catalog, with the load nowhere."""
        if not have:
            return replicas
        dt = self._period
        demand = self._demand(view, src, dt) + self._demand(view, dst, dt)
        slo = self._sizing_slo(dst)
        need = replicas_for(demand, self._option(dst, slo).throughput, self.slack)
        return min(max(need, replicas), self.max_replicas)

    def _grow_transition(
        self,
        view: ClusterView,
        room: TickRoom,
        actions: list[Action],
        tr: _Transition,
        demand: float,
        slo: float | None,
    ) -> None:
        """An upgrade in flight follows its source's demand, as the released autoscaler
        re-decides every tick: sized once at its start, an upgrade begun early in a burst
        (42 inputs/s) finished with one replica for 145 (medium, measured catalog, seed 0)."""
        need = min(replicas_for(demand, self._option(tr.dst, slo).throughput, self.slack), self.max_replicas)
        have = len(view.instances_of(tr.dst))
        base = tr.replicas - tr.for_src
        want = base + need
        if want <= tr.replicas:
            return
        tr.replicas, tr.for_src = min(want, self.max_replicas), need
        self._place_n(view, room, actions, tr.dst, tr.replicas - have, {tr.src, tr.dst})

    def _advance_transitions(self, view: ClusterView, room: TickRoom, actions: list[Action]) -> None:
        now = view.now
        for src, tr in list(self._trans.items()):
            src_insts = list(view.instances_of(src))
            dst_insts = list(view.instances_of(tr.dst))
            if not src_insts:
                del self._trans[src]
                continue
            ready = sum(1 for i in dst_insts if i.state is _READY)
            timed_out = now - tr.started > self.transition_timeout_s
            if (ready >= tr.replicas) or (timed_out and ready > 0):
                for inst in src_insts:  # make-before-break: the target is up, drop the source
                    actions.append(Unload(inst.iid))
                del self._trans[src]
                self._down.reset(tr.dst)
                self._dg.reset(tr.dst)
                continue
            if timed_out:
                del self._trans[src]
                continue
            self._place_n(view, room, actions, tr.dst, tr.replicas - len(dst_insts), {src, tr.dst})

    def _cold_starts(self, view: ClusterView, room: TickRoom, actions: list[Action]) -> None:
        """Load what queries that found nothing loaded wanted; keep asking (for a worker,
        if none has room) until it is placed, for up to ``idle_s``."""
        now = view.now
        for vi, since in sorted(self._cold.items()):
            if view.instances_of(vi) or now - since > self.idle_s:
                del self._cold[vi]
                self._cold_slo.pop(vi, None)
                continue
            self._slo_now[vi] = self._cold_slo.get(vi, _INF)  # sized for the queries that wanted it
            if self._place(view, room, actions, vi, {vi}):
                del self._cold[vi]
                self._cold_slo.pop(vi, None)

    # --- VM level --------------------------------------------------------------------------
    def _releasable(self, view: ClusterView, w: WorkerView) -> bool:
        """No instance on ``w`` is the last copy of a variant still in use, or in a transition."""
        now = view.now
        busy = {t.dst for t in self._trans.values()} | set(self._trans)
        for inst in w.instance_views():
            if inst.vi in busy:
                return False
            if now - inst.last_used >= self.idle_s:
                continue
            if not any(o.worker_id != w.wid for o in view.instances_of(inst.vi)):
                return False
        return True
