"""Simulator hot-path throughput: simulated queries per wall-second.

Runs the default experiment (the config's default policy, ``infaas``, unless ``--policy``
names another; default catalog and 3-app mix) at a mean of 1,000 QPS for 10 simulated
minutes, and, in the same process, a bare SimPy M/D/1 loop (one process per customer, a
Resource as the server: SimPy's idiomatic model) over the same number of Poisson arrivals.
Prints both rates and their ratio; with ``--repeat N``, each run and the medians (the ratio's
median is over the per-repeat ratios). The 1-minute load average is printed alongside, since
wall-clock rates on a shared machine depend on it. Issue 2's target: >= 50,000 simulated
queries/s and a ratio >= 0.5.

    .venv/bin/python benchmarks/bench_simulator.py [--qps 1000] [--duration 600] [--policy infaas] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import simpy
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from infaas_sim.experiment import run_experiment

CONF = Path(__file__).resolve().parents[1] / "experiments" / "conf"


def bare_md1(n: int, qps: float, service_s: float, seed: int = 0) -> float:
    """Wall seconds for a bare SimPy M/D/1 loop over ``n`` Poisson arrivals."""
    env = simpy.Environment()
    server = simpy.Resource(env, capacity=1)
    gaps = np.random.default_rng(seed).exponential(1 / qps, n).tolist()
    done = [0]

    def customer() -> Generator[simpy.Event, Any, None]:
        with server.request() as req:
            yield req
            yield env.timeout(service_s)
        done[0] += 1

    def source() -> Generator[simpy.Event, Any, None]:
        for g in gaps:
            yield env.timeout(g)
            env.process(customer())

    env.process(source())
    t0 = time.perf_counter()
    env.run()
    wall = time.perf_counter() - t0
    assert done[0] == n
    return wall


def run_once(args: argparse.Namespace) -> tuple[str, int, float, float]:
    """(policy, queries, simulator wall s, bare-loop wall s) of one repeat."""
    overrides = [f"policy={args.policy}"] if args.policy else []
    overrides += [f"trace.mean_qps={args.qps}", "trace.peak_to_mean=2", f"run.duration_s={args.duration}",
                  "run.progress=false"]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name="config", overrides=overrides)
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    plain.pop("hydra", None)
    t0 = time.perf_counter()
    result = run_experiment({str(k): v for k, v in plain.items()})
    wall = time.perf_counter() - t0
    n = int(result.summary["queries"])
    bare_wall = bare_md1(n, args.qps, 0.5 / args.qps)  # utilisation 0.5
    return str(result.summary["policy"]), n, wall, bare_wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--qps", type=float, default=1000.0)
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--policy", default=None, help="policy name (default: the config's default, infaas)")
    ap.add_argument("--repeat", type=int, default=1, help="runs; medians are printed when > 1")
    args = ap.parse_args()
    if args.repeat < 1:
        raise SystemExit(f"--repeat must be >= 1, got {args.repeat}")
    sims: list[float] = []
    bares: list[float] = []
    ratios: list[float] = []
    for k in range(args.repeat):
        policy, n, wall, bare_wall = run_once(args)
        sim_rate, bare_rate = n / wall, n / bare_wall
        sims.append(sim_rate)
        bares.append(bare_rate)
        ratios.append(sim_rate / bare_rate)
        tag = f" [run {k + 1}/{args.repeat}]" if args.repeat > 1 else ""
        print(f"default experiment ({policy}, {args.qps:g} QPS mean, {args.duration:g} s simulated){tag}")
        print(f"  queries                 {n}")
        print(f"  wall time               {wall:.2f} s (run_experiment, incl. trace generation and records)")
        print(f"  simulated queries/s     {sim_rate:,.0f}")
        print("bare SimPy M/D/1 loop, same number of arrivals (process per customer + Resource)")
        print(f"  wall time               {bare_wall:.2f} s")
        print(f"  simulated queries/s     {bare_rate:,.0f}")
        print(f"ratio (simulator / bare)  {sim_rate / bare_rate:.2f}")
        print(f"load average (1 min)      {os.getloadavg()[0]:.2f}")
    if args.repeat > 1:
        med_sim, med_bare, med_ratio = statistics.median(sims), statistics.median(bares), statistics.median(ratios)
        print(f"median of {args.repeat}: simulator {med_sim:,.0f} q/s, bare {med_bare:,.0f} q/s, ratio {med_ratio:.2f}")


if __name__ == "__main__":
    main()
