"""What runs inside a worker's Ray actor: the worker's runtime sessions, one per loaded instance.

``WorkerRuntime`` is a plain class (``executors.ray`` wraps it with ``ray.remote`` and the
worker's resources), so it can be tested without Ray. It hosts one *runner* per instance:

- ``catalog``: the variant's artifact from a profiled catalog (``infaas_sim.realtime``'s
  artifact table), opened with the row's backend by the same runner code the ``onnxruntime``
  (and ``tensorrt`` / ``neuron``) executors use, locally on the actor's node: ONNX Runtime
  on any node, TensorRT or Neuron where the node has them;
- ``numpy``: a stack of dense layers in numpy, real CPU work without a model file (tests,
  and machines without onnxruntime);
- ``profiled``: sleeps for the variant's profiled latency; isolates Ray's own overhead.

Calls on one actor run in a thread pool (the actor's ``max_concurrency``), as co-located
instances on a VM run side by side; the cluster never sends one instance two batches at once.
A batch for an instance the actor has not loaded yet (the cluster loads set-up instances
instantly, without calling the executor) loads it first, under a per-instance lock.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from infaas_sim.errors import ConfigError
from infaas_sim.variant import Variant


class Session(Protocol):
    def run_batch(self, n: int) -> float: ...  # seconds inside the runtime

    def close(self) -> None: ...


@dataclass(frozen=True)
class LoadSpec:
    """What an actor needs to load one instance: its variant and core allocation."""

    iid: int
    variant: Variant
    cores: float


class NumpySession:
    """``layers`` dense ``size`` x ``size`` layers with tanh, on a batch of ``inputs`` columns."""

    def __init__(self, spec: LoadSpec, size: int = 128, layers: int = 4, seed: int = 0) -> None:
        rng = np.random.default_rng([seed, spec.iid])
        self.weights = [rng.standard_normal((size, size)) / np.sqrt(size) for _ in range(layers)]
        self.size = size

    def run_batch(self, n: int) -> float:
        t0 = time.perf_counter()
        x = np.ones((self.size, n))
        for w in self.weights:
            x = np.tanh(w @ x)
        return time.perf_counter() - t0

    def close(self) -> None:
        self.weights = []


class ProfiledSession:
    """Sleeps for the variant's profiled latency (scaled): Ray's overhead with no compute."""

    def __init__(self, spec: LoadSpec, scale: float = 1.0) -> None:
        self.table = spec.variant.latency_by_batch
        self.scale = scale
        time.sleep(spec.variant.load_latency_ms / 1000 * scale)

    def run_batch(self, n: int) -> float:
        t0 = time.perf_counter()
        time.sleep(self.table[min(n, len(self.table) - 1)] / 1000 * self.scale)
        return time.perf_counter() - t0

    def close(self) -> None:
        pass


class CatalogOpener:
    """Opens a variant's artifact from a profiled catalog (the ``catalog`` runner)."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        # Imported on the actor's node: the runtimes are needed where the model runs.
        from infaas_sim.realtime import load_artifacts

        given = dict(params)
        self.catalog = str(given.pop("catalog", "") or "")
        if given:
            raise ConfigError(f"executor ray: runner catalog takes only 'catalog', got {sorted(given)}")
        if not self.catalog:
            raise ConfigError("executor ray: runner catalog needs runner_params.catalog (a profiled catalog)")
        self.artifacts = load_artifacts(self.catalog)

    def _open(self, variant_id: str, cores: float) -> Session:
        from infaas_sim.realtime import open_runner

        art = self.artifacts.get(variant_id)
        if art is None:
            raise ConfigError(f"executor ray: variant {variant_id!r} has no artifact in {self.catalog}")
        runner = open_runner(art.backend, art.path, cores, art.max_batch, art.options)
        runner.run_batch(1)  # the first run allocates the arena: part of loading, as in the onnxruntime executor
        return runner

    def __call__(self, spec: LoadSpec) -> Session:
        return self._open(spec.variant.variant_id, spec.cores)

    def preopen(self, variant_id: str) -> tuple[tuple[str, float], Session]:
        """A session of ``variant_id`` at its profiled allocation, keyed (variant id, cores)."""
        art = self.artifacts.get(variant_id)
        if art is None:
            raise ConfigError(f"executor ray: preload variant {variant_id!r} has no artifact in {self.catalog}")
        return (variant_id, art.allocation), self._open(variant_id, art.allocation)


