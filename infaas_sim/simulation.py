"""The run loop: wire a catalog, a workload, a policy and an executor onto an environment.

Plain data in (specs, arrival arrays), plain data out (:class:`RunResult` frames and a
summary dict); the SimPy engine stays at the edge. The same function runs on virtual time
(``simpy.Environment``) or wall-clock time (:class:`~infaas_sim.clock.WallClockEnvironment`).

A workload with arrivals after ``run.duration_s`` is refused (a ConfigError naming how many),
so that every arrival of a run has a record. Queries still queued or running at
``duration_s + drain_s`` fail with a reason saying so. The autoscale ticker resets the
cluster's unplaced-load counts before applying the policy's actions, so the next tick's view
reports this tick's failed placements and the route's since (``view.unplaced()`` and
``view.unplaced_loads_by_kind()``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import simpy

from infaas_sim import interrupt
from infaas_sim.catalog import Catalog
from infaas_sim.clock import Clock
from infaas_sim.cluster import Cluster
from infaas_sim.controller import Controller
from infaas_sim.errors import ConfigError
from infaas_sim.executor import Executor
from infaas_sim.hardware import DEFAULT_INSTANCE_TYPES, DEFAULT_TYPE_BY_KIND, HardwareKind, InstanceType
from infaas_sim.interrupt import Interrupted
from infaas_sim.metrics import (
    Recorder,
    TimelineSampler,
    instances_frame,
    summarize,
    timeline_frame,
)
from infaas_sim.policy import Policy, WorkloadHint
from infaas_sim.query import Application, Query
from infaas_sim.reprofile import Reprofiler, ReprofileSpec
from infaas_sim.view import ClusterView, WorkerState

log = logging.getLogger("infaas_sim.run")


@dataclass(frozen=True)
class ClusterSpec:
    instance_types: Mapping[str, InstanceType] = field(default_factory=lambda: dict(DEFAULT_INSTANCE_TYPES))
    type_by_kind: Mapping[HardwareKind, str] = field(default_factory=lambda: dict(DEFAULT_TYPE_BY_KIND))
    min_workers: Mapping[HardwareKind, int] = field(default_factory=dict)
    max_workers: Mapping[HardwareKind, int] = field(default_factory=dict)
    max_queue_s: float = 30.0
    # In-place vertical scaling: cores are held at once, the new latency applies after this
    # delay. 1 s is our assumption (a cgroup CPU-quota update is near-instant; Kubernetes'
    # in-place pod resize goes through the kubelet's sync, about a second); the shipped
    # cluster configs set it explicitly.
    resize_delay_s: float = 1.0
    max_wait_s: float = 0.0  # default batcher wait (0: dispatch whatever is queued)

    def __post_init__(self) -> None:
        if self.max_queue_s <= 0:
            raise ConfigError(f"cluster.max_queue_s must be > 0, got {self.max_queue_s}")
        if self.resize_delay_s < 0 or self.max_wait_s < 0:
            raise ConfigError("cluster.resize_delay_s and cluster.max_wait_s must be >= 0")
        for k, n in {**self.min_workers, **self.max_workers}.items():
            if n < 0:
                raise ConfigError(f"cluster worker limits must be >= 0, got {n} for {k}")
        for k, n in self.min_workers.items():
            cap = self.max_workers.get(k)
            if cap is not None and n > cap:
                raise ConfigError(f"cluster.min_workers.{k.value} ({n}) exceeds cluster.max_workers.{k.value} ({cap})")


FAULT_KINDS = ("crash", "slowdown", "drift")


@dataclass(frozen=True)
class Fault:
    """A fault injected at ``at_s``: a worker's ``crash`` or ``slowdown`` (by ``factor`` for
    ``length_s``; ``worker`` is a worker id, or -1 for the busiest live worker then), or a
    ``drift``: from ``at_s`` to the run's end a ``hardware`` kind or one ``variant`` runs
    ``factor`` times slower (< 1: faster) than its profile, which the policy keeps reading."""

    at_s: float
    kind: str = "crash"
    worker: int = -1
    factor: float = 2.0
    length_s: float = 10.0
    hardware: str | None = None  # drift: cpu, gpu or inferentia
    variant: str | None = None  # drift: a variant id

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ConfigError(f"fault kind must be one of {', '.join(FAULT_KINDS)}, got {self.kind!r}")
        self._check_target()
        for key in ("at_s", "factor", "length_s"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"fault {key} must be a finite number, got {value!r}")
        if isinstance(self.worker, bool) or not isinstance(self.worker, int):
            raise ConfigError(f"fault worker must be a worker id (an integer, -1: the busiest), got {self.worker!r}")
        if self.at_s < 0 or self.factor <= 0 or self.length_s <= 0:
            raise ConfigError("fault at_s must be >= 0, factor and length_s > 0")

    def _check_target(self) -> None:
        """What the fault hits: a worker (crash, slowdown), a hardware kind or a variant (drift)."""
        if self.kind != "drift":
            for key in ("hardware", "variant"):
                if getattr(self, key) is not None:
                    raise ConfigError(f"fault {self.kind}: {key} applies to drift faults only ({self.kind}: a worker)")
            return
        if self.worker != -1:
            raise ConfigError("fault drift: worker does not apply (a drift hits a hardware kind or a variant)")
        if (self.hardware is None) == (self.variant is None):
            raise ConfigError("fault drift needs one of hardware (cpu, gpu or inferentia) or variant (a variant id)")
        if self.hardware is not None and self.hardware not in {k.value for k in HardwareKind}:
            kinds = ", ".join(k.value for k in HardwareKind)
            raise ConfigError(f"fault drift hardware must be one of {kinds}, got {self.hardware!r}")
        if self.variant is not None and (not isinstance(self.variant, str) or not self.variant):
            raise ConfigError(f"fault drift variant must be a variant id, got {self.variant!r}")


@dataclass(frozen=True)
class RunSpec:
    duration_s: float = 600.0
    seed: int = 0
    drain_s: float = 60.0  # after duration_s, how long queued and running queries may finish
    sample_s: float = 1.0
    progress: bool = False
    faults: Sequence[Fault] = ()
    reprofile: ReprofileSpec = field(default_factory=ReprofileSpec)

    def __post_init__(self) -> None:
        if not self.duration_s > 0:
            raise ConfigError(f"run.duration_s must be > 0, got {self.duration_s}")
        if self.drain_s < 0 or self.sample_s <= 0:
            raise ConfigError("run.drain_s must be >= 0 and run.sample_s > 0")
        if self.seed < 0:  # numpy's generators take no negative seed
            raise ConfigError(f"run.seed must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class Workload:
    """Applications and their arrivals: times (s), the application of each, batch sizes."""

    apps: Sequence[Application]
    times: np.ndarray
    app_index: np.ndarray
    batches: np.ndarray | None = None
    # What the operator declares about each application's rate before the run (application
    # name -> mean and peak queries/s): what baselines size and choose their variants from.
    # None: nothing declared, and :meth:`observed_hints` (the run's own arrivals, an oracle)
    # stands in; the summary says which (``expected_rates``).
    expected: Mapping[str, WorkloadHint] | None = None

    def __post_init__(self) -> None:
        if len(self.times) != len(self.app_index):
            raise ConfigError("workload: times and app_index differ in length")
        if len(self.times) and np.any(np.diff(self.times) < 0):
            raise ConfigError("workload: arrival times must be non-decreasing")
        if len(self.app_index) and (self.app_index.min() < 0 or self.app_index.max() >= len(self.apps)):
            raise ConfigError("workload: app_index out of range")

    def hints(self, duration_s: float) -> dict[str, WorkloadHint]:
        """What policies are told at set-up: the declared expected rates, else (nothing
        declared) :meth:`observed_hints`."""
        if self.expected is not None:
            return {a.name: self.expected.get(a.name, WorkloadHint(0.0, 0.0)) for a in self.apps}
        return self.observed_hints(duration_s)

    def observed_hints(self, duration_s: float) -> dict[str, WorkloadHint]:
        """Per-application mean and peak per-second rates of this run's own arrivals: an
        oracle no operator has, kept for tests and for workloads that declare nothing."""
        n = max(1, math.ceil(duration_s))
        out = {}
        for a in self.apps:
            t = self.times[self.app_index == a.index]
            counts = np.bincount(np.floor(t).astype(np.int64), minlength=n)[:n] if len(t) else np.zeros(n)
            out[a.name] = WorkloadHint(mean_qps=float(counts.mean()), peak_qps=float(counts.max()))
        return out


@dataclass
class RunResult:
    """A run's outputs. ``records`` is the per-query frame, or the Parquet file the run
    streamed it to (``run_simulation(records_to=...)``): :attr:`queries` reads it back."""

    records: pd.DataFrame | Path
    timeline: pd.DataFrame
    instances: pd.DataFrame
    summary: dict[str, Any]
    actions: list[tuple[float, str]]

    @property
    def queries(self) -> pd.DataFrame:
        if isinstance(self.records, Path):
            return pd.read_parquet(self.records)
        return self.records

    def query_columns(self, columns: Sequence[str]) -> pd.DataFrame:
        """Only some of the records' columns (read from the file alone when streamed)."""
        if isinstance(self.records, Path):
            return pd.read_parquet(self.records, columns=list(columns))
        return self.records[list(columns)]


