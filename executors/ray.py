"""The ``ray`` executor: each worker (VM) of the cluster model is a Ray actor.

A worker's actor is created on the worker's first load, placed with Ray's resource model
(``num_cpus`` for the VM's vCPUs, ``num_gpus`` for its GPUs, the custom resource
``neuron_cores`` for Inferentia NeuronCores, which is also the name Ray auto-detects on Neuron
nodes; see https://docs.ray.io/en/latest/ray-core/scheduling/accelerators.html), and holds
the worker's runtime sessions (:mod:`executors.ray_actor`). Loads, batches and unloads are
actor calls; each call's ``ObjectRef.future()`` posts its completion into the
:class:`~infaas_sim.clock.WallClockEnvironment`, which wakes the cluster's loop.

VM autoscaling: adding a worker starts an actor (on a local cluster, on the existing nodes);
releasing a worker kills it, freeing its resources. With ``request_resources`` on (the
default when joining a cluster by address) the executor also tells the Ray autoscaler the
bundles of all live workers (``ray.autoscaler.sdk.request_resources``), so a cloud cluster
adds nodes for new workers and may remove idle ones. An actor that cannot be placed within
``placement_timeout_s`` crashes its worker with that fault.

Set-up: the cluster loads a policy's set-up instances instantly and calls ``load_now``, which
starts the worker's actor and opens the session before the run's clock starts. ``prestart``
({kind: count}) starts actors ahead of that, and ``preload`` (variant ids, catalog runner)
opens sessions in them; the first workers of that kind adopt them.

Faults: an actor that dies (killed, OOM, its node lost) surfaces as ``RayActorError`` on its
calls; the executor then crashes the worker in the cluster model (``Cluster.crash_worker``):
its queued and in-flight queries fail with the fault recorded, and the policy replaces it
(a new worker, a new actor). A crash injected by the run (``run.faults``) kills the actor.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from executors.ray_actor import RUNNERS, LoadSpec, WorkerRuntime, make_session_factory
from infaas_sim.clock import Clock, Completion
from infaas_sim.errors import ConfigError
from infaas_sim.executor import Executor, register_executor
from infaas_sim.hardware import HardwareKind, InstanceType
from infaas_sim.view import InstanceState, WorkerState

if TYPE_CHECKING:
    from concurrent.futures import Future

    from infaas_sim.cluster import Cluster, Instance, Worker
    from infaas_sim.query import Query

log = logging.getLogger(__name__)

_RESOURCE_KEYS = {"num_cpus", "num_gpus", "neuron_cores", "resources"}


def actor_resources(itype: InstanceType, override: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Ray actor options for a worker of ``itype``: the VM's vCPUs, GPUs or NeuronCores,
    with ``override`` (keys num_cpus, num_gpus, neuron_cores, resources) replacing them."""
    opts: dict[str, Any] = {"num_cpus": float(itype.vcpus)}
    custom: dict[str, float] = {}
    if itype.kind is HardwareKind.GPU:
        opts["num_gpus"] = float(itype.accelerators)
    elif itype.kind is HardwareKind.INFERENTIA:
        custom["neuron_cores"] = float(itype.accelerators)
    o = dict(override or {})
    unknown = sorted(set(o) - _RESOURCE_KEYS)
    if unknown:
        raise ConfigError(f"executor ray: unknown resource key(s) {unknown} (allowed: {sorted(_RESOURCE_KEYS)})")
    for key in ("num_cpus", "num_gpus", "neuron_cores"):
        if key in o:
            v = o[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                raise ConfigError(f"executor ray: resources.{itype.kind.value}.{key} must be a number >= 0, got {v!r}")
            if key == "neuron_cores":
                custom["neuron_cores"] = float(v)
            else:
                opts[key] = float(v)
    custom.update({str(k): float(v) for k, v in dict(o.get("resources") or {}).items()})
    if custom:
        opts["resources"] = custom
    return opts


def bundle_of(opts: Mapping[str, Any]) -> dict[str, float]:
    """The autoscaler bundle (resource name -> amount) of actor options."""
    b = {"CPU": float(opts.get("num_cpus", 0.0)), "GPU": float(opts.get("num_gpus", 0.0))}
    b.update({str(k): float(v) for k, v in dict(opts.get("resources") or {}).items()})
    return {k: v for k, v in b.items() if v > 0}


@dataclass
class _Slot:
    """A worker's actor, as the executor tracks it."""

    wid: int
    handle: Any
    options: dict[str, Any]
    alive: bool = True
    placed: bool = False
    placement: dict[str, Any] = field(default_factory=dict)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")



def _reachable(address: str, timeout_s: float) -> None:
    """A ``host:port`` (or ``ray://host:port``) address answers within ``timeout_s``, else a
    one-line error: ray.init itself retries a dead address for minutes."""
    import socket

    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return  # 'auto' and other forms: Ray resolves them
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"executor ray: cannot reach Ray at {address!r} within {timeout_s:g} s "
            f"({reason}; executor.params.connect_timeout_s)"
        ) from None

