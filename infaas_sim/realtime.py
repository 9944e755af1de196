"""What real executors share: model runners, the artifact table, and a thread-pool executor.

A *runner* holds one loaded model (an ONNX Runtime session, a TensorRT engine, a Neuron
model) and runs batches of synthetic inputs on it; the profiler and the executors use the
same runners, so what the catalog says about a variant is what the executor does with it.
Runner factories register per backend (``onnxruntime``, ``tensorrt``, ``neuron``).

The *artifact table* maps a variant to its file: the profiled catalog carries, beyond the
simulator's schema (which ignores extra columns), ``backend``, ``artifact`` (a path relative
to the catalog file) and ``options``.

:class:`RunnerExecutor` is the executor over runners: loads open a runner in a thread pool,
batches run there, and completions are posted to the :class:`~infaas_sim.clock.WallClockEnvironment`,
whose loop wakes on them. Each instance has at most one batch in flight (the cluster's
batcher guarantees it), so the executor holds at most one batch of inputs per instance,
whatever the overload.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from infaas_sim.clock import Clock, Completion
from infaas_sim.errors import CatalogError, ConfigError
from infaas_sim.executor import Executor
from infaas_sim.registry import Registry
from infaas_sim.view import InstanceState

if TYPE_CHECKING:
    from infaas_sim.cluster import Instance
    from infaas_sim.query import Query

#: extra catalog columns written by the profiler (the simulator ignores them)
ARTIFACT_COLUMNS = ("backend", "artifact", "options", "accuracy_source", "profile_p99")


class ModelRunner(Protocol):
    """One loaded model. ``run_batch`` runs ``n`` synthetic inputs and returns the seconds
    the runtime took; ``run`` runs given inputs and returns the outputs."""

    input_shape: tuple[int, ...]

    def run(self, inputs: np.ndarray) -> np.ndarray: ...

    def run_batch(self, n: int) -> float: ...

    def close(self) -> None: ...


RunnerFactory = Callable[[Path, float, int, dict[str, str]], ModelRunner]


@dataclass(frozen=True)
class Runner:
    """A backend's runner factory ``(path, cores, max_batch, options) -> runner`` and
    ``absent()``: why its runtime cannot be used here, or None."""

    factory: RunnerFactory
    absent: Callable[[], str | None]


RUNNERS: Registry[Runner] = Registry("backend", "infaas_sim.runners")
# Variant builders of the backends whose artifacts are compiled (a TensorRT engine, a Neuron
# model): ``infaas_sim.profiling.generate`` finds them here, not by importing executors.
BUILDERS: Registry[Callable[..., Any]] = Registry("variant builder", "infaas_sim.builders")


def register_runner(backend: str, absent: Callable[[], str | None]) -> Callable[[RunnerFactory], RunnerFactory]:
    """Register a runner factory ``(path, cores, max_batch, options) -> runner`` for a backend;
    ``absent()`` returns why the backend's runtime cannot be used here, or None."""

    def deco(factory: RunnerFactory) -> RunnerFactory:
        RUNNERS.add(backend, Runner(factory, absent))
        return factory

    return deco


def register_builder(backend: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the function that builds ``backend``'s artifact from a model."""
    return BUILDERS.register(backend)


def backend_absent(backend: str) -> str | None:
    """Why ``backend`` cannot run here (None when it can)."""
    if backend not in RUNNERS:
        return f"unknown backend {backend!r} (known: {', '.join(RUNNERS.names())})"
    return RUNNERS.get(backend).absent()


def open_runner(backend: str, path: Path, cores: float, max_batch: int, options: dict[str, str]) -> ModelRunner:
    why = backend_absent(backend)
    if why is not None:
        raise ConfigError(f"backend {backend}: {why}")
    try:
        return RUNNERS.get(backend).factory(path, cores, max_batch, options)
    except (ConfigError, MemoryError):
        raise
    except Exception as exc:  # a corrupt or foreign file: name it, in one line
        detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        raise ConfigError(f"backend {backend}: cannot open {Path(path).name} ({detail})") from None


def synthetic_inputs(shape: tuple[int, ...], n: int, seed: int = 0, dtype: Any = np.float32) -> np.ndarray:
    """Inputs in [0, 1): the built-in models take pixel intensities in that range."""
    return np.random.default_rng(seed).random((n, *shape)).astype(dtype)


def parse_options(text: str) -> dict[str, str]:
    out = {}
    for item in str(text or "").split(";"):
        if item.strip():
            k, _, v = item.partition("=")
            out[k.strip()] = v.strip()
    return out


def format_options(options: dict[str, str]) -> str:
    return ";".join(f"{k}={v}" for k, v in sorted(options.items()))


@dataclass(frozen=True)
class Artifact:
    variant_id: str
    backend: str
    path: Path
    allocation: float
    max_batch: int
    options: dict[str, str] = field(default_factory=dict, hash=False)


def load_artifacts(catalog_path: str | Path, roots: Sequence[str | Path] = ()) -> dict[str, Artifact]:
    """The artifact table of a profiled catalog (CSV or Parquet). An artifact path resolves
    inside the catalog's folder (or one of ``roots``): ``../../etc/passwd`` or an absolute path
    elsewhere is refused, so a catalog cannot make an executor open files outside them."""
    p = Path(catalog_path)
    if not p.is_file():
        raise ConfigError(f"profiled catalog {str(p)!r} not found (generate one: python -m infaas_sim.profiling)")
    frame = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p, comment="#", dtype=str,
                                                                          keep_default_na=False)  # fmt: skip
    missing = [c for c in ("variant_id", "backend", "artifact", "allocation", "max_batch") if c not in frame.columns]
    if missing:
        raise CatalogError(
            f"{p.name}: not a profiled catalog (no column(s) {', '.join(missing)}); "
            "generate one with python -m infaas_sim.profiling"
        )
    out = {}
    allowed = [p.parent.resolve(), *(Path(r).resolve() for r in roots)]
    for i, row in enumerate(frame.to_dict("records")):
        art = str(row["artifact"] or "")
        if not art:
            continue
        path = (p.parent / art).resolve()
        if not any(path.is_relative_to(root) for root in allowed):
            raise CatalogError(
                f"{p.name} row {i + 2}, column 'artifact': {art!r} resolves outside the catalog's folder "
                f"({allowed[0]}); artifacts must live beside the catalog"
            )
        out[str(row["variant_id"])] = Artifact(
            str(row["variant_id"]), str(row["backend"]), path, float(row["allocation"]),
            int(float(row["max_batch"])), parse_options(str(row.get("options", "") or "")),
        )  # fmt: skip
        if not out[str(row["variant_id"])].path.exists():
            raise CatalogError(f"{p.name} row {i + 2}, column 'artifact': file {art!r} not found next to the catalog")
    return out