def validate_apps(catalog: Catalog, apps: Sequence[Application]) -> None:
    """Every application must be satisfiable at its batch size: else a one-line error."""
    names = set()
    for i, a in enumerate(apps):
        if a.index != i:
            raise ConfigError(f"application {a.name!r}: index {a.index} does not match its position {i}")
        if a.name in names:
            raise ConfigError(f"application {a.name!r} is defined twice")
        names.add(a.name)
        for k, req in enumerate(a.stages):
            cands = catalog.candidates(req, a.batch)
            if not cands.indices:
                where = f" stage {k + 1}" if a.pipeline is not None else ""
                raise ConfigError(f"application {a.name!r}{where}: {cands.reason}")


def run_simulation(
    catalog: Catalog,
    workload: Workload,
    policy: Policy,
    executor: Executor,
    cluster_spec: ClusterSpec,
    run: RunSpec,
    env: simpy.Environment | None = None,
    records_to: Path | None = None,
) -> RunResult:
    """Run one experiment. ``records_to``: stream the per-query records to this Parquet file
    as the run goes (memory bounded whatever the run's length; removed if the run fails)
    rather than keeping them in memory."""
    validate_apps(catalog, workload.apps)
    late = int(np.count_nonzero(workload.times > run.duration_s)) if len(workload.times) else 0
    if late:
        # Refused rather than recorded: a trace longer than its run is a configuration mistake.
        raise ConfigError(
            f"workload: {late} arrival(s) after run.duration_s = {run.duration_s:g} s (the last at "
            f"{float(workload.times[-1]):g} s); lengthen the run or cut the trace"
        )
    env = env if env is not None else simpy.Environment()
    wall0 = time.perf_counter()
    recorder = Recorder(catalog, workload.apps, stream_to=records_to)
    try:
        return _run(catalog, workload, policy, executor, cluster_spec, run, env, recorder, wall0)
    except BaseException:
        recorder.abort()
        raise


