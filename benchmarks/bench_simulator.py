"""Simulator throughput against two floors, in one run on one configuration (issue 16).

    .venv/bin/python benchmarks/bench_simulator.py [--qps 1000] [--duration 600] [--policy infaas] [--repeat 3]

The configuration is the default experiment (``experiments/conf/config.yaml``'s defaults: the
Twitter-like trace, the 3-application mix, the default catalog, the aws cluster, the ``sim``
executor; the ``infaas`` policy unless ``--policy``) at ``--qps`` mean (peak-to-mean 2) for
``--duration`` simulated seconds. Every figure is CPU time (``time.process_time``), never wall
time: the machine is shared, and each ratio is taken between figures of the same repeat.

Each repeat runs, in turn:

1. **the simulator**, in a child process of its own (so that its peak RSS is its own and the
   floors count for nothing in it): ``run_experiment`` on the composed config, streaming its
   records to Parquet as the CLI does (the blocks written during the loop count in it), then
   ``outputs.write_run`` (no figures) into a temporary folder. Printed:

   - *run_experiment*: simulated queries per CPU second of the whole call (config checks,
     catalog, trace generation, set-up, the event loop, building the records, timeline and
     summary);
   - *+ writing results*: the same, with ``write_run``'s Parquet files counted too;
   - *event loop*: queries per CPU second from the first ``env.run`` to ``executor.close``
     (the run's end), measured by wrapping ``run_simulation`` at run time with an
     instrumented ``simpy.Environment`` (nothing in ``infaas_sim`` is changed); the split of
     the call into build (config, catalog, trace), set-up, loop and records is printed too;
   - *peak RSS* at the end of ``run_experiment`` and bytes of it per query, interpreter and
     imports included; and the bytes per query of the growth above the peak RSS the child
     had before the run. The peak is the child's ``VmHWM`` (``/proc/self/status``): on Linux
     ``resource.getrusage``'s ``ru_maxrss`` in a child starts at its parent's peak, which grows
     as the floors run, so it is printed only alongside, as ``ru_maxrss``.

2. **the SimPy-callback floor** (:func:`floors.simpy_callback_floor`), in this process, on the
   run's own arrivals (``arrival`` and ``app`` of its ``queries.parquet``): each arrival a
   ``Timeout`` callback (no process per query) routing by a dict lookup to one of N servers,
   a FIFO queue per server, batches of up to the run's largest batch, completion by a
   ``Timeout`` callback, one outcome tuple per query. N is the number of instances that
   served queries in the run (each application routed to the instances that served it), the
   service time per batch the mean ``execution_ms`` of the served queries, the largest batch
   their largest ``exec_batch``. Queries per CPU second.

3. **the heapq floor** (:func:`floors.heapq_floor`): the same model and arrivals as a plain
   ``heapq`` event loop without SimPy. Queries per CPU second.

Then the ratios simulator / SimPy-callback floor and simulator / heapq floor, for the whole
``run_experiment`` and for the event loop alone, and the 1-minute load average. With
``--repeat N`` the three measurements alternate N times and the medians are printed (each
ratio's median is over the per-repeat ratios).

Last, once, **in-loop memory**: the same run in another child under ``tracemalloc`` (started
when ``run_simulation`` is entered, so the trace's arrays built before it do not count): the
peak traced bytes up to the loop's end per query, and up to ``run_simulation``'s return
(records frame included) per query. Tracing slows the run, so it is timed in no figure.

Issue 16's targets: run_experiment >= 200,000 simulated queries per CPU second and >= 0.45 of
the SimPy-callback floor; in-loop memory <= 150 bytes per query. The old bare-SimPy M/D/1
anchor (a process and six events per customer) is gone: it is not a fair floor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rss import peak_rss, ru_maxrss

CONF = Path(__file__).resolve().parents[1] / "experiments" / "conf"


# --- child process: the simulator ---------------------------------------------------------


def _config(args: argparse.Namespace) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    overrides = [f"policy={args.policy}"] if args.policy else []
    overrides += [f"trace.mean_qps={args.qps}", "trace.peak_to_mean=2", f"run.duration_s={args.duration}",
                  "run.progress=false", "outputs.figures=false"]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name="config", overrides=overrides)
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    plain.pop("hydra", None)
    return {str(k): v for k, v in plain.items()}


def _instrument(marks: dict[str, float], on_enter: Callable[[], None], on_loop_end: Callable[[], None]) -> None:
    """Wrap ``run_simulation`` as ``run_experiment`` calls it: CPU-time marks at its entry,
    at the first ``env.run`` (the loop's start), at ``executor.close`` (the loop's end) and at
    its return; ``on_enter`` / ``on_loop_end`` run at entry and at the loop's end."""
    import simpy

    import infaas_sim.experiment as experiment

    real = experiment.run_simulation

    class TimedEnvironment(simpy.Environment):
        def run(self, until: Any = None) -> Any:
            marks.setdefault("loop0", time.process_time())
            return super().run(until)

    def run_simulation(catalog: Any, workload: Any, policy: Any, executor: Any, cluster_spec: Any, run: Any,
                       env: Any = None, records_to: Any = None) -> Any:  # fmt: skip
        on_enter()
        marks["sim0"] = time.process_time()
        if env is None:  # not a real-time executor's clock: ours, with the loop's start marked
            env = TimedEnvironment()
        close = executor.close

        def timed_close() -> None:
            marks.setdefault("loop1", time.process_time())
            on_loop_end()
            close()

        executor.close = timed_close
        result = real(catalog, workload, policy, executor, cluster_spec, run, env=env, records_to=records_to)
        marks["sim1"] = time.process_time()
        return result

    experiment.run_simulation = run_simulation