@dataclass
class ExecutorStats:
    """What the executor did: for diagnostics, the fidelity experiment and the tests."""

    loads: int = 0
    batches: int = 0
    lazy_opens: int = 0  # instances loaded instantly (at set-up) with no preloaded runner
    max_inflight: int = 0
    # (inputs, seconds inside the runtime) per batch, first ``keep`` batches
    service: list[tuple[int, float]] = field(default_factory=list)
    keep: int = 200_000


class RunnerExecutor(Executor):
    """Real execution over runners of one backend, in a thread pool, on wall-clock time.

    ``catalog`` is the profiled catalog (its artifact table). ``preload`` lists variant ids
    (repeat one for several replicas) whose runners are opened and warmed up when the
    executor is made, before the run's clock starts: instances the policy loads at set-up
    (instantly, as in simulation) take them. An instance with neither a load nor a preloaded
    runner opens one on its first batch (counted in ``stats.lazy_opens``).
    """

    realtime = True
    backend = ""

    def __init__(self, catalog: str = "", preload: Sequence[str] = (), max_threads: int = 64) -> None:
        if not catalog:
            raise ConfigError(
                f"executor {self.name}: params.catalog must name a profiled catalog (python -m infaas_sim.profiling)"
            )
        why = backend_absent(self.backend)
        if why is not None:
            raise ConfigError(f"executor {self.name}: {why}")
        if max_threads < 1:
            raise ConfigError(f"executor {self.name}: max_threads must be >= 1, got {max_threads}")
        self.artifacts = {k: a for k, a in load_artifacts(catalog).items() if a.backend == self.backend}
        if not self.artifacts:
            raise ConfigError(f"executor {self.name}: catalog {catalog!r} has no {self.backend} variants")
        self.max_threads = max_threads
        self.stats = ExecutorStats()
        self._lock = threading.Lock()
        self._inflight = 0
        self._runners: dict[int, ModelRunner] = {}
        self._spare: dict[tuple[str, float], list[ModelRunner]] = {}
        for vid in preload:
            art = self._artifact(vid)
            self._spare.setdefault((vid, art.allocation), []).append(self._open(art, art.allocation))

    # --- runners ------------------------------------------------------------------------
    def _artifact(self, variant_id: str) -> Artifact:
        art = self.artifacts.get(variant_id)
        if art is None:
            raise ConfigError(f"executor {self.name}: variant {variant_id!r} has no {self.backend} artifact")
        return art

    def _open(self, art: Artifact, cores: float) -> ModelRunner:
        runner = open_runner(self.backend, art.path, cores, art.max_batch, art.options)
        runner.run_batch(1)  # the first run allocates the arena: part of loading, not serving
        return runner

    def runner_of(self, instance: Instance) -> ModelRunner | None:
        return self._runners.get(instance.iid)

    # --- executor interface ---------------------------------------------------------------
    def bind(self, clock: Clock, seed: int) -> None:
        if not clock.realtime:
            raise ConfigError(f"executor {self.name} runs on wall-clock time: it needs a WallClockEnvironment")
        super().bind(clock, seed)
        self.pool = ThreadPoolExecutor(max_workers=self.max_threads, thread_name_prefix=f"{self.name}-exec")

    def _post(self, event: Completion, then: Callable[[Any], None] | None = None) -> Callable[[Future[Any]], None]:
        post = self.clock.post

        def done(fut: Future[Any]) -> None:
            exc = fut.exception()
            if exc is not None:
                post(event.fail, exc)
                return
            value = fut.result()
            if then is not None:
                post(lambda: (then(value), event.succeed(value)))
            else:
                post(event.succeed, value)

        return done

    def load(self, instance: Instance) -> Completion:
        event = self.clock.pending()
        art = self._artifact(instance.variant.variant_id)
        self.stats.loads += 1
        iid = instance.iid

        def keep(runner: ModelRunner) -> None:  # on the loop's thread
            if instance.state in (InstanceState.UNLOADED, InstanceState.DEAD):
                runner.close()  # unloaded, or its worker crashed, while it was loading
            else:
                self._runners[iid] = runner

        self.pool.submit(self._open, art, instance.cores).add_done_callback(self._post(event, keep))
        return event

    def load_now(self, instance: Instance) -> None:
        """Set-up loads (before traffic): a preloaded runner if one is spare, else open one now."""
        if instance.iid in self._runners:
            return
        spare = self._spare.get((instance.variant.variant_id, instance.cores))
        if spare:
            self._runners[instance.iid] = spare.pop()
            return
        self.stats.loads += 1
        self._runners[instance.iid] = self._open(self._artifact(instance.variant.variant_id), instance.cores)

    def run(self, instance: Instance, inputs: int, queries: Sequence[Query]) -> Completion:
        event = self.clock.pending()
        runner = self._runners.get(instance.iid)
        if runner is None:
            spare = self._spare.get((instance.variant.variant_id, instance.cores))
            if spare:
                runner = self._runners[instance.iid] = spare.pop()
        self.stats.batches += 1
        with self._lock:
            self._inflight += 1
            self.stats.max_inflight = max(self.stats.max_inflight, self._inflight)
        # A slowdown or drift fault (run.faults) holds the batch its extra time: read now, on the loop.
        worker = getattr(instance, "worker", None)  # the serving-path profiler's stand-ins have none
        slowdown = (worker.slowdown if worker is not None else 1.0) * getattr(instance, "drift", 1.0)
        payload = payload_inputs(queries)
        then = None if payload is None else (lambda value: hand_outputs(queries, value[1]))
        fut = self.pool.submit(self._work, instance, runner, inputs, slowdown, payload)
        fut.add_done_callback(self._post(event, then))
        return event

    def _work(
        self,
        instance: Instance,
        runner: ModelRunner | None,
        inputs: int,
        slowdown: float = 1.0,
        payload: list[np.ndarray] | None = None,
    ) -> Any:
        """The batch's runtime seconds; with ``payload`` (the queries' own inputs), the
        pair (seconds, outputs)."""
        try:
            if runner is None:
                art = self._artifact(instance.variant.variant_id)
                runner = self._open(art, instance.cores)
                self.clock.post(self._runners.__setitem__, instance.iid, runner)
                with self._lock:
                    self.stats.lazy_opens += 1
            outputs = None
            if payload is None:
                seconds = runner.run_batch(inputs)
            else:
                x = payload[0] if len(payload) == 1 else np.concatenate(payload)
                t0 = time.perf_counter()
                outputs = runner.run(x)
                seconds = time.perf_counter() - t0
            with self._lock:
                if len(self.stats.service) < self.stats.keep:
                    self.stats.service.append((inputs, seconds))
            if slowdown > 1:  # the worker runs slower: the batch takes slowdown x its time (a faster
                # drift, factor < 1, cannot be applied to a real runtime: it runs at its speed)
                time.sleep(seconds * (slowdown - 1))
                seconds *= slowdown
            return seconds if outputs is None else (seconds, outputs)
        finally:
            with self._lock:
                self._inflight -= 1

    def unload(self, instance: Instance) -> None:
        runner = self._runners.pop(instance.iid, None)
        if runner is not None:
            runner.close()

    def close(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.shutdown(wait=True)
        for r in self._runners.values():
            r.close()
        self._runners.clear()


def payload_inputs(queries: Sequence[Query]) -> list[np.ndarray] | None:
    """The batch's own inputs when every query carries an input array as its payload (the
    serving endpoint's requests), else None: synthetic inputs, as for a replayed trace."""
    arrays = [q.payload for q in queries]
    return arrays if arrays and all(isinstance(a, np.ndarray) for a in arrays) else None


def hand_outputs(queries: Sequence[Query], outputs: np.ndarray) -> None:
    """Split a batch's outputs back to its queries, ``q.batch`` rows each, in batch order."""
    start = 0
    for q in queries:
        q.output = outputs[start : start + q.batch]
        start += q.batch


def lognormal_cv(p50: float, p99: float) -> float:
    """The coefficient of variation of a log-normal whose p99 / p50 ratio is the given one
    (p99 = p50 * exp(2.326 sigma)): the sim executor's ``noise_cv``."""
    if p50 <= 0 or p99 <= p50:
        return 0.0
    sigma = math.log(p99 / p50) / 2.3263478740408408
    return math.sqrt(math.expm1(sigma * sigma))