def _run(
    catalog: Catalog,
    workload: Workload,
    policy: Policy,
    executor: Executor,
    cluster_spec: ClusterSpec,
    run: RunSpec,
    env: simpy.Environment,
    recorder: Recorder,
    wall0: float,
) -> RunResult:
    executor.bind(Clock(env), run.seed)
    cluster = Cluster(
        env,
        catalog,
        executor,
        recorder,
        cluster_spec.instance_types,
        cluster_spec.type_by_kind,
        cluster_spec.min_workers,
        cluster_spec.max_workers,
        cluster_spec.max_queue_s,
        cluster_spec.resize_delay_s,
        cluster_spec.max_wait_s,
        Reprofiler(run.reprofile.margin, run.reprofile.batches) if run.reprofile.enabled else None,
    )
    for fault in run.faults:
        if fault.variant is not None and fault.variant not in catalog.index_of:
            raise ConfigError(f"fault drift: unknown variant {fault.variant!r} in catalog {catalog.name}")
    controller = Controller(cluster, policy, recorder)
    view = ClusterView(cluster)
    cluster.apply(policy.setup(view, workload.apps, workload.hints(run.duration_s)), instant=True)
    for kind, n in cluster.min_workers.items():
        while cluster.live_count(kind) < n:
            if cluster.add_worker(cluster.type_by_kind[kind], instant=True) is None:
                break
    sampler = TimelineSampler()
    done = {"arrivals": False}

    env.process(_arrivals(env, workload, controller, done))
    if policy.tick_s:
        env.process(_ticker(env, policy, cluster, view, policy.tick_s))
    env.process(_sample(env, cluster, sampler, run, controller, recorder))
    warnings: list[str] = []
    end = run.duration_s + run.drain_s
    for fault in run.faults:
        if fault.at_s > end:
            _warn(warnings, f"fault {fault.kind} at {fault.at_s:g} s is after the run's end ({end:g} s): skipped")
            continue
        env.process(_inject(env, cluster, fault, warnings))
    interrupted: str | None = None
    try:
        deadline = run.duration_s + run.drain_s
        try:
            env.run(until=run.duration_s)
            while (not done["arrivals"] or recorder.outcomes < recorder.arrived) and env.peek() <= deadline:
                env.step()
            end_reason = (
                f"still queued when the run ended (t = {deadline:g} s: run.duration_s {run.duration_s:g} s "
                f"+ run.drain_s {run.drain_s:g} s)"
            )
        except Interrupted as exc:  # between two events: the state is whole
            interrupted = exc.reason
            end_reason = f"run {exc.reason} at t = {env.now:g} s"
        # The rest of the run after the last whole sample (the drain's last fraction of a
        # second, or the last second: a run stops before a sample due at its very end).
        if env.now > sampler.sampled_until() + 1e-9:
            _record_sample(cluster, sampler, sampler.sampled_until(), env.now)
        cluster.close(end_reason)
    finally:
        executor.close()
    recorder.check_conservation()
    sampler.measure_usage(cluster.workers.values(), env.now)
    tally = recorder.tally
    records: pd.DataFrame | Path = recorder.frame() if recorder.sink is None else recorder.sink.path
    # An interrupted run covers the time it ran: its rates are over that, not the whole run.
    covered = run.duration_s if interrupted is None else max(min(env.now, run.duration_s), 1e-9)
    timeline = timeline_frame(tally, sampler, covered)
    summary = summarize(tally, cluster.cost(), covered, sampler.utilisation(),
                        time.perf_counter() - wall0, sampler.allocated_unit_hours())  # fmt: skip
    summary["complete"] = interrupted is None
    summary["warnings"] = warnings
    if interrupted is not None:
        summary["interrupted"] = f"{interrupted} at t = {env.now:g} s of {run.duration_s:g} s"
    summary["policy"] = policy.name
    summary["executor"] = executor.name
    summary["seed"] = run.seed
    summary["expected_rates"] = "declared" if workload.expected is not None else "observed"
    summary["peak_workers"] = {
        k.value: int(timeline[f"workers_{k.value}"].max()) if len(timeline) else 0 for k in HardwareKind
    }
    return RunResult(records, timeline, instances_frame(sampler), summary, list(cluster.action_log))


