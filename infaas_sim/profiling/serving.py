"""Serving-path profiling: batch latency as the real-time run sees it, measured before a run.

The profiler (:mod:`infaas_sim.profiling.profile`) times ``session.run`` back to back on the
calling thread: the runtime alone, warm. A served batch pays more, and the cluster records all
of it as the batch's execution time (from the event that dispatched it to the loop handling its
completion): the wall-clock loop waking on its timer late, the hand-off to the executor's pool
thread, the runtime starting cold after an idle gap (caches and branch predictors taken by the
loop thread in between), and the completion's hand-off back to the loop. On the 2-core machine
this work was done on, that was ~0.4 ms plus a ~1-4% slower runtime per batch-1 run of an
8.3 ms model (measured: loop lag 0.2 ms, hand-offs 0.08 ms each way, runtime median 8.42 vs
8.33 ms back to back).

:func:`profile_serving` measures exactly that path: the executor itself (the
:class:`~infaas_sim.realtime.RunnerExecutor` the run uses, its thread pool, its preloaded
runner) on a :class:`~infaas_sim.clock.WallClockEnvironment`, one batch at a time, each
dispatched from a timer event after a random idle gap (as arrivals dispatch batches), timed
from the timer's scheduled time to the loop handling the completion, as the cluster times it.
The samples are the simulator's input for the ``calibrated`` and ``served`` mappings of the
fidelity experiment; nothing of the run they predict goes into them.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from infaas_sim.clock import Clock, WallClockEnvironment
from infaas_sim.errors import ConfigError
from infaas_sim.executor import make_executor
from infaas_sim.realtime import RunnerExecutor, load_artifacts

if TYPE_CHECKING:
    from infaas_sim.cluster import Instance
    from infaas_sim.simulation import RunResult


@dataclass(frozen=True)
class ServingProfile:
    """Serving-path batch latencies of one variant, ms per sample, per batch size."""

    variant_id: str
    samples: dict[int, tuple[float, ...]]
    gap_ms: float

    def median_ms(self, batch: int) -> float:
        return float(np.median(self.samples[batch]))

    def mean_ms(self, batch: int) -> float:
        return float(np.mean(self.samples[batch]))

    def cv(self) -> float:
        """Run-to-run spread, pooled over batch sizes (each size's samples over its mean)."""
        return float(np.concatenate([np.array(s) / np.mean(s) for s in self.samples.values()]).std())

    def points(self) -> tuple[tuple[int, float], ...]:
        """(batch, median ms), the catalog's ``profile`` form."""
        return tuple((b, self.median_ms(b)) for b in sorted(self.samples))

    def service_seconds(self) -> list[tuple[int, float]]:
        """(inputs, seconds) per sample: what a resampling executor takes."""
        return [(b, ms / 1000) for b in sorted(self.samples) for ms in self.samples[b]]


def batch_times(result: RunResult) -> list[tuple[int, float]]:
    """(inputs, seconds) of every batch a run served, in completion order, as the cluster
    recorded them: the runtime plus every hand-off and wake-up on the way."""
    served = result.queries[result.queries["status"] == "served"]
    batches = served.groupby(["instance", "completion"], sort=False).agg(
        inputs=("exec_batch", "first"), ms=("execution_ms", "first")
    )
    return [(int(b), float(ms) / 1000) for b, ms in zip(batches["inputs"], batches["ms"], strict=True)]


def profile_serving(
    catalog_path: str,
    variant_id: str,
    batches: Sequence[int] | None = None,
    repeats: int = 100,
    warmup: int = 5,
    gap_ms: float = 10.0,
    seed: int = 0,
) -> ServingProfile:
    """Time ``repeats`` batches of each size through the variant's real executor (see the
    module docstring). ``gap_ms`` is the mean idle time between batches (exponential, seeded):
    a served replica below saturation idles between batches, and the runtime pays for it."""
    if repeats < 2 or warmup < 0 or gap_ms < 0:
        raise ConfigError("serving profile needs repeats >= 2, warmup >= 0 and gap_ms >= 0")
    artifacts = load_artifacts(catalog_path)
    art = artifacts.get(variant_id)
    if art is None:
        raise ConfigError(f"serving profile: variant {variant_id!r} has no artifact in {catalog_path}")
    sizes = sorted(set(batches or range(1, art.max_batch + 1)))
    ex = make_executor(art.backend, catalog=catalog_path, preload=[variant_id], max_threads=4)
    assert isinstance(ex, RunnerExecutor)
    env = WallClockEnvironment()
    ex.bind(Clock(env), seed)
    # The executor reads only these fields of an instance.
    stub = SimpleNamespace(iid=0, variant=SimpleNamespace(variant_id=variant_id), cores=art.allocation)
    inst = cast("Instance", stub)
    ex.load_now(inst)
    rng = np.random.default_rng([seed, 0x5E7])
    samples: dict[int, list[float]] = {b: [] for b in sizes}

    def probe() -> Generator[Any, Any, None]:
        for b in sizes:
            for i in range(warmup + repeats):
                yield env.timeout(float(rng.exponential(gap_ms / 1000)) if gap_ms else 0.0)
                t0 = env.now  # the timer's scheduled time, as the cluster's dispatch time is its event's
                yield ex.run(inst, b, ())
                if i >= warmup:
                    samples[b].append((env.now - t0) * 1000)

    try:
        env.run(until=env.process(probe()))
    finally:
        ex.close()
    return ServingProfile(variant_id, {b: tuple(v) for b, v in samples.items()}, gap_ms)


def profile_in_service(
    catalog_path: str,
    variant_id: str,
    cluster_conf: dict[str, Any],
    rate_qps: float,
    duration_s: float = 20.0,
    seed: int = 0,
    max_batch: int | None = None,
) -> ServingProfile:
    """Batch latencies of ``variant_id`` served in situ: one replica (``static`` policy) on
    the real executor and wall-clock loop, under Poisson arrivals at ``rate_qps`` for
    ``duration_s`` (a calibration trace, drawn from its own ``seed``). What the isolated probe
    of :func:`profile_serving` cannot show is here: the loop routing arrivals while a batch
    runs (it shares the cores and the interpreter lock with the runtime thread's hand-offs),
    and the runtime's tail under that. Batch sizes follow the arrivals (mostly small at
    moderate load); the samples are each served batch's execution time, as the cluster
    recorded it."""
    from infaas_sim.catalog import Catalog
    from infaas_sim.experiment import build_cluster
    from infaas_sim.policy import make_policy
    from infaas_sim.query import Application, Level, Requirement
    from infaas_sim.simulation import RunSpec, Workload, run_simulation

    if rate_qps <= 0 or duration_s <= 0:
        raise ConfigError("in-service profile needs rate_qps > 0 and duration_s > 0")
    catalog = Catalog.load(catalog_path)
    app = Application("calibration", Requirement(Level.VARIANT, variant_id, slo_ms=1e6), batch=1)
    rng = np.random.default_rng([seed, 0xCA1])
    times = np.cumsum(rng.exponential(1 / rate_qps, int(rate_qps * duration_s * 1.3 + 100)))
    times = times[times < duration_s]
    wl = Workload([app], times, np.zeros(len(times), dtype=np.int64))
    ex = make_executor(load_artifacts(catalog_path)[variant_id].backend, catalog=catalog_path, preload=[variant_id])
    policy = make_policy("static", variants={"calibration": variant_id}, replicas=1)
    spec = RunSpec(duration_s=duration_s, seed=seed, drain_s=10.0)
    res = run_simulation(catalog, wl, policy, ex, build_cluster(cluster_conf), spec, env=WallClockEnvironment())
    served = batch_times(res)
    if not served:
        raise ConfigError(f"in-service profile of {variant_id}: no query was served")
    samples: dict[int, list[float]] = {}
    for n, sec in served:
        if max_batch is None or n <= max_batch:
            samples.setdefault(n, []).append(sec * 1000)
    return ServingProfile(variant_id, {b: tuple(v) for b, v in sorted(samples.items())}, gap_ms=1000 / rate_qps)
