"""The cluster on wall-clock time in a thread of its own, and asyncio futures for outcomes.

The run loop of real mode (:class:`~infaas_sim.clock.WallClockEnvironment`) blocks between
events, so it gets its own thread; the HTTP server's asyncio loop never waits on it. A request
is handed over with ``env.post`` (thread-safe: the loop wakes and submits the query to the
controller at the current wall time), and its one outcome comes back through the recorder,
which resolves the request's future with ``loop.call_soon_threadsafe``. Everything the cluster
touches (catalog memo, policy, instances) is only ever touched on the cluster thread.

Applications: every distinct (model name, requirement) a client sends becomes an
:class:`~infaas_sim.query.Application` the first time it is seen, so the records and the
policy's per-application rates work as in a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from infaas_sim.catalog import Catalog
from infaas_sim.clock import Clock, WallClockEnvironment
from infaas_sim.cluster import Cluster, Instance
from infaas_sim.controller import Controller
from infaas_sim.errors import ConfigError, InputError
from infaas_sim.executor import Executor
from infaas_sim.hardware import HardwareKind
from infaas_sim.metrics import Recorder, TimelineSampler, instances_frame, summarize, timeline_frame
from infaas_sim.policy import Policy
from infaas_sim.query import Application, Query, Requirement
from infaas_sim.realtime import Artifact
from infaas_sim.reprofile import Reprofiler
from infaas_sim.simulation import ClusterSpec, RunResult, _record_sample
from infaas_sim.view import ClusterView

log = logging.getLogger("infaas_sim.serve")

_STATUS = ("served", "rejected", "failed")


@dataclass(frozen=True)
class Outcome:
    """One query's record, as the recorder wrote it, and its model outputs when served."""

    qid: int
    status: str  # served | rejected | failed
    reason: str | None
    variant: str
    hardware: str
    worker: int
    instance: int
    exec_batch: int
    queueing_ms: float
    loading_ms: float
    batching_ms: float
    execution_ms: float
    latency_ms: float
    impossible: bool = False  # rejected because no variant meets the requirement at all
    output: np.ndarray | None = None


class _Stop(Exception):
    """Posted to the cluster thread to end its loop."""


class ServingRecorder(Recorder):
    """A recorder that also reports each outcome as it is written (on the cluster thread)."""

    def __init__(
        self,
        catalog: Catalog,
        report: Callable[[Query, tuple[Any, ...], bool], None],
    ) -> None:
        super().__init__(catalog, [])
        self._report = report

    def served_batch(
        self, batch: Sequence[Query], inst: Instance, start: float, end: float, inputs: int, due_at: float
    ) -> list[Query] | None:
        n0 = len(self.rows)
        more = super().served_batch(batch, inst, start, end, inputs, due_at)
        for q, row in zip(batch, self.rows[n0:], strict=True):
            self._report(q, row, False)
        return more

    def failed_batch(self, batch: Sequence[Query], fault: str, now: float) -> None:
        n0 = len(self.rows)
        super().failed_batch(batch, fault, now)
        for q, row in zip(batch, self.rows[n0:], strict=True):
            self._report(q, row, False)

    def rejected(self, q: Query, reason: str, now: float) -> None:
        super().rejected(q, reason, now)
        # The same test the controller's first step makes: no candidate at all.
        impossible = not self.catalog.candidates(q.requirement, q.batch).indices
        self._report(q, self.rows[-1], impossible)