def _arrivals(
    env: simpy.Environment, workload: Workload, controller: Controller, done: dict[str, bool]
) -> Generator[simpy.Event, Any, None]:
    # A chunk of arrivals at a time as Python objects: a whole hour at 10k QPS as lists would
    # be gigabytes.
    submit = controller.submit
    timeout = env.timeout
    apps_of = workload.apps
    step = 65_536
    for lo in range(0, len(workload.times), step):
        times = workload.times[lo : lo + step].tolist()
        apps = [apps_of[i] for i in workload.app_index[lo : lo + step].tolist()]
        batches = workload.batches[lo : lo + step].tolist() if workload.batches is not None else [a.batch for a in apps]
        for i, t, app, batch in zip(range(lo, lo + len(times)), times, apps, batches, strict=True):
            delay = t - env.now
            if delay > 0:
                yield timeout(delay)
            submit(Query(i, env.now, app, batch))
    done["arrivals"] = True


def _ticker(
    env: simpy.Environment, policy: Policy, cluster: Cluster, view: ClusterView, tick_s: float
) -> Generator[simpy.Event, Any, None]:
    while True:
        yield env.timeout(tick_s)
        actions = policy.autoscale(view)
        cluster.new_tick()  # before applying: the next tick's view counts this tick's unplaced loads
        cluster.apply(actions)


