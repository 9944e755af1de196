"""Scale: start-up of many workers, and a 10,000 QPS run on up to 1,000 workers.

Prints, in one run:

- start-up: CPU seconds to add ``--workers`` workers and load one replica on each (the
  cluster's placement, as a policy's set-up does it), and the same for a tenth of them: the
  ratio of the two is ~10 when placement is linear (it was ~25x per 5x, quadratic, before
  the placement index: 10,000 workers took 50 CPU s);
- per policy (``static`` sized for the peak, ``infaas`` with ``vm_scale_out=demand``), in a
  child process of its own so that its peak RSS is its own: queries, simulated seconds per
  CPU second, CPU seconds, peak RSS and bytes of peak RSS per query, the most workers live.

CPU time, not wall time (the machine is shared); ``--repeat N`` prints medians over repeats.

    .venv/bin/python benchmarks/bench_scale.py [--qps 10000] [--duration 60] [--workers 10000] [--repeat 1]

Issue 16's target: one simulated hour at 10,000 QPS on 1,000 workers in under 10 minutes.
Each run is the CLI's: ``run_experiment`` streaming the records to Parquet as it goes, then
``write_run`` (no figures), both timed. ``--duration 3600`` runs the hour (36M queries).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONF = Path(__file__).resolve().parents[1] / "experiments" / "conf"
POLICIES = {
    "static": ["+arm=static_cpu"],
    "infaas": ["+arm=infaas_cpu", "policy.params.vm_scale_out=demand"],
}


def startup_cpu_s(n: int) -> float:
    """CPU seconds to add ``n`` CPU workers with one 8-core replica each."""
    import simpy

    from infaas_sim.catalog import Catalog
    from infaas_sim.clock import Clock
    from infaas_sim.cluster import Cluster
    from infaas_sim.executor import make_executor
    from infaas_sim.hardware import DEFAULT_INSTANCE_TYPES, DEFAULT_TYPE_BY_KIND, HardwareKind
    from infaas_sim.metrics import Recorder

    catalog = Catalog.load("default")
    vid = next(v.variant_id for v in catalog.variants if v.hardware is HardwareKind.CPU and v.allocation == 8)
    env = simpy.Environment()
    ex = make_executor("sim")
    ex.bind(Clock(env), 0)
    cluster = Cluster(env, catalog, ex, Recorder(catalog, []), DEFAULT_INSTANCE_TYPES, DEFAULT_TYPE_BY_KIND,
                      max_workers={HardwareKind.CPU: n})  # fmt: skip
    t0 = time.process_time()
    for _ in range(n):
        assert cluster.load(vid, instant=True) is not None
    return time.process_time() - t0


def one(policy: str, qps: float, duration: float, max_workers: int) -> dict[str, float]:
    """Run one configuration in this process; its figures as a dict."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from infaas_sim.experiment import run_experiment

    overrides = [*POLICIES[policy], "trace=poisson", f"trace.qps={qps}", f"run.duration_s={duration}",
                 "run.progress=false", "outputs.figures=false", f"cluster.max_workers.cpu={max_workers}"]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name="config", overrides=overrides)
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    plain.pop("hydra", None)
    import tempfile

    from experiments.outputs import STREAM_NAME, write_run

    t0, w0 = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:  # as the CLI runs: records streamed, then the outputs written
        result = run_experiment({str(k): v for k, v in plain.items()}, records_to=Path(tmp) / STREAM_NAME)
        write_run(result, tmp, figures=False)
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    from rss import peak_rss

    rss = peak_rss()  # the child's own peak (ru_maxrss would start at the parent's)
    tl = result.timeline
    most = int(tl["workers_cpu"].max()) if "workers_cpu" in tl else 0
    return {"queries": float(result.summary["queries"]), "cpu_s": cpu, "wall_s": wall, "peak_rss": float(rss),
            "workers": float(most), "violations": float(result.summary["slo_violation_rate"])}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--qps", type=float, default=10_000.0)
    ap.add_argument("--duration", type=float, default=60.0, help="simulated seconds")
    ap.add_argument("--workers", type=int, default=10_000, help="start-up: workers to add")
    ap.add_argument("--max-workers", type=int, default=1_000, help="the run's CPU worker limit")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child process: one policy, JSON out
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.qps, args.duration, args.max_workers)))
        return
    if args.repeat < 1:
        raise SystemExit(f"--repeat must be >= 1, got {args.repeat}")
    small = max(1, args.workers // 10)
    full_s = statistics.median(startup_cpu_s(args.workers) for _ in range(args.repeat))
    small_s = statistics.median(startup_cpu_s(small) for _ in range(args.repeat))
    print(f"start-up: {args.workers:,} workers + one replica each   {full_s:.3f} CPU s")
    print(f"start-up: {small:,} workers + one replica each   {small_s:.3f} CPU s")
    print(f"  ratio {full_s / max(small_s, 1e-9):.1f} for 10x the workers (10: linear, 100: quadratic)")
    for policy in POLICIES:
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, __file__, "--one", policy, "--qps", str(args.qps),
                                  "--duration", str(args.duration), "--max-workers", str(args.max_workers)],
                                 check=True, capture_output=True, text=True, env=os.environ.copy())  # fmt: skip
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{policy}: {args.qps:,.0f} QPS for {args.duration:g} simulated s, at most {args.max_workers} workers")
        print(f"  queries                    {med['queries']:,.0f}")
        print(f"  CPU s                      {med['cpu_s']:.1f} (wall {med['wall_s']:.1f} s)")
        print(f"  simulated s per CPU s      {args.duration / med['cpu_s']:.2f}")
        print(f"  queries per CPU s          {med['queries'] / med['cpu_s']:,.0f}")
        print(f"  peak RSS                   {med['peak_rss'] / 2**20:,.0f} MiB "
              f"({med['peak_rss'] / max(med['queries'], 1):,.0f} bytes per query, interpreter included)")  # fmt: skip
        print(f"  most CPU workers live      {med['workers']:.0f}")
        print(f"  SLO violation rate         {med['violations']:.1%}")


if __name__ == "__main__":
    main()
