"""Fidelity: the same trace once real (ONNX Runtime) and once simulated from the profiled catalog.

``python -m experiments.fidelity [key=value ...]`` (defaults: experiments/conf/fidelity/default.yaml)

1. generates and profiles the chosen built-in model's variant (or reuses the catalog already
   in ``variants_dir``);
2. at each load (a fraction of one replica's batch-1 capacity), draws one Poisson trace and
   replays it through the same cluster model and ``static`` policy: once with the
   ``onnxruntime`` executor on wall-clock time, then with the ``sim`` executor on virtual time
   under each profile-to-sim mapping;
3. writes every run's outputs, ``fidelity.json`` and ``fidelity.md`` (p50 / p99 latency, SLO
   violation rate, throughput, and their differences) into ``out``.

Profile-to-sim mappings (``sim_mappings``), all but ``replay`` predicted from measurements taken
before the runs: ``raw`` simulates the profiled medians as they are (the runtime alone, back to
back), deterministically; ``profiled`` is what the ``sim`` executor does by default with a
profiled catalog: the same medians with the profiler's run-to-run spread (``latency_cv``) as
log-normal noise; ``calibrated`` simulates the medians of a *serving-path profile*
(:func:`infaas_sim.profiling.serving.profile_serving`: batches of each size through the real
executor on the wall-clock loop, dispatched from timer events after idle gaps, timed as the
cluster times a batch: loop lag, thread hand-offs, a runtime cold after idling) with its
run-to-run spread as the sim executor's log-normal noise; ``served`` resamples the batch times of
an *in-service calibration run* (:func:`infaas_sim.profiling.serving.profile_in_service`: the
same replica served on its own Poisson trace, another seed, at ``calibration_load``), which also
holds the tail that serving adds (the loop routing arrivals while a batch runs); ``replay``
resamples the batch times the real run itself recorded, which takes the profile out and tests
the cluster model alone (the only arm that uses the run it is compared with).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from experiments.outputs import write_run
from infaas_sim.catalog import Catalog
from infaas_sim.clock import Clock, Completion, WallClockEnvironment
from infaas_sim.cluster import Instance
from infaas_sim.errors import ConfigError, InputError
from infaas_sim.executor import Executor, make_executor
from infaas_sim.experiment import build_cluster
from infaas_sim.policy import make_policy
from infaas_sim.profiling.profile import fit_line
from infaas_sim.profiling.serving import batch_times, profile_in_service, profile_serving
from infaas_sim.query import Application, Level, Query, Requirement
from infaas_sim.realtime import RunnerExecutor
from infaas_sim.simulation import RunResult, RunSpec, Workload, run_simulation

CONF = Path(__file__).parent / "conf" / "fidelity" / "default.yaml"
MAPPINGS = ("raw", "profiled", "calibrated", "served", "replay")
METRICS = (
    ("latency_p50_ms", "p50 latency (ms)", "rel"),
    ("latency_p99_ms", "p99 latency (ms)", "rel"),
    ("slo_violation_rate", "SLO violation rate", "points"),
    ("throughput_qps", "throughput (q/s)", "rel"),
)


def ensure_catalog(cfg: Any) -> Path:
    from infaas_sim.profiling.build import build_catalog
    from infaas_sim.profiling.zoo import builtin_family

    folder = Path(str(cfg.variants_dir))
    path = folder / "catalog.csv"
    if path.exists() and not cfg.rebuild:
        return path
    models = builtin_family([str(cfg.model)], seed=int(cfg.seed))
    path, _ = build_catalog(
        models, folder, cores=[float(cfg.cores)], max_batch=int(cfg.max_batch), backends=["onnxruntime"],
        ort_precisions=[str(cfg.precision)], warmup=5, repeats=int(cfg.profile_repeats),
    )  # fmt: skip
    return path


class ResampledServiceExecutor(Executor):
    """The ``replay`` mapping: a simulated executor whose batch of b inputs takes a service
    time drawn (seeded) from the batch times the real run recorded for batches of b (the
    nearest recorded size, scaled linearly, when b never ran), plus ``overhead_ms``. It takes
    the profile out of the comparison: what is left is the cluster model itself (queueing,
    batching) and the service times' order, which resampling does not keep."""

    name = "sim-replay"

    def __init__(self, service: Sequence[tuple[int, float]], overhead_ms: float) -> None:
        by_batch: dict[int, list[float]] = {}
        for b, sec in service:
            by_batch.setdefault(b, []).append(sec)
        if not by_batch:
            raise ConfigError("fidelity: the real run measured no batch to resample")
        self.samples = {b: np.array(v) for b, v in by_batch.items()}
        self.overhead_s = overhead_ms / 1000

    def bind(self, clock: Clock, seed: int) -> None:
        super().bind(clock, seed)
        self.rng = np.random.default_rng([seed, 0x5E5])

    def load(self, instance: Instance) -> Completion:
        return self.clock.after(instance.variant.load_latency_ms / 1000)

    def run(self, instance: Instance, inputs: int, queries: Sequence[Query]) -> Completion:
        near = min(self.samples, key=lambda b: (abs(b - inputs), b))
        pool = self.samples[near]
        sec = float(pool[self.rng.integers(len(pool))]) * inputs / near
        return self.clock.after(sec + self.overhead_s)


