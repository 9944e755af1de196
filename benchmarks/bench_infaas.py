"""INFaaS policy benchmarks: route decision latency, greedy autoscaler vs ILP optimum, and
``infaas`` against ``static`` on a Twitter trace.

1. Route latency: ``InfaasPolicy.route`` over the default catalog (the three-application mix
   of ``experiments/conf/workload/mix3.yaml``) with 20 loaded instances, some with queues;
   median and p99 in microseconds (INFaaS reports 2-3 ms; target: median under 20 us).
2. Greedy vs ILP: random instances (2 architectures of the catalog with all their variants,
   1-3 applications, random loads, SLOs, accuracy floors and current counts, the INFaaS
   instance types as worker slots); the greedy autoscaler's steady state
   (``greedy_solution``) against the ILP optimum (``solve_ilp``) under the same objective:
   median gap (target under 5%) and the ILP's solve times. Two greedies: INFaaS's own
   latency-first selection, and the ``price_aware`` option (cheapest replicas when nothing
   runs, upgrade only when cheaper).
3. ``infaas`` vs ``static`` (the cheapest fixed variant meeting each SLO, replicated to the
   peak) on a Twitter trace: the real one (InfAdapter's 1,260 s slice of
   ../shared/traces/twitter_per_second.txt.bz2) when present, else a synthetic diurnal +
   burst trace; the three-application mix on the AWS cluster (real start-up delays).

    .venv/bin/python benchmarks/bench_infaas.py [--instances 150] [--skip-compare] [--trace real|synthetic]

The default catalog (``Catalog.load("default")``) is used when present; otherwise a
synthetic ImageNet-like catalog built here (printed as such).
"""

from __future__ import annotations

import argparse
import bz2
import time
from pathlib import Path

import numpy as np
import simpy

from infaas_sim.catalog import Catalog
from infaas_sim.clock import Clock
from infaas_sim.cluster import Cluster
from infaas_sim.errors import CatalogError
from infaas_sim.executor import make_executor
from infaas_sim.hardware import DEFAULT_INSTANCE_TYPES, DEFAULT_TYPE_BY_KIND, HardwareKind
from infaas_sim.metrics import Recorder
from infaas_sim.placement import replica_units, worker_memory_mb
from infaas_sim.policy import make_policy
from infaas_sim.query import Application, Level, Query, Requirement
from infaas_sim.simulation import ClusterSpec, RunSpec, Workload, run_simulation
from infaas_sim.sizing import replica_cost_per_hour
from infaas_sim.variant import Variant
from infaas_sim.view import ClusterView
from policies.infaas import InfaasPolicy
from policies.infaas_ilp import IlpApp, IlpKind, IlpProblem, IlpVariant, greedy_solution, solve_ilp

ROOT = Path(__file__).resolve().parents[1]
TWITTER = ROOT.parent / "shared" / "traces" / "twitter_per_second.txt.bz2"
TASK, DATASET = "image-classification", "imagenet"

# The three-application mix of experiments/conf/workload/mix3.yaml: (name, SLO ms, accuracy, share).
MIX3 = [("interactive", 50.0, 0.70, 0.5), ("standard", 200.0, 0.76, 0.3), ("offline", 2000.0, 0.78, 0.2)]


