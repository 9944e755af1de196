"""Simulator hot-path throughput: simulated queries per wall-second.

Runs the default experiment (static policy, default catalog and 3-app mix) at a mean of
1,000 QPS for 10 simulated minutes, and, in the same process, a bare SimPy M/D/1 loop (one
process per customer, a Resource as the server: SimPy's idiomatic model) over the same number
of Poisson arrivals. Prints both rates and their ratio.

    .venv/bin/python benchmarks/bench_simulator.py [--qps 1000] [--duration 600] [--policy static]
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--qps", type=float, default=1000.0)
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--policy", default="static")
    args = ap.parse_args()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(
            config_name="config",
            overrides=[
                f"policy={args.policy}",
                f"trace.mean_qps={args.qps}",
                "trace.peak_to_mean=2",
                f"run.duration_s={args.duration}",
                "run.progress=false",
            ],
        )
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    plain.pop("hydra", None)
    t0 = time.perf_counter()
    result = run_experiment({str(k): v for k, v in plain.items()})
    wall = time.perf_counter() - t0
    n = result.summary["queries"]
    sim_rate = n / wall
    bare_wall = bare_md1(n, args.qps, 0.5 / args.qps)  # utilisation 0.5
    bare_rate = n / bare_wall
    print(f"default experiment ({args.policy}, {args.qps:g} QPS mean, {args.duration:g} s simulated)")
    print(f"  queries                 {n}")
    print(f"  wall time               {wall:.2f} s (run_experiment, incl. trace generation and records)")
    print(f"  simulated queries/s     {sim_rate:,.0f}")
    print("bare SimPy M/D/1 loop, same number of arrivals (process per customer + Resource)")
    print(f"  wall time               {bare_wall:.2f} s")
    print(f"  simulated queries/s     {bare_rate:,.0f}")
    print(f"ratio (simulator / bare)  {sim_rate / bare_rate:.2f}")


if __name__ == "__main__":
    main()