def sim_catalog(catalog: Catalog, variant_id: str, points: Sequence[tuple[int, float]]) -> Catalog:
    """The catalog the ``calibrated`` arm uses: ``variant_id``'s latency points replaced by
    ``points`` (the serving-path medians), its line refitted; other variants as they are."""
    if catalog[variant_id].max_batch > max(b for b, _ in points):
        raise ConfigError(f"fidelity: the serving profile of {variant_id} misses batch sizes")
    icpt, slope = fit_line(points)
    out = [
        replace(v, profile=tuple(points), latency_intercept_ms=icpt, latency_slope_ms=slope)
        if v.variant_id == variant_id else v
        for v in catalog.variants
    ]  # fmt: skip
    return Catalog(out, name=f"{catalog.name}+serving")


def _diff(kind: str, r: float, s: float) -> tuple[float, str]:
    if kind == "points":
        d = 100 * (s - r)
        return d, f"{d:+.2f} pts"
    d = 100 * (s - r) / r if r else math.nan
    return d, f"{d:+.1f}%"


def run_fidelity(cfg: Any) -> dict[str, Any]:
    mappings = [str(m) for m in cfg.sim_mappings]
    if not mappings or set(mappings) - set(MAPPINGS):
        raise ConfigError(f"fidelity: sim_mappings must list some of {', '.join(MAPPINGS)}, got {mappings}")
    out = Path(str(cfg.out))
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    cat_path = ensure_catalog(cfg)
    catalog = Catalog.load(cat_path)
    vid = f"{cfg.model}-ort-{cfg.precision}-{float(cfg.cores):g}c"
    variant = catalog[vid]
    frame = pd.read_csv(cat_path)
    cv = float(frame.loc[frame["variant_id"] == vid, "latency_cv"].iloc[0])
    cluster_conf = OmegaConf.to_container(cfg.cluster, resolve=True)
    capacity = 1000.0 / variant.latency_ms(1)  # one replica, batch 1, queries per second
    serving = in_service = None
    if {"calibrated", "served"} & set(mappings):
        serving = profile_serving(str(cat_path), vid, repeats=int(cfg.serving_repeats),
                                  gap_ms=float(cfg.serving_gap_ms), seed=int(cfg.seed))  # fmt: skip
    if "served" in mappings:
        # A calibration trace of its own (another seed), before the runs it predicts.
        in_service = profile_in_service(
            str(cat_path), vid, cluster_conf, float(cfg.calibration_load) * capacity,  # type: ignore[arg-type]
            float(cfg.calibration_s), seed=int(cfg.seed) + 1000,
        )  # fmt: skip
    arms: dict[str, tuple[Catalog, float | None]] = {"raw": (catalog, 0.0), "profiled": (catalog, None)}
    if serving is not None:
        arms["calibrated"] = (sim_catalog(catalog, vid, serving.points()), serving.cv())
    cluster = build_cluster(cluster_conf)  # type: ignore[arg-type]
    app = Application("fidelity", Requirement(Level.VARIANT, vid, slo_ms=float(cfg.slo_ms)), batch=1)
    results: list[dict[str, Any]] = []
    for load in cfg.loads:
        qps = float(load) * capacity * int(cfg.replicas)
        rng = np.random.default_rng([int(cfg.seed), round(1000 * float(load))])
        n = int(qps * float(cfg.duration_s) * 1.3 + 100)
        times = np.cumsum(rng.exponential(1 / qps, n))
        times = times[times < float(cfg.duration_s)]
        wl = Workload([app], times, np.zeros(len(times), dtype=np.int64))
        spec = RunSpec(duration_s=float(cfg.duration_s), seed=int(cfg.seed), drain_s=10.0)

        def policy() -> Any:
            return make_policy("static", variants={"fidelity": vid}, replicas=int(cfg.replicas))

        tag = f"load{float(load):g}"
        real_ex = make_executor("onnxruntime", catalog=str(cat_path), preload=[vid] * int(cfg.replicas))
        assert isinstance(real_ex, RunnerExecutor)
        real = run_simulation(catalog, wl, policy(), real_ex, cluster, spec, env=WallClockEnvironment())
        _check(real, len(times))
        write_run(real, out / tag / "real", figures=bool(cfg.figures))
        sims = {}
        for m in mappings:
            if m == "replay":
                sim_ex: Executor = ResampledServiceExecutor(batch_times(real), 0.0)
                cat = catalog
            elif m == "served":
                assert in_service is not None
                sim_ex, cat = ResampledServiceExecutor(in_service.service_seconds(), 0.0), catalog
            else:
                cat, noise = arms[m]
                sim_ex = make_executor("sim", noise_cv=noise)
            sims[m] = run_simulation(cat, wl, policy(), sim_ex, cluster, spec)
            _check(sims[m], len(times))
            write_run(sims[m], out / tag / f"sim_{m}", figures=bool(cfg.figures))
        rows = []
        for metric, label, kind in METRICS:
            r = float(real.summary[metric])
            row: dict[str, Any] = {"metric": label, "kind": kind, "real": r}
            for m, res in sims.items():
                v = float(res.summary[metric])
                row[f"sim_{m}"] = v
                row[f"diff_{m}"], row[f"diff_{m}_text"] = _diff(kind, r, v)
            rows.append(row)
        service = np.array([x for _, x in real_ex.stats.service]) * 1000
        results.append({
            "load": float(load), "qps": qps, "queries": len(times), "rows": rows,
            "real_mean_exec_batch": float(real.queries["exec_batch"].mean()),
            "real_runtime_median_ms": float(np.median(service)) if len(service) else math.nan,
        })  # fmt: skip
    summary = {
        "model": vid, "profile_b1_ms": variant.latency_ms(1), "latency_cv": cv, "sim_mappings": mappings,
        "serving_b1_ms": serving.median_ms(1) if serving else math.nan,
        "serving_b1_mean_ms": serving.mean_ms(1) if serving else math.nan,
        "serving_cv": serving.cv() if serving else math.nan,
        "in_service_b1_ms": in_service.median_ms(1) if in_service and 1 in in_service.samples else math.nan,
        "in_service_batches": sum(map(len, in_service.samples.values())) if in_service else 0,
        "slo_ms": float(cfg.slo_ms), "duration_s": float(cfg.duration_s),
        "replicas": int(cfg.replicas), "max_batch": variant.max_batch, "cpus": os.cpu_count(),
        "load_average_before": load_before, "load_average_after": os.getloadavg()[0], "results": results,
    }  # fmt: skip
    (out / "fidelity.json").write_text(json.dumps(summary, indent=2))
    (out / "fidelity.md").write_text(markdown(summary))
    return summary