def synthetic_catalog() -> Catalog:
    """ImageNet classifiers scaled from INFaaS's ResNet-50 points by GFLOPs: ONNX / TF /
    PyTorch on 1-4 cores, TensorRT engines for batch 1 / 8 / 32, TF-GPU, Inferentia."""
    archs = [("resnet18", 0.698, 1.8), ("resnet34", 0.733, 3.6), ("resnet50", 0.761, 4.1), ("resnet101", 0.774, 7.8),
             ("resnet152", 0.783, 11.5), ("mobilenet_v2", 0.718, 0.3), ("densenet121", 0.744, 2.9),
             ("inception_v3", 0.773, 5.7), ("vgg16", 0.716, 15.5), ("efficientnet_b0", 0.773, 0.4),
             ("efficientnet_b3", 0.816, 1.8), ("squeezenet", 0.581, 0.35), ("shufflenet", 0.693, 0.15),
             ("mnasnet", 0.734, 0.33), ("regnet_y_4gf", 0.800, 4.0), ("convnext_tiny", 0.821, 4.5),
             ("wide_resnet50", 0.785, 11.4), ("resnext50", 0.776, 4.3), ("googlenet", 0.698, 1.5)]  # fmt: skip
    vs = []
    for a, acc, g in archs:
        r = g / 4.1
        for fw, f in (("onnx", 1.0), ("tf", 2.0), ("pytorch", 3.0)):
            for cores in (1, 2, 4):
                b1 = (25.0 * r * f) * (0.1 + 0.9 * 4 / cores) / (0.1 + 0.9) + 1.0
                load_ms = 1500 * (0.5 + 0.5 * r) * f**0.2
                vs.append(Variant(f"{a}-{fw}-cpu{cores}", a, TASK, DATASET, fw, HardwareKind.CPU, "fp32", cores, 16,
                                  acc, load_ms, 60 + 25 * g, 0.35 * b1, 0.65 * b1))  # fmt: skip
        for mb in (1, 8, 32):
            vs.append(Variant(f"{a}-trt-b{mb}", a, TASK, DATASET, "tensorrt", HardwareKind.GPU, "fp16", 1, mb, acc,
                              1146 * (0.6 + 0.4 * r), 92 * (0.3 + 0.7 * r) * (1 + mb / 32), 0.3 + 2.4 * r,
                              0.1 + 1.19 * r))  # fmt: skip
        vs.append(Variant(f"{a}-tf-gpu", a, TASK, DATASET, "tf", HardwareKind.GPU, "fp32", 1, 32, acc,
                          1308 * (0.6 + 0.4 * r), 300 * (0.3 + 0.7 * r), 1.0 + 5.0 * r, 0.2 + 2.0 * r))  # fmt: skip
        for nc in (1, 4):
            b1 = 22.0 * r * (1.6 / nc if nc > 1 else 1.0) + 1.0
            vs.append(Variant(f"{a}-neuron-nc{nc}", a, TASK, DATASET, "neuron", HardwareKind.INFERENTIA, "bf16", nc,
                              16, acc, 3555 * (0.6 + 0.4 * r), 100 * (0.3 + 0.7 * r), 0.6 * b1, 0.4 * b1))  # fmt: skip
    return Catalog(vs, "synthetic-imagenet")


def load_catalog() -> Catalog:
    try:
        return Catalog.load("default")
    except CatalogError:
        return synthetic_catalog()


def mix3_apps(catalog: Catalog) -> list[Application]:
    task, dataset = TASK, DATASET
    if (task, dataset) not in catalog.tasks:
        task, dataset = catalog.tasks[0]
    return [
        Application(n, Requirement(Level.TASK, task, dataset, slo_ms=slo, min_accuracy=acc), share=share, index=i)
        for i, (n, slo, acc, share) in enumerate(MIX3)
    ]


