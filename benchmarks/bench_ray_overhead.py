"""Ray's overhead per query: the same trace through ``onnxruntime`` in-process and through
``ray`` (the worker as a Ray actor holding the same ONNX Runtime session) on one machine.

    .venv/bin/python benchmarks/bench_ray_overhead.py [--model resnet-s] [--qps 40] [--seconds 20]

The variant (a built-in model, fp32, on ``--cores`` intra-op threads) is generated and
profiled into a temporary folder. Both runs replay the same Poisson trace (batch 1, one
replica, the ``static`` policy) on a wall-clock loop on a local Ray instance of this machine's
CPUs. For each served query, its *serving overhead* is the execution time the loop saw for
its batch minus the seconds the runtime itself took for that batch (measured around
``session.run``, in the thread pool or in the actor): the cost of getting a batch to the
runtime and its completion back to the loop. Ray's overhead per query is the difference
between the two runs' overheads; both are printed as median and p99, with the end-to-end
latency percentiles. Queries arriving in the first second (the actor starting, the lazy
session open) are left out.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from infaas_sim.catalog import Catalog
from infaas_sim.clock import WallClockEnvironment
from infaas_sim.executor import Executor, make_executor
from infaas_sim.experiment import build_cluster
from infaas_sim.policy import make_policy
from infaas_sim.profiling.build import build_catalog
from infaas_sim.profiling.zoo import builtin_family
from infaas_sim.query import Application, Level, Requirement
from infaas_sim.simulation import RunResult, RunSpec, Workload, run_simulation


def replay(catalog_path: Path, vid: str, times: np.ndarray, seconds: float, ex: Executor) -> RunResult:
    catalog = Catalog.load(catalog_path)
    cluster = build_cluster({
        "workers": {"cpu": "local"},
        "instance_types": {"local": {"kind": "cpu", "vcpus": os.cpu_count() or 2, "memory_mb": 8192,
                                     "price_per_hour": 0.096, "startup_s": 0.0}},
        "min_workers": {"cpu": 1}, "max_workers": {"cpu": 1}, "max_queue_s": 5.0, "max_wait_s": 0.0,
    })  # fmt: skip
    app = Application("bench", Requirement(Level.VARIANT, vid), batch=1)
    wl = Workload([app], times, np.zeros(len(times), dtype=np.int64))
    policy = make_policy("static", variants={"bench": vid}, replicas=1)
    env = WallClockEnvironment()  # made after the executor: Ray's start is not on the clock
    return run_simulation(catalog, wl, policy, ex, cluster, RunSpec(duration_s=seconds, drain_s=10.0), env=env)


def overhead_ms(res: RunResult, runtime_s: list[float]) -> pd.DataFrame:
    """Per served query: the loop's execution time of its batch minus the runtime's seconds.
    One replica runs one batch at a time, so batches complete in the order the runtime
    reported them."""
    q = res.queries
    served = q[q["status"] == "served"].copy()
    batches = served.groupby("completion", sort=True)["execution_ms"].first()
    if len(batches) != len(runtime_s):
        raise RuntimeError(f"{len(batches)} batches completed but the runtime reported {len(runtime_s)}")
    over = pd.Series(batches.to_numpy() - np.asarray(runtime_s) * 1000, index=batches.index)
    served["overhead_ms"] = served["completion"].map(over)
    return served[served["arrival"] >= 1.0]


def stats(x: pd.Series) -> str:
    return f"median {np.median(x):7.3f} ms   p99 {np.percentile(x, 99):7.3f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet-s")
    ap.add_argument("--cores", type=float, default=1)
    ap.add_argument("--qps", type=float, default=40.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    import ray

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        path, _ = build_catalog(
            builtin_family([a.model]), tmp, cores=[a.cores], max_batch=4, backends=["onnxruntime"],
            ort_precisions=["fp32"], warmup=2, repeats=5,
        )  # fmt: skip
        vid = f"{a.model}-ort-fp32-{a.cores:g}c"
        rng = np.random.default_rng(a.seed)
        times = np.cumsum(rng.exponential(1.0 / a.qps, int(a.qps * a.seconds * 2)))
        times = times[times < a.seconds]

        ort_ex = make_executor("onnxruntime", catalog=str(path), preload=[vid])
        local = replay(path, vid, times, a.seconds, ort_ex)
        local_over = overhead_ms(local, [s for _, s in ort_ex.stats.service])  # type: ignore[attr-defined]

        ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, logging_level=logging.WARNING)
        try:
            ray_ex: Any = make_executor(
                "ray", runner="catalog", runner_params={"catalog": str(path)},
                resources={"cpu": {"num_cpus": a.cores}}, preload=[vid],
            )  # fmt: skip
            t0 = time.perf_counter()
            remote = replay(path, vid, times, a.seconds, ray_ex)
            wall = time.perf_counter() - t0
            ray_over = overhead_ms(remote, ray_ex.compute_s)
        finally:
            ray.shutdown()

    print(f"variant {vid}: {len(times)} queries at {a.qps:g}/s over {a.seconds:g} s, "
          f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    for name, res, over in (("onnxruntime", local, local_over), ("ray", remote, ray_over)):
        s = res.summary
        lat = over["latency_ms"]
        print(f"{name:>12}: served {s['served']}, rejected {s['rejected']}, failed {s['failed']}; "
              f"latency (arrivals after 1 s) {stats(lat)}")  # fmt: skip
        print(f"{'':>12}  serving overhead per query: {stats(over['overhead_ms'])}")
    extra_med = np.median(ray_over["overhead_ms"]) - np.median(local_over["overhead_ms"])
    extra_p99 = np.percentile(ray_over["overhead_ms"], 99) - np.percentile(local_over["overhead_ms"], 99)
    print(f"Ray's overhead per query (ray - in-process): median {extra_med:.3f} ms, p99 {extra_p99:.3f} ms")
    print(
        f"(ray run wall {wall:.1f} s; runtime per batch: in-process median "
        f"{np.median([s for _, s in ort_ex.stats.service]) * 1000:.3f} ms, "  # type: ignore[attr-defined]
        f"in the actor {np.median(ray_ex.compute_s) * 1000:.3f} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