class ClusterBridge:
    """The cluster, controller and policy of real mode, fed by :meth:`submit`."""

    def __init__(
        self,
        catalog: Catalog,
        policy: Policy,
        executor: Executor,
        spec: ClusterSpec,
        seed: int = 0,
        sample_s: float = 1.0,
        reprofiler: Reprofiler | None = None,
    ) -> None:
        self.catalog = catalog
        self.policy = policy
        self.executor = executor
        self.sample_s = sample_s
        self.env = WallClockEnvironment()
        self.recorder = ServingRecorder(catalog, self._report)
        executor.bind(Clock(self.env), seed)
        self.cluster = Cluster(
            self.env, catalog, executor, self.recorder, spec.instance_types, spec.type_by_kind,
            spec.min_workers, spec.max_workers, spec.max_queue_s, spec.resize_delay_s, spec.max_wait_s,
            reprofiler,  # online re-profiling (infaas_sim/reprofile.py): the cluster reports each served batch
        )  # fmt: skip
        self.controller = Controller(self.cluster, policy, self.recorder)
        self.view = ClusterView(self.cluster)
        self.apps: list[Application] = self.recorder.apps  # grows as clients name new requirements
        self._app_of: dict[tuple[str, Requirement], Application] = {}
        self._pending: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Outcome], Query | None]] = {}
        self._next_qid = 0
        # Closed once the loop has ended: a request after that is refused before it is a query.
        self._gate = threading.Lock()
        self.closed = False
        self._thread: threading.Thread | None = None
        self._result: RunResult | None = None
        self._error: BaseException | None = None
        self._stop_reason = "the server stopped"
        self.sampler = TimelineSampler()
        self._wall0 = time.perf_counter()

    # --- the cluster thread -------------------------------------------------------------
    def start(self) -> None:
        """Set up the policy and the minimum workers, then run the loop in its thread."""
        cluster = self.cluster
        cluster.apply(self.policy.setup(self.view, [], {}), instant=True)
        for kind, n in cluster.min_workers.items():
            while sum(1 for w in cluster.live_workers() if w.kind is kind) < n:
                if cluster.add_worker(cluster.type_by_kind[kind], instant=True) is None:
                    break
        if self.policy.tick_s:
            self.env.process(self._ticker(self.policy.tick_s))
        self.env.process(self._sampler())
        self._thread = threading.Thread(target=self._loop, name="infaas-cluster", daemon=True)
        self._thread.start()

    def _ticker(self, tick_s: float) -> Generator[simpy.Event, Any, None]:
        while True:
            yield self.env.timeout(tick_s)
            actions = self.policy.autoscale(self.view)
            self.cluster.new_tick()  # as the run loop does: the next tick counts this tick's unplaced loads
            self.cluster.apply(actions)

    def _sampler(self) -> Generator[simpy.Event, Any, None]:
        while True:
            yield self.env.timeout(self.sample_s)
            now = self.env.now
            _record_sample(self.cluster, self.sampler, now - self.sample_s, now)
            self._reprofile()

    def _reprofile(self) -> None:
        """Apply the re-profiler's pending updates (the cluster's: a new catalog, its
        instances' tables, an action line each), then give every holder the new catalog."""
        cat = self.cluster.reprofile()
        if cat is not None:
            self._use(cat)

    def _use(self, cat: Catalog) -> None:
        """Make ``cat`` the catalog of every holder on this thread; the policy rebinds on its
        next call (it compares view.catalog with the one it bound)."""
        self.catalog = self.controller.catalog = self.recorder.catalog = cat
        if self.cluster.catalog is not cat:  # variants registered (a re-profile set it already)
            self.cluster.use_catalog(cat)

    def _loop(self) -> None:
        env = self.env
        try:
            env.run()
        except _Stop:
            pass
        except BaseException as exc:  # a bug in the loop: every waiting request still gets its answer
            log.exception("the cluster loop stopped")
            self._error = exc
            self._stop_reason = f"the server's cluster loop failed: {type(exc).__name__}: {exc}"
        try:
            self._reprofile()
            if env.now > self.sampler.sampled_until() + 1e-9:
                _record_sample(self.cluster, self.sampler, self.sampler.sampled_until(), env.now)
            self.cluster.close(self._stop_reason)
        finally:
            self.executor.close()
        # Queries posted but never submitted (the loop stopped first) have no record yet:
        # they arrived, so they are rejected, and answered, like any other.
        with self._gate:
            self.closed = True
            late = [q for _, _, q in self._pending.values() if q is not None]
        try:
            for q in late:
                self.recorder.arrived += 1
                self.recorder.rejected(q, self._stop_reason, env.now)
            self._result = self._build_result()
        except BaseException as exc:  # an accounting error: stop() raises it, not a hang
            self._error = exc

    def _build_result(self) -> RunResult:
        env, cluster, rec, sampler = self.env, self.cluster, self.recorder, self.sampler
        rec.check_conservation()
        sampler.measure_usage(cluster.workers.values(), env.now)
        queries = rec.frame()
        covered = max(env.now, 1e-9)
        timeline = timeline_frame(rec.tally, sampler, covered)
        summary = summarize(rec.tally, cluster.cost(), covered, sampler.utilisation(),
                            time.perf_counter() - self._wall0, sampler.allocated_unit_hours())  # fmt: skip
        summary["complete"] = self._error is None
        summary["warnings"] = [] if self._error is None else [self._stop_reason]
        summary["policy"] = self.policy.name
        summary["executor"] = self.executor.name
        summary["applications"] = [a.name for a in self.apps]
        summary["peak_workers"] = {
            k.value: int(timeline[f"workers_{k.value}"].max()) if len(timeline) else 0 for k in HardwareKind
        }
        return RunResult(queries, timeline, instances_frame(sampler), summary, list(cluster.action_log))

    def _report(self, q: Query, row: tuple[Any, ...], impossible: bool) -> None:
        """The recorder wrote ``q``'s record: answer its request (on the cluster thread)."""
        (qid, _app, arrival, status, reason, vi, wid, iid, _batch, exec_batch,
         qu, lo, ba, ex, completion, _log) = row  # fmt: skip
        variant = self.catalog.variants[vi] if vi >= 0 else None
        out = Outcome(
            qid=qid, status=_STATUS[status], reason=reason,
            variant=variant.variant_id if variant else "", hardware=variant.hardware.value if variant else "",
            worker=int(wid), instance=int(iid), exec_batch=int(exec_batch),
            queueing_ms=qu * 1000, loading_ms=lo * 1000, batching_ms=ba * 1000, execution_ms=ex * 1000,
            latency_ms=(completion - arrival) * 1000, impossible=impossible,
            output=q.output if status == 0 else None,
        )  # fmt: skip
        q.payload = q.output = None  # the request's tensors are not kept for the whole run
        entry = self._pending.pop(qid, None)
        if entry is None:
            return
        loop, fut, _ = entry
        with contextlib.suppress(RuntimeError):  # the HTTP loop is gone (shutdown): nobody waits
            loop.call_soon_threadsafe(_resolve, fut, out)

    # --- the HTTP side (the asyncio loop's thread) ---------------------------------------
    def application(self, model: str, req: Requirement) -> Application:
        """The application of requests for ``model`` with requirement ``req``."""
        key = (model, req)
        app = self._app_of.get(key)
        if app is None:
            name = model
            if req.slo_ms is not None:
                name += f" slo={req.slo_ms:g}ms"
            if req.min_accuracy > 0:
                name += f" acc>={req.min_accuracy:g}"
            app = Application(name, req, index=len(self.apps))
            self.apps.append(app)  # before any query of it reaches the cluster thread
            self._app_of[key] = app
        return app

    def submit(self, app: Application, batch: int, payload: Any) -> asyncio.Future[Outcome] | None:
        """Hand a query to the cluster; the future resolves with its outcome. None: the
        cluster has stopped (the caller answers 503; there is no query to record)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Outcome] = loop.create_future()
        with self._gate:
            if self.closed:
                return None
            qid = self._next_qid
            self._next_qid += 1
            # The query is stamped with its arrival on the cluster thread, when it is submitted.
            q = Query(qid, 0.0, app, batch, payload)
            self._pending[qid] = (loop, fut, q)
        self.env.post(self._arrive, q)
        return fut

    def _arrive(self, q: Query) -> None:
        now = self.env.now
        q.arrival = q.enqueued = q.ready = q.submitted = now
        entry = self._pending.get(q.qid)
        if entry is not None:
            self._pending[q.qid] = (entry[0], entry[1], None)  # submitted: the recorder owns it now
        self.controller.submit(q)

    def snapshot(self) -> asyncio.Future[dict[str, Any]]:
        """The cluster's state now, read on its own thread: routable instances per variant,
        live workers per kind, their price per hour."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()

        def read() -> None:
            instances: dict[str, int] = {}
            for inst in self.cluster.routable_instances():
                vid = inst.variant.variant_id
                instances[vid] = instances.get(vid, 0) + 1
            workers: dict[str, int] = {}
            rate = 0.0
            for w in self.cluster.live_workers():
                workers[w.kind.value] = workers.get(w.kind.value, 0) + 1
                rate += w.itype.price_per_hour
            state = {"instances": instances, "workers": workers, "cost_rate": rate}
            with contextlib.suppress(RuntimeError):  # the HTTP loop is gone
                loop.call_soon_threadsafe(_resolve, fut, state)

        with self._gate:
            if self.closed:
                fut.set_result({"instances": {}, "workers": {}, "cost_rate": 0.0})
            else:
                self.env.post(read)
        return fut

    def extend(self, added: Catalog, artifacts: Mapping[str, Artifact]) -> asyncio.Future[Catalog]:
        """Append ``added``'s variants to the live catalog, on the cluster thread (existing
        variants keep their indices, so instances and records stay valid); the future
        resolves with the new catalog, or fails (a duplicate variant id) leaving it as it was."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Catalog] = loop.create_future()
        runner_artifacts = getattr(self.executor, "artifacts", None)
        if not isinstance(runner_artifacts, dict):
            fut.set_exception(ConfigError(f"executor {self.executor.name} cannot take new models while serving"))
            return fut

        def swap() -> None:
            try:
                cat = Catalog([*self.catalog.variants, *added.variants], name=self.catalog.name)
            except InputError as exc:
                loop.call_soon_threadsafe(_fail, fut, exc)
                return
            runner_artifacts.update(artifacts)
            self._use(cat)
            ids = ", ".join(v.variant_id for v in added.variants)
            self.cluster.action_log.append((self.env.now, f"register {len(added.variants)} variant(s): {ids}"))
            loop.call_soon_threadsafe(_resolve, fut, cat)

        with self._gate:
            if self.closed:
                fut.set_exception(ConfigError("the server is stopping"))
            else:
                self.env.post(swap)
        return fut

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, reason: str = "the server stopped") -> RunResult:
        """End the loop (queries still queued or running fail with ``reason``), close the
        executor, and return the records. Blocking: call it off the asyncio loop."""
        if self._thread is None:
            raise RuntimeError("the bridge was never started")
        self._stop_reason = reason

        def halt() -> None:
            raise _Stop

        self.env.post(halt)
        self._thread.join()
        if self._result is None:
            raise RuntimeError(f"the cluster loop ended without its records: {self._error!r}") from self._error
        return self._result


def _fail(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


def _resolve(fut: asyncio.Future[Any], out: Any) -> None:
    if not fut.done():  # the client may have gone (a cancelled future)
        fut.set_result(out)