# --- 1. route latency ------------------------------------------------------------------------------
def bench_route(catalog: Catalog, calls: int = 60_000, seed: int = 0) -> dict[str, float]:
    apps = mix3_apps(catalog)
    env = simpy.Environment()
    ex = make_executor("sim")
    ex.bind(Clock(env), seed)
    cluster = Cluster(env, catalog, ex, Recorder(catalog, apps), DEFAULT_INSTANCE_TYPES, DEFAULT_TYPE_BY_KIND)
    view = ClusterView(cluster)
    policy = make_policy("infaas")
    assert isinstance(policy, InfaasPolicy)
    policy.setup(view, apps, {})
    cands = [catalog.candidates(a.requirement, 1) for a in apps]
    rng = np.random.default_rng(seed)
    # 20 instances over variants the applications can use: each app's tightest ones.
    pool: list[int] = []
    for c in cands:
        for vi in list(c.indices[-4:]) + list(c.indices[:3]):
            if vi not in pool:
                pool.append(vi)
    loaded = 0
    k = 0
    while loaded < 20:
        if k >= 20 * len(pool):
            raise RuntimeError("bench_route: could not load 20 instances of the applications' variants")
        inst = cluster.load(catalog.variants[pool[k % len(pool)]].variant_id, instant=True)
        k += 1
        loaded += inst is not None
    instances = list(cluster.instances.values())
    qid = 0
    lat = np.empty(calls)
    kinds: dict[str, int] = {}
    per_round = 5_000
    for r0 in range(0, calls, per_round):
        for inst in instances:  # fresh queues each round: some idle, some busy, some long
            for _ in range(int(rng.choice([0, 0, 1, 3, 8]))):
                cluster.enqueue(inst, Query(qid, env.now, apps[0], 1))
                qid += 1
        env.run(until=env.now + float(rng.uniform(0.001, 0.02)))
        policy._sync_running(view)
        queries = [Query(qid + i, env.now, apps[i % 3], 1) for i in range(per_round)]
        qid += per_round
        route = policy.route
        clock = time.perf_counter_ns
        for i in range(min(per_round, calls - r0)):
            q = queries[i]
            c = cands[i % 3]
            t0 = clock()
            d = route(q, c, view)
            lat[r0 + i] = clock() - t0
            name = type(d).__name__
            kinds[name] = kinds.get(name, 0) + 1
    us = lat / 1000.0
    # Overload: every instance's queue is far beyond every SLO, so each query goes through
    # the whole search (loaded, loadable, overloaded) to a rejection naming the closest.
    for inst in instances:
        for _ in range(400):
            cluster.enqueue(inst, Query(qid, env.now, apps[0], 1))
            qid += 1
    policy._sync_running(view)
    over = np.empty(5_000)
    kinds_over: dict[str, int] = {}
    for i in range(len(over)):
        q = Query(qid + i, env.now, apps[i % 3], 1)
        c = cands[i % 3]
        t0 = time.perf_counter_ns()
        d = policy.route(q, c, view)
        over[i] = time.perf_counter_ns() - t0
        kinds_over[type(d).__name__] = kinds_over.get(type(d).__name__, 0) + 1
    return {
        "median_us": float(np.median(us)),
        "p99_us": float(np.percentile(us, 99)),
        "overload_median_us": float(np.median(over / 1000.0)),
        "overload_p99_us": float(np.percentile(over / 1000.0, 99)),
        "overload_rejects": float(kinds_over.get("Reject", 0)) / len(over),
        "instances": float(len(instances)),
        "candidates": float(np.mean([len(c.indices) for c in cands])),
        **{f"decisions_{k}": float(v) for k, v in kinds.items()},
    }


# --- 2. greedy vs ILP ----------------------------------------------------------------------------------
def random_instance(catalog: Catalog, rng: np.random.Generator) -> IlpProblem:
    archs = catalog.architectures
    chosen = rng.choice(len(archs), size=min(2, len(archs)), replace=False)
    names = {archs[int(i)] for i in chosen}
    vis = [i for i, v in enumerate(catalog.variants) if v.architecture in names]
    variants = []
    for vi in vis:
        v = catalog.variants[vi]
        itype = DEFAULT_INSTANCE_TYPES[DEFAULT_TYPE_BY_KIND[v.hardware]]
        variants.append(IlpVariant(v.variant_id, v.hardware.value, v.architecture, replica_cost_per_hour(v, itype),
                                   v.load_latency_ms / 1000.0, v.memory_mb, replica_units(v),
                                   v.latency_by_batch))  # fmt: skip
    apps = []
    accs = sorted({catalog.variants[vi].accuracy for vi in vis})
    for a in range(int(rng.integers(1, 4))):
        floor = float(rng.choice(accs)) if rng.random() < 0.5 else 0.0
        slo = float(rng.choice([25.0, 50.0, 100.0, 200.0, 500.0, 2000.0]))
        load = float(np.exp(rng.uniform(np.log(2.0), np.log(1500.0))))
        elig = tuple(k for k, vi in enumerate(vis) if catalog.variants[vi].accuracy >= floor)
        apps.append(IlpApp(f"app{a}", load, slo, elig))
    current = [0] * len(vis)
    if rng.random() < 0.6:  # the state a previous load left: each app on one variant
        for app in apps:
            ok = [j for j in app.eligible if variants[j].latency_by_batch[1] <= app.slo_ms]
            if ok:
                current[int(rng.choice(ok))] = int(rng.integers(1, 4))
    kinds = {}
    for kind, slots in ((HardwareKind.CPU, 6), (HardwareKind.GPU, 3), (HardwareKind.INFERENTIA, 3)):
        itype = DEFAULT_INSTANCE_TYPES[DEFAULT_TYPE_BY_KIND[kind]]
        kinds[kind.value] = IlpKind(slots, worker_memory_mb(itype), float(itype.capacity_units))
    return IlpProblem(tuple(variants), tuple(apps), kinds, tuple(current))