def child_run(args: argparse.Namespace) -> dict[str, Any]:
    """One timed simulator run; results written under ``args.out``."""
    from experiments.outputs import STREAM_NAME, write_run
    from infaas_sim.experiment import run_experiment

    cfg = _config(args)
    marks: dict[str, float] = {}
    _instrument(marks, lambda: None, lambda: None)
    rss0 = peak_rss()
    t0 = time.process_time()
    result = run_experiment(cfg, records_to=Path(args.out) / STREAM_NAME)  # as the CLI runs
    t1 = time.process_time()
    rss, ru = peak_rss(), ru_maxrss()
    write_run(result, args.out, figures=False)
    t2 = time.process_time()
    out: dict[str, Any] = {
        "policy": str(result.summary["policy"]), "queries": int(result.summary["queries"]),
        "served": int(result.summary["served"]), "rejected": int(result.summary["rejected"]),
        "cpu_run": t1 - t0, "cpu_write": t2 - t1, "rss_before": rss0, "rss_peak": rss, "ru_maxrss": ru,
        "rss_after_write": peak_rss(),
    }  # fmt: skip
    if {"sim0", "loop0", "loop1", "sim1"} <= set(marks):
        out.update(build=marks["sim0"] - t0, setup=marks["loop0"] - marks["sim0"], loop=marks["loop1"] - marks["loop0"],
                   records=marks["sim1"] - marks["loop1"], after=t1 - marks["sim1"])  # fmt: skip
    return out


def child_trace(args: argparse.Namespace) -> dict[str, Any]:
    """The same run under tracemalloc, from ``run_simulation``'s entry."""
    import tracemalloc

    from infaas_sim.experiment import run_experiment

    cfg = _config(args)
    peaks: dict[str, int] = {}

    def loop_end() -> None:
        peaks["loop"] = tracemalloc.get_traced_memory()[1]

    marks: dict[str, float] = {}
    _instrument(marks, tracemalloc.start, loop_end)
    result = run_experiment(cfg, records_to=Path(args.out) / "traced.parquet")
    peaks["run"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"queries": int(result.summary["queries"]), **peaks}


def _child(mode: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, "--out", str(out), "--qps", str(args.qps),
           "--duration", str(args.duration)]  # fmt: skip
    if args.policy:
        cmd += ["--policy", args.policy]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"bench_simulator: the {mode} child failed (exit {proc.returncode})")
    parsed: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return parsed


# --- this process: the floors -------------------------------------------------------------