def _sample(
    env: simpy.Environment,
    cluster: Cluster,
    sampler: TimelineSampler,
    run: RunSpec,
    controller: Controller,
    recorder: Recorder,
) -> Generator[simpy.Event, Any, None]:
    bar = None
    if run.progress:
        from tqdm import tqdm

        bar = tqdm(total=int(run.duration_s), unit="sim-s", desc="simulating", leave=False)
    try:
        while True:
            yield env.timeout(run.sample_s)
            now = env.now
            _record_sample(cluster, sampler, now - run.sample_s, now)
            if cluster.reprofiler is not None:
                reprofile(cluster, controller, recorder)
            if bar is not None and now <= run.duration_s:
                bar.update(int(now) - bar.n)
            interrupt.check()  # a SIGINT / SIGTERM asked the run to stop
    finally:
        if bar is not None:
            bar.close()


def _record_sample(cluster: Cluster, sampler: TimelineSampler, start: float, now: float) -> None:
    """The cluster's state at ``now``, standing for the interval ``[start, now)``."""
    workers: dict[str, int] = {}
    allocated: dict[str, float] = {}
    rate = 0.0
    for w in cluster.live_workers():
        k = w.kind.value
        workers[k] = workers.get(k, 0) + 1
        rate += w.itype.price_per_hour
        if w.kind is HardwareKind.GPU:
            # Devices held: exclusive replicas' own, and as many of the shared devices as
            # shared replicas can occupy at once (one batch each).
            shared = sum(1 for i in w.instances if not i.exclusive)
            held = float(w.reserved_devices + min(shared, w.shared_devices()))
        else:
            held = w.units_used  # cores or NeuronCores of loaded and loading replicas
        allocated[k] = allocated.get(k, 0.0) + held
    inst: dict[str, int] = {}
    queued = 0
    for i in cluster.routable_instances():
        inst[i.variant.variant_id] = inst.get(i.variant.variant_id, 0) + 1
        queued += i.queued_inputs
    sampler.times.append(start)
    sampler.spans.append(now - start)
    sampler.workers.append(workers)
    sampler.instances.append(inst)
    sampler.allocated_units.append(allocated)
    sampler.cost_rate.append(rate)
    sampler.queued.append(queued)


def reprofile(cluster: Cluster, controller: Controller, recorder: Recorder) -> None:
    """Apply pending re-profiling updates; every holder of the catalog gets the new one (the
    policy rebinds on its next call: it compares ``view.catalog`` with the one it bound)."""
    cat = cluster.reprofile()
    if cat is not None:
        controller.catalog = recorder.catalog = cat


def _warn(warnings: list[str], message: str) -> None:
    warnings.append(message)
    log.warning(message)


def _inject(
    env: simpy.Environment, cluster: Cluster, fault: Fault, warnings: list[str]
) -> Generator[simpy.Event, Any, None]:
    yield env.timeout(fault.at_s)
    if fault.kind == "drift":
        kind = None if fault.hardware is None else HardwareKind(fault.hardware)
        cluster.drift(fault.factor, kind, fault.variant)
        return
    wid = fault.worker
    if wid >= 0 and wid not in cluster.workers:
        known = ", ".join(str(w) for w in sorted(cluster.workers)) or "none"
        _warn(warnings, f"fault {fault.kind} at {fault.at_s:g} s: no worker {wid} (workers: {known}); skipped")
        return
    if wid < 0:
        live = [w for w in cluster.live_workers() if w.state is WorkerState.READY]
        if not live:
            _warn(warnings, f"fault {fault.kind} at {fault.at_s:g} s: no ready worker to hit; skipped")
            return
        wid = max(live, key=lambda w: (sum(i.queued_inputs + i.inflight_inputs for i in w.instances), -w.wid)).wid
    if fault.kind == "crash":
        cluster.crash_worker(wid, f"injected crash at t={fault.at_s:g}s")
        return
    cluster.slow_worker(wid, fault.factor)
    yield env.timeout(fault.length_s)
    cluster.restore_worker(wid, fault.factor)