def _check(result: RunResult, n: int) -> None:
    s = result.summary
    if s["served"] + s["rejected"] + s["failed"] != n:
        raise AssertionError(f"fidelity: {n} arrivals but {s['served']}+{s['rejected']}+{s['failed']} outcomes")


def markdown(summary: dict[str, Any]) -> str:
    maps = summary["sim_mappings"]
    lines = [
        f"Model `{summary['model']}` (max batch {summary['max_batch']}; profiled batch-1 median "
        f"{summary['profile_b1_ms']:.3f} ms, run-to-run CV {summary['latency_cv']:.3f}), "
        f"{summary['replicas']} replica(s), SLO {summary['slo_ms']:g} ms, Poisson arrivals for "
        f"{summary['duration_s']:g} s on {summary['cpus']} CPUs (load average {summary['load_average_before']:.2f} "
        f"before, {summary['load_average_after']:.2f} after); serving-path profile batch-1 median "
        f"{summary['serving_b1_ms']:.3f} ms (mean {summary['serving_b1_mean_ms']:.3f}, "
        f"CV {summary['serving_cv']:.3f}); in-service calibration batch-1 median {summary['in_service_b1_ms']:.3f} ms "
        f"({summary['in_service_batches']} batches).",
        "",
        "| load | q/s | metric | real | " + " | ".join(f"sim {m} | {m} - real" for m in maps) + " |",
        "|---|---|---|---|" + "---|---|" * len(maps),
    ]
    for res in summary["results"]:
        for row in res["rows"]:
            fmt = "{:.2%}" if row["kind"] == "points" else "{:.2f}"
            cells = " | ".join(f"{fmt.format(row[f'sim_{m}'])} | {row[f'diff_{m}_text']}" for m in maps)
            lines.append(
                f"| {res['load']:.2f} | {res['qps']:.1f} | {row['metric']} | {fmt.format(row['real'])} | {cells} |"
            )
    return "\n".join(lines) + "\n"


def load_config(overrides: Sequence[str] = ()) -> Any:
    base = OmegaConf.load(CONF)
    try:
        return OmegaConf.merge(base, OmegaConf.from_dotlist(list(overrides)))
    except Exception as exc:
        raise ConfigError(f"fidelity: bad override ({exc})") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        summary = run_fidelity(load_config(args))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