def floor_inputs(queries_parquet: Path) -> tuple[Any, Any, Any]:
    """The run's arrivals (times, application codes) and the floors' model, from its
    ``queries.parquet``."""
    import numpy as np
    import pandas as pd
    from floors import FloorSpec

    q = pd.read_parquet(queries_parquet, columns=["qid", "arrival", "app", "status", "instance", "execution_ms",
                                                  "exec_batch"])  # fmt: skip
    q = q.sort_values("qid", kind="stable")
    times = q["arrival"].to_numpy(dtype=float)
    apps = q["app"].cat.codes.to_numpy(dtype=np.int64)
    served = q[(q["status"] == "served") & (q["instance"] >= 0)]
    instances = sorted(int(i) for i in served["instance"].unique())
    if not instances:  # nothing served: one server, a millisecond per batch of one
        return times, apps, FloorSpec(1, {int(a): (0,) for a in np.unique(apps)}, 1e-3, 1)
    pos = {inst: k for k, inst in enumerate(instances)}
    routes: dict[int, tuple[int, ...]] = {}
    by_app = served.groupby(served["app"].cat.codes, observed=True)["instance"].unique()
    for app in np.unique(apps).tolist():
        ks = by_app.get(app)
        routes[int(app)] = tuple(sorted(pos[int(i)] for i in ks)) if ks is not None else tuple(range(len(pos)))
    spec = FloorSpec(servers=len(instances), routes=routes, service_s=float(served["execution_ms"].mean()) / 1000,
                     max_batch=max(1, int(served["exec_batch"].max())))  # fmt: skip
    return times, apps, spec


# --- the report ---------------------------------------------------------------------------