RUNNERS = ("catalog", "numpy", "profiled")


def make_session_factory(runner: str, params: Mapping[str, Any], seed: int) -> Callable[[LoadSpec], Session]:
    if runner == "numpy":
        return lambda spec: NumpySession(spec, seed=seed, **dict(params))
    if runner == "profiled":
        return lambda spec: ProfiledSession(spec, **dict(params))
    if runner == "catalog":
        return CatalogOpener(params)
    raise ConfigError(f"executor ray: unknown runner {runner!r} (known: {', '.join(RUNNERS)})")


class WorkerRuntime:
    """One cluster worker's runtime. Every method returns plain data (it crosses processes)."""

    def __init__(self, wid: int, runner: str, runner_params: Mapping[str, Any], seed: int) -> None:
        self.wid = wid
        self.factory = make_session_factory(runner, runner_params, seed)
        self.sessions: dict[int, Session] = {}
        self.spare: dict[tuple[str, float], list[Session]] = {}  # preloaded, not yet an instance's
        self.locks: dict[int, threading.Lock] = {}
        self.guard = threading.Lock()
        self.batches = 0
        self.opened = 0  # sessions opened for an instance
        self.adopted = 0  # preloaded sessions an instance took

    def ready(self) -> dict[str, Any]:
        """Where the actor runs (its first call: it returns once the actor is placed)."""
        info: dict[str, Any] = {"wid": self.wid, "pid": os.getpid()}
        import sys

        ray = sys.modules.get("ray")  # asking Ray outside an actor would start an instance
        if ray is not None and ray.is_initialized():
            ctx = ray.get_runtime_context()
            info["node_id"] = ctx.get_node_id()
            info["resources"] = ctx.get_assigned_resources()
        return info

    def _lock(self, iid: int) -> threading.Lock:
        with self.guard:
            return self.locks.setdefault(iid, threading.Lock())

    def preload(self, variant_ids: list[str]) -> int:
        """Open sessions before the run's clock starts (one per id; repeat an id for replicas);
        the first instances of those variants at their profiled cores take them."""
        if variant_ids and not isinstance(self.factory, CatalogOpener):
            raise ConfigError("executor ray: preload needs the catalog runner")
        for vid in variant_ids:
            assert isinstance(self.factory, CatalogOpener)
            key, session = self.factory.preopen(vid)
            with self.guard:
                self.spare.setdefault(key, []).append(session)
        return len(variant_ids)

    def load(self, spec: LoadSpec) -> float:
        """Load ``spec``'s instance (once); the seconds it took."""
        with self._lock(spec.iid):
            if spec.iid in self.sessions:
                return 0.0
            t0 = time.perf_counter()
            with self.guard:
                spare = self.spare.get((spec.variant.variant_id, spec.cores))
                session = spare.pop() if spare else None
            if session is None:
                session = self.factory(spec)
                self.opened += 1
            else:
                self.adopted += 1
            self.sessions[spec.iid] = session
            return time.perf_counter() - t0

    def run(self, spec: LoadSpec, inputs: int, slowdown: float = 1.0) -> float:
        """Run one batch of ``inputs`` on ``spec``'s instance; the seconds the runtime took
        (a lazy load before it not counted). A worker slowed down (a slowdown fault) holds
        the batch ``slowdown`` times as long."""
        session = self.sessions.get(spec.iid)
        if session is None:
            self.load(spec)
            session = self.sessions[spec.iid]
        seconds = session.run_batch(inputs)
        if slowdown > 1:
            time.sleep(seconds * (slowdown - 1))
            seconds *= slowdown
        self.batches += 1
        return seconds

    def unload(self, iid: int) -> None:
        with self._lock(iid):
            session = self.sessions.pop(iid, None)
        if session is not None:
            session.close()

    def loaded(self) -> list[int]:
        return sorted(self.sessions)

    def stats(self) -> dict[str, int]:
        return {"batches": self.batches, "opened": self.opened, "adopted": self.adopted}