@register_executor("ray")
class RayExecutor(Executor):
    realtime = True

    def __init__(
        self,
        address: str = "local",
        num_cpus: float | None = None,
        runner: str = "catalog",
        runner_params: Mapping[str, Any] | None = None,
        resources: Mapping[str, Mapping[str, Any]] | None = None,
        placement_timeout_s: float = 60.0,
        max_concurrency: int = 16,
        request_resources: bool | None = None,
        runtime_env: Mapping[str, Any] | None = None,
        shutdown: bool | None = None,
        prestart: Mapping[str, int] | None = None,
        preload: Sequence[str] = (),
        connect_timeout_s: float = 10.0,
    ) -> None:
        if not isinstance(address, str) or not address:
            raise ConfigError(f"executor ray: address must be 'local' or a Ray address, got {address!r}")
        if num_cpus is not None and not num_cpus > 0:
            raise ConfigError(f"executor ray: num_cpus must be > 0, got {num_cpus}")
        timeout = connect_timeout_s
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ConfigError(f"executor ray: connect_timeout_s must be > 0, got {connect_timeout_s!r}")
        self.connect_timeout_s = float(connect_timeout_s)
        if not placement_timeout_s > 0:
            raise ConfigError(f"executor ray: placement_timeout_s must be > 0, got {placement_timeout_s}")
        if max_concurrency < 1:
            raise ConfigError(f"executor ray: max_concurrency must be >= 1, got {max_concurrency}")
        kinds = {k.value for k in HardwareKind}
        self.resources = {str(k): dict(v or {}) for k, v in dict(resources or {}).items()}
        bad = sorted(set(self.resources) - kinds)
        if bad:
            raise ConfigError(f"executor ray: resources for unknown hardware kind(s) {bad} (known: {sorted(kinds)})")
        for k, v in self.resources.items():  # validate now: a bad key is a config error, not a mid-run one
            actor_resources(InstanceType("check", HardwareKind(k), 1, 1, 0.0, 0.0, 1), v)
        if runner not in RUNNERS:
            raise ConfigError(f"executor ray: unknown runner {runner!r} (known: {', '.join(RUNNERS)})")
        if runner == "catalog":
            # Check the catalog on the driver too: a bad path is a config error before Ray starts.
            make_session_factory(runner, dict(runner_params or {}), 0)
        self.address = address
        self.num_cpus = num_cpus
        self.runner = runner
        self.runner_params = dict(runner_params or {})
        self.placement_timeout_s = float(placement_timeout_s)
        self.max_concurrency = int(max_concurrency)
        self.request_resources = (address != "local") if request_resources is None else bool(request_resources)
        self.runtime_env = dict(runtime_env) if runtime_env else None
        self.shutdown = shutdown
        self.prestart = {str(k): int(v) for k, v in dict(prestart or ({"cpu": 1} if preload else {})).items()}
        bad = sorted(set(self.prestart) - kinds)
        if bad or any(n < 0 for n in self.prestart.values()):
            raise ConfigError(
                f"executor ray: prestart maps hardware kinds {sorted(kinds)} to counts >= 0, got {prestart}"
            )
        if preload and runner != "catalog":
            raise ConfigError("executor ray: preload needs runner catalog (it opens the catalog's artifacts)")
        self.preload = [str(v) for v in preload]
        self._owns_ray = False
        self._slots: dict[int, _Slot] = {}
        self._cluster: Cluster | None = None
        self.compute_s: list[float] = []  # per batch: seconds the runtime took inside the actor
        self.actors_started = 0
        self.kills: list[tuple[float, int, str]] = []  # (time, worker id, why) per actor killed
        self.actor_stats: dict[int, dict[str, int]] = {}  # at the end of a run, per live actor
        self._spares: dict[str, list[tuple[Any, dict[str, Any], dict[str, Any]]]] = {}
        # Connect now, not in bind: starting Ray takes seconds, and the wall clock of a run
        # starts when its environment is made (run_experiment makes it after the executor).
        self._connect()
        self._prestart()

    # --- Ray ----------------------------------------------------------------------------
    def _connect(self) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("executor ray needs Ray: pip install 'infaas-sim[ray]'") from None
        self._ray = ray
        if ray.is_initialized():
            return  # a Ray instance this process already joined (tests, notebooks): reuse it
        kw: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
        if self.runtime_env:
            kw["runtime_env"] = self.runtime_env
        if self.address == "local":
            kw["num_cpus"] = self.num_cpus
        else:
            kw["address"] = self.address
            _reachable(self.address, self.connect_timeout_s)
        try:
            ray.init(**kw)
        except Exception as exc:  # any failure to start or join is a config error
            msg = f"executor ray: cannot start or join Ray at {self.address!r}: {_first_line(exc)}"
            raise ConfigError(msg) from None
        self._owns_ray = True

    def _prestart(self) -> None:
        """Start actors (and open the ``preload`` sessions in each) before the run's clock:
        the first workers of their kind adopt them, as the onnxruntime executor's preloaded
        sessions serve the instances a policy loads at set-up. Their resources are
        ``resources.<kind>`` (the instance type is not known yet; a missing amount is 1)."""
        if not any(self.prestart.values()):
            return
        pending = []
        for kind, n in self.prestart.items():
            probe = InstanceType("prestart", HardwareKind(kind), 1, 1, 0.0, 0.0, 1)
            opts = actor_resources(probe, self.resources.get(kind))
            for _ in range(n):
                handle = (
                    self._remote_cls()
                    .options(**self._actor_options(opts))
                    .remote(-1, self.runner, self.runner_params, 0)
                )
                pending.append((kind, handle, opts, handle.ready.remote(), handle.preload.remote(self.preload)))
        try:
            for kind, handle, opts, ready, loaded in pending:
                info = self._ray.get(ready, timeout=self.placement_timeout_s)
                self._ray.get(loaded, timeout=self.placement_timeout_s)
                self._spares.setdefault(kind, []).append((handle, opts, info))
                self.actors_started += 1
        except Exception as exc:
            for _, handle, *_ in pending:
                with contextlib.suppress(Exception):
                    self._ray.kill(handle, no_restart=True)
            cause = getattr(exc, "cause", None) or exc
            raise ConfigError(f"executor ray: prestarting actors failed: {_first_line(cause)}") from None

    def _remote_cls(self) -> Any:
        return self._ray.remote(WorkerRuntime)

    def _actor_options(self, opts: Mapping[str, Any]) -> dict[str, Any]:
        return {"max_concurrency": self.max_concurrency, "max_restarts": 0, **opts}

    def bind(self, clock: Clock, seed: int) -> None:
        if not clock.realtime:
            raise ConfigError("executor ray runs on wall-clock time: use a WallClockEnvironment")
        super().bind(clock, seed)
        self._slots = {}
        self._cluster = None
        self.compute_s = []
        self.kills = []
        self.actor_stats = {}

    def _spawn(self, w: Worker) -> _Slot:
        spares = self._spares.get(w.kind.value)
        if spares:  # a prestarted actor, placed and with its preloaded sessions
            handle, opts, info = spares.pop(0)
            slot = _Slot(w.wid, handle, opts, placed=True, placement=dict(info, wid=w.wid))
            self._slots[w.wid] = slot
            self._sync_requests()
            return slot
        opts = actor_resources(w.itype, self.resources.get(w.kind.value))
        handle = (
            self._remote_cls()
            .options(**self._actor_options(opts))
            .remote(w.wid, self.runner, self.runner_params, self.seed)
        )
        slot = _Slot(w.wid, handle, opts)
        self._slots[w.wid] = slot
        self.actors_started += 1
        self._watch(handle.ready.remote(), None, slot)
        self.clock.call_later(self.placement_timeout_s, lambda: self._placement_check(slot))
        self._sync_requests()
        return slot

    def _slot_for(self, instance: Instance) -> _Slot:
        self._cluster = instance.cluster
        self._reap()
        slot = self._slots.get(instance.worker.wid)
        if slot is None:
            slot = self._spawn(instance.worker)
        return slot

    def _reap(self) -> None:
        """Kill actors whose workers the cluster released without an unload (an empty
        worker removed, for instance)."""
        if self._cluster is None:
            return
        for wid, slot in list(self._slots.items()):
            w = self._cluster.workers.get(wid)
            if slot.alive and (w is None or w.state in (WorkerState.RELEASED, WorkerState.CRASHED)):
                self._kill(
                    slot, "worker released" if w is not None and w.state is WorkerState.RELEASED else "worker gone"
                )

    def _kill(self, slot: _Slot, why: str) -> None:
        if not slot.alive:
            return
        slot.alive = False
        self.kills.append((self.clock.now, slot.wid, why))
        with contextlib.suppress(Exception):  # already dead: nothing to free
            self._ray.kill(slot.handle, no_restart=True)
        self._sync_requests()

    def _sync_requests(self) -> None:
        if not self.request_resources:
            return
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[bundle_of(s.options) for s in self._slots.values() if s.alive])

    def _placement_check(self, slot: _Slot) -> None:
        if slot.alive and not slot.placed:
            self._lose(slot, f"Ray could not place worker {slot.wid}'s actor {bundle_of(slot.options)} "
                             f"within {self.placement_timeout_s:g} s")  # fmt: skip

    def _lose(self, slot: _Slot, fault: str) -> None:
        """The worker's actor is gone: crash the worker in the cluster model."""
        self._kill(slot, fault)
        if self._cluster is not None:
            self._cluster.crash_worker(slot.wid, fault)

    # --- completions --------------------------------------------------------------------
    def _watch(self, ref: Any, event: Completion | None, slot: _Slot, batch: bool = False) -> None:
        post = self.clock.post
        ref.future().add_done_callback(lambda fut: post(self._settle, fut, event, slot, batch))

    def _settle(self, fut: Future[Any], event: Completion | None, slot: _Slot, batch: bool = False) -> None:
        """On the loop's thread: resolve ``event`` with the call's outcome (``batch``: a run,
        whose compute seconds are kept)."""
        exc = fut.exception()
        if exc is None:
            value: Any = fut.result()
            if event is None:  # the ready() call: the actor is placed
                slot.placed = True
                slot.placement = dict(value)
            else:
                if batch:
                    self.compute_s.append(float(value or 0.0))
                event.succeed(value)
            return
        if isinstance(exc, self._ray.exceptions.RayActorError):
            if slot.alive:  # not one this executor killed on purpose
                self._lose(slot, f"Ray actor died ({_first_line(exc)})")
            if event is not None:
                event.defused = True  # the crash already failed this call's queries
                event.fail(exc)
            return
        if event is not None:
            cause = getattr(exc, "cause", None) or exc
            event.fail(RuntimeError(_first_line(cause)))

    # --- the executor interface ---------------------------------------------------------
    def load(self, instance: Instance) -> Completion:
        slot = self._slot_for(instance)
        event = self.clock.pending()
        spec = LoadSpec(instance.iid, instance.variant, instance.cores)
        self._watch(slot.handle.load.remote(spec), event, slot)
        return event

    def load_now(self, instance: Instance) -> None:
        """A set-up load (before traffic): start the actor and open the session, waiting for both."""
        slot = self._slot_for(instance)
        spec = LoadSpec(instance.iid, instance.variant, instance.cores)
        try:
            self._ray.get(slot.handle.load.remote(spec), timeout=self.placement_timeout_s)
        except Exception as exc:  # unplaceable or failed: the worker crashes once the run starts
            fault = f"set-up load of {instance.variant.variant_id} on worker {slot.wid} failed: {_first_line(exc)}"
            self.clock.call_later(0, lambda: self._lose(slot, fault))
            return
        slot.placed = True

    def run(self, instance: Instance, inputs: int, queries: Sequence[Query]) -> Completion:
        slot = self._slot_for(instance)
        event = self.clock.pending()
        spec = LoadSpec(instance.iid, instance.variant, instance.cores)
        self._watch(slot.handle.run.remote(spec, inputs, instance.worker.slowdown * instance.drift), event, slot,
                    batch=True)  # fmt: skip
        return event

    def unload(self, instance: Instance) -> None:
        slot = self._slots.get(instance.worker.wid)
        if slot is None or not slot.alive:
            return
        w = instance.worker
        if instance.state is InstanceState.DEAD:
            self._kill(slot, "worker crashed")  # an injected fault: the actor goes with its worker
            return
        slot.handle.unload.remote(instance.iid)
        if not w.instances:
            # The cluster may be releasing the worker (it marks it released right after this
            # call): look once the current action is applied, and free the actor's resources.
            self.clock.call_later(0, self._reap)

    def close(self) -> None:
        self._reap()  # a worker released in the run's last moments frees its actor as released
        live = [s for s in self._slots.values() if s.alive]
        with contextlib.suppress(Exception):  # what each actor did, for operators and tests
            got = self._ray.get([s.handle.stats.remote() for s in live], timeout=10)
            self.actor_stats = {s.wid: dict(g) for s, g in zip(live, got, strict=True)}
        for slot in self._slots.values():
            self._kill(slot, "end of run")
        for spares in self._spares.values():  # prestarted actors no worker adopted
            for handle, *_ in spares:
                with contextlib.suppress(Exception):
                    self._ray.kill(handle, no_restart=True)
        self._spares = {}
        if self.request_resources:
            from ray.autoscaler.sdk import request_resources

            request_resources(bundles=[])
        if self.shutdown if self.shutdown is not None else self._owns_ray:
            self._ray.shutdown()
            self._owns_ray = False

    # --- for tests and operators --------------------------------------------------------
    def actor_of(self, wid: int) -> Any:
        """The live actor handle of worker ``wid`` (KeyError if it has none)."""
        slot = self._slots[wid]
        if not slot.alive:
            raise KeyError(f"worker {wid}'s actor is dead")
        return slot.handle

    def live_actors(self) -> dict[int, Any]:
        return {wid: s.handle for wid, s in self._slots.items() if s.alive}

    def placements(self) -> dict[int, dict[str, Any]]:
        """Where each placed actor runs: pid, node id, assigned resources."""
        return {wid: dict(s.placement) for wid, s in self._slots.items() if s.placed}