def bench_ilp(catalog: Catalog, n: int, seed: int = 1) -> dict[str, dict[str, float]]:
    """Gaps of the greedy (as released, and with ``price_aware``) to the ILP optimum, until
    each greedy has been compared on ``n`` random instances (the ILP feasible, the greedy's
    plan packing into the workers)."""
    rng = np.random.default_rng(seed)
    gaps: dict[bool, list[float]] = {False: [], True: []}
    unplaceable = {False: 0, True: 0}
    greedy_ms: list[float] = []
    solve_ms: list[float] = []
    infeasible = tried = 0
    while min(len(gaps[False]), len(gaps[True])) < n:
        tried += 1
        p = random_instance(catalog, rng)
        opt = solve_ilp(p, time_limit_s=30)
        if not opt.ok:
            infeasible += 1
            continue
        solve_ms.append(opt.solve_s * 1000)
        for price_aware in (False, True):
            g = greedy_solution(p, price_aware=price_aware)
            greedy_ms.append(g.solve_s * 1000)
            if g.ok:
                gaps[price_aware].append(g.cost / opt.cost - 1.0)
            else:
                unplaceable[price_aware] += 1
    out: dict[str, dict[str, float]] = {
        "ilp": {
            "instances": float(len(solve_ms)),
            "tried": float(tried),
            "infeasible": float(infeasible),
            "solve_median_ms": float(np.median(solve_ms)),
            "solve_p99_ms": float(np.percentile(solve_ms, 99)),
            "greedy_median_ms": float(np.median(greedy_ms)),
        }
    }
    for price_aware, gs in gaps.items():
        gap = np.array(gs) * 100
        out["price_aware" if price_aware else "infaas"] = {
            "compared": float(len(gs)),
            "unplaceable": float(unplaceable[price_aware]),
            "median_pct": float(np.median(gap)),
            "mean_pct": float(gap.mean()),
            "p90_pct": float(np.percentile(gap, 90)),
            "optimal_share": float(np.mean(gap < 1e-6)),
        }
    return out


# --- 3. infaas vs static ---------------------------------------------------------------------------------
def twitter_counts(kind: str, seed: int = 0) -> tuple[np.ndarray, str]:
    """Per-second arrival counts: the real Twitter slice, or a synthetic diurnal + burst one."""
    if kind == "real" and TWITTER.is_file():
        with bz2.open(TWITTER, "rt") as fh:
            counts = np.array(fh.read().split(), dtype=np.int64)
        start = 15 * 86400 + 82 * 60
        return counts[start : start + 1260].astype(float), "real Twitter, InfAdapter's 1,260 s slice of day 15"
    rng = np.random.default_rng(seed)
    n = 1200
    t = np.arange(n)
    rate = 120 + 60 * np.sin(2 * np.pi * t / n - np.pi / 2)
    for start in rng.choice(n - 60, size=4, replace=False):
        width = int(rng.integers(20, 60))
        rate[start : start + width] += rng.uniform(150, 300)
    return rng.poisson(rate).astype(float), "synthetic diurnal + 4 bursts (numpy)"