def _med(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--qps", type=float, default=1000.0, help="mean queries/s of the trace")
    ap.add_argument("--duration", type=float, default=600.0, help="simulated seconds")
    ap.add_argument("--policy", default=None, help="policy name (default: the config's default, infaas)")
    ap.add_argument("--repeat", type=int, default=1, help="alternating repeats; medians are printed when > 1")
    ap.add_argument("--no-tracemalloc", action="store_true", help="skip the in-loop memory run")
    ap.add_argument("--child", choices=("run", "trace"), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child_run(args) if args.child == "run" else child_trace(args)))
        return
    if args.repeat < 1:
        raise SystemExit(f"--repeat must be >= 1, got {args.repeat}")

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from floors import heapq_floor, simpy_callback_floor

    keys = ("sim", "sim_write", "loop", "simpy", "heap", "r_simpy", "r_heap", "rl_simpy", "rl_heap", "rss", "rss_q",
            "grow_q")  # fmt: skip
    cols: dict[str, list[float]] = {k: [] for k in keys}
    with tempfile.TemporaryDirectory(prefix="bench_simulator-") as tmp:
        for k in range(args.repeat):
            out = Path(tmp) / f"run{k}"
            sim = _child("run", args, out)
            times, apps, spec = floor_inputs(out / "queries.parquet")
            f_simpy = simpy_callback_floor(times, apps, spec)
            f_heap = heapq_floor(times, apps, spec)
            n = sim["queries"]
            assert n == f_simpy.queries == f_heap.queries, (n, f_simpy.queries, f_heap.queries)
            rate = n / sim["cpu_run"]
            loop = n / sim["loop"] if "loop" in sim else float("nan")
            row = {"sim": rate, "sim_write": n / (sim["cpu_run"] + sim["cpu_write"]), "loop": loop,
                   "simpy": f_simpy.rate, "heap": f_heap.rate, "r_simpy": rate / f_simpy.rate,
                   "r_heap": rate / f_heap.rate, "rl_simpy": loop / f_simpy.rate, "rl_heap": loop / f_heap.rate,
                   "rss": sim["rss_peak"], "rss_q": sim["rss_peak"] / n,
                   "grow_q": (sim["rss_peak"] - sim["rss_before"]) / n}  # fmt: skip
            for key, v in row.items():
                cols[key].append(v)
            tag = f" [repeat {k + 1}/{args.repeat}]" if args.repeat > 1 else ""
            print(f"default experiment ({sim['policy']}, {args.qps:g} QPS mean, {args.duration:g} s simulated){tag}")
            print(f"  queries                       {n:,} ({sim['served']:,} served, {sim['rejected']:,} rejected)")
            print(f"  simulator, run_experiment     {rate:12,.0f} q/CPU-s  ({sim['cpu_run']:.2f} CPU s)")
            print(f"  simulator, + writing results  {row['sim_write']:12,.0f} q/CPU-s  "
                  f"(write_run {sim['cpu_write']:.2f} CPU s)")  # fmt: skip
            if "loop" in sim:
                print(f"  simulator, event loop alone   {loop:12,.0f} q/CPU-s  ({sim['loop']:.2f} CPU s; build "
                      f"{sim['build']:.2f}, set-up {sim['setup']:.2f}, records {sim['records']:.2f})")  # fmt: skip
            print(f"  SimPy-callback floor          {f_simpy.rate:12,.0f} q/CPU-s  ({f_simpy.cpu_s:.2f} CPU s)")
            print(f"  heapq floor                   {f_heap.rate:12,.0f} q/CPU-s  ({f_heap.cpu_s:.2f} CPU s)")
            print(f"    floors' model: {spec.servers} servers, {spec.service_s * 1e3:.2f} ms per batch, batches "
                  f"<= {spec.max_batch} (mean {f_simpy.mean_batch:.2f}), mean latency "
                  f"{f_simpy.mean_latency_s * 1e3:.1f} ms")  # fmt: skip
            print(f"  ratio simulator / SimPy floor {row['r_simpy']:.3f} (event loop {row['rl_simpy']:.3f})")
            print(f"  ratio simulator / heapq floor {row['r_heap']:.3f} (event loop {row['rl_heap']:.3f})")
            print(f"  peak RSS                      {sim['rss_peak'] / 2**20:,.0f} MiB: {row['rss_q']:,.0f} bytes "
                  f"per query (interpreter included); {row['grow_q']:,.0f} bytes per query above the "
                  f"{sim['rss_before'] / 2**20:,.0f} MiB before the run (ru_maxrss "
                  f"{sim['ru_maxrss'] / 2**20:,.0f} MiB)")  # fmt: skip
            print(f"  load average (1 min)          {os.getloadavg()[0]:.2f}")
        mem = None if args.no_tracemalloc else _child("trace", args, Path(tmp) / "trace")

    m = {key: _med(v) for key, v in cols.items()}
    if args.repeat > 1:
        print(f"median of {args.repeat} alternating repeats")
        print(f"  simulator, run_experiment     {m['sim']:12,.0f} q/CPU-s")
        print(f"  simulator, + writing results  {m['sim_write']:12,.0f} q/CPU-s")
        print(f"  simulator, event loop alone   {m['loop']:12,.0f} q/CPU-s")
        print(f"  SimPy-callback floor          {m['simpy']:12,.0f} q/CPU-s")
        print(f"  heapq floor                   {m['heap']:12,.0f} q/CPU-s")
        print(f"  ratio simulator / SimPy floor {m['r_simpy']:.3f} (event loop {m['rl_simpy']:.3f})")
        print(f"  ratio simulator / heapq floor {m['r_heap']:.3f} (event loop {m['rl_heap']:.3f})")
        print(f"  peak RSS                      {m['rss'] / 2**20:,.0f} MiB: {m['rss_q']:,.0f} bytes per query; "
              f"{m['grow_q']:,.0f} above the RSS before the run")  # fmt: skip
        print(f"  load average (1 min)          {os.getloadavg()[0]:.2f}")
    if mem is not None:
        nq = max(mem["queries"], 1)
        print("in-loop memory (tracemalloc from run_simulation's entry, one untimed run)")
        if "loop" in mem:
            loop_mib, loop_q = mem["loop"] / 2**20, mem["loop"] / nq
            print(f"  peak traced to the loop's end {loop_mib:,.1f} MiB: {loop_q:,.0f} bytes per query")
        run_mib, run_q = mem["run"] / 2**20, mem["run"] / nq
        print(f"  peak traced, records included {run_mib:,.1f} MiB: {run_q:,.0f} bytes per query")
    ok = m["sim"] >= 200_000 and m["r_simpy"] >= 0.45
    print(f"issue 16 targets: >= 200,000 q/CPU-s and >= 0.45 of the SimPy-callback floor: {'met' if ok else 'not met'}")


if __name__ == "__main__":
    main()