def arrivals(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    times = [s + np.sort(rng.random(int(c))) for s, c in enumerate(counts)]
    return np.concatenate(times)


def compare(catalog: Catalog, trace: str, seconds: int | None = None) -> tuple[str, dict[str, dict[str, float]]]:
    counts, what = twitter_counts(trace)
    if seconds is not None and seconds < len(counts):
        counts, what = counts[:seconds], f"{what}, its first {seconds} s"
    apps = mix3_apps(catalog)
    rng = np.random.default_rng(2)
    times = arrivals(counts, rng)
    shares = np.array([a.share for a in apps])
    who = rng.choice(len(apps), size=len(times), p=shares / shares.sum()).astype(np.int64)
    spec = ClusterSpec(
        max_workers={HardwareKind.CPU: 20, HardwareKind.GPU: 5, HardwareKind.INFERENTIA: 5},
    )
    out = {}
    runs: list[tuple[str, str, dict[str, object]]] = [
        ("static", "static", {"replicas": "peak", "target_util": 0.8}),
        ("infaas", "infaas", {}),
        ("infaas price_aware", "infaas", {"price_aware": True}),
        ("infaas-ilp", "infaas-ilp", {}),
    ]
    for label, name, params in runs:
        res = run_simulation(catalog, Workload(apps, times, who), make_policy(name, **params), make_executor("sim"),
                             spec, RunSpec(duration_s=float(len(counts)), seed=0))  # fmt: skip
        s = res.summary
        out[label] = {
            "queries": s["queries"],
            "slo_violation_rate": s["slo_violation_rate"],
            "rejected": s["rejected"],
            "total_cost": s["total_cost"],
            "throughput_qps": s["throughput_qps"],
            "goodput_qps": s["goodput_qps"],
            "latency_p99_ms": s["latency_p99_ms"],
            "mean_accuracy": s["mean_accuracy"],
            "peak_workers": s["peak_workers"],
            "wall_s": s["wall_s"],
        }
    return f"{what}, {len(times)} queries, mean {counts.mean():.0f}/s, peak {counts.max():.0f}/s", out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=120, help="greedy-vs-ILP instances compared (>= 100)")
    ap.add_argument("--calls", type=int, default=60_000, help="route calls timed")
    ap.add_argument("--trace", choices=["real", "synthetic"], default="real")
    ap.add_argument("--skip-compare", action="store_true")
    ap.add_argument("--compare-seconds", type=int, default=None, help="the comparison's trace cut to its first N s")
    args = ap.parse_args()
    if args.compare_seconds is not None and args.compare_seconds < 1:
        ap.error(f"--compare-seconds must be >= 1, got {args.compare_seconds}")
    catalog = load_catalog()
    print(f"catalog: {catalog.name} ({len(catalog)} variants)")

    r = bench_route(catalog, args.calls)
    decisions = ", ".join(f"{k[10:]} {v:.0f}" for k, v in r.items() if k.startswith("decisions_"))
    print(f"route: median {r['median_us']:.2f} us, p99 {r['p99_us']:.2f} us over {args.calls} calls "
          f"({r['instances']:.0f} loaded instances, {r['candidates']:.0f} candidates per query on average; "
          f"decisions: {decisions})")  # fmt: skip
    print(f"route under overload (every queue beyond every SLO; {100 * r['overload_rejects']:.0f}% rejected): "
          f"median {r['overload_median_us']:.2f} us, p99 {r['overload_p99_us']:.2f} us")  # fmt: skip

    g = bench_ilp(catalog, args.instances)
    ilp = g["ilp"]
    print(f"greedy vs ILP optimum on {ilp['instances']:.0f} random instances ({ilp['tried']:.0f} drawn, "
          f"{ilp['infeasible']:.0f} infeasible for the ILP too):")  # fmt: skip
    for key, label in (("infaas", "INFaaS greedy (as released)"), ("price_aware", "greedy with price_aware")):
        x = g[key]
        print(f"  {label:28s} cost gap median {x['median_pct']:.2f}%, mean {x['mean_pct']:.1f}%, "
              f"p90 {x['p90_pct']:.1f}%, optimal on {100 * x['optimal_share']:.0f}% "
              f"({x['compared']:.0f} compared, {x['unplaceable']:.0f} plans that do not pack)")  # fmt: skip
    print(f"ILP solve time (OR-Tools SCIP): median {ilp['solve_median_ms']:.1f} ms, p99 {ilp['solve_p99_ms']:.1f} ms "
          f"(greedy: median {ilp['greedy_median_ms']:.2f} ms)")  # fmt: skip

    if not args.skip_compare:
        what, res = compare(catalog, args.trace, args.compare_seconds)
        print(f"infaas vs static on {what}:")
        for name, s in res.items():
            print(f"  {name:18s} SLO violations {100 * s['slo_violation_rate']:.2f}% (rejected {s['rejected']}), "
                  f"cost ${s['total_cost']:.3f}, throughput {s['throughput_qps']:.1f} q/s "
                  f"(goodput {s['goodput_qps']:.1f}), p99 {s['latency_p99_ms']:.0f} ms, "
                  f"accuracy {s['mean_accuracy']:.3f}, peak workers {s['peak_workers']}, "
                  f"wall {s['wall_s']:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
