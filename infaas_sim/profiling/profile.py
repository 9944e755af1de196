"""The profiler: measure generated variants and write catalog rows the simulator loads.

Per variant, as INFaaS's profiler does but over every batch size: load time (open the runner
and run its first batch, which allocates the memory arena: what the executor's load does),
latency per batch size 1..max_batch (``warmup`` unrecorded runs, then ``repeats`` timed runs,
or with ``budget_s`` as many as fit in that many seconds between ``min_repeats`` and ``repeats``;
median and p99), peak memory (the process's resident-set growth from before the load to
after the largest batch, at least the model file's size), and accuracy on the validation set
when the model has one, else its declared accuracy (column ``accuracy_source``).

The rows carry the simulator's schema (``infaas_sim.catalog.SCHEMA``; the measured medians go
into ``profile`` and a least-squares fit into intercept/slope) plus the columns real
executors need (``infaas_sim.realtime.ARTIFACT_COLUMNS``): ``backend``, ``artifact``,
``options``, ``accuracy_source`` and ``profile_p99``. The schema's ``latency_cv`` is the spread
of repeated runs, which the sim executor draws its noise from by default.

A noisy profile is reported, not hidden: a batch size whose run-to-run spread (std / mean) is
above ``cv_threshold``, or a larger batch measured faster than a smaller one (a batch's total
time cannot fall as inputs are added on one allocation), is re-measured up to ``retries`` times
(keeping, of two measurements, the one with the lower median: interference only adds time)
and, if still off, returned in ``VariantProfile.warnings`` with the variant and batch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from infaas_sim.catalog import COLUMNS, Catalog
from infaas_sim.errors import ConfigError
from infaas_sim.profiling.generate import GeneratedVariant
from infaas_sim.profiling.zoo import RegisteredModel
from infaas_sim.realtime import ARTIFACT_COLUMNS, ModelRunner, format_options, open_runner

CATALOG_FILE = "catalog.csv"
NOISY_CV = 0.1  # a batch size whose repeated runs spread more than this (std / mean) is noisy
# A larger batch counts as faster than a smaller one when its median is this much lower: below
# that, a model whose latency is flat in the batch (a tiny one) would be flagged by noise alone.
MONOTONE_TOLERANCE = 0.02


@dataclass(frozen=True)
class ProfileWarning:
    """One suspicious measurement: ``kind`` is ``noisy`` or ``non_monotone``."""

    variant_id: str
    batch: int
    kind: str
    detail: str

    def describe(self) -> str:
        return f"{self.variant_id} batch {self.batch}: {self.detail}"


def profile_warnings(
    variant_id: str, samples: dict[int, np.ndarray], cv_threshold: float = NOISY_CV
) -> list[ProfileWarning]:
    """What is suspicious in per-batch samples (ms): spread above ``cv_threshold``, or a
    larger batch whose median is more than ``MONOTONE_TOLERANCE`` below a smaller batch's."""
    out = []
    medians = {b: float(np.median(ms)) for b, ms in sorted(samples.items())}
    for b, ms in sorted(samples.items()):
        cv = float(ms.std() / ms.mean()) if ms.mean() > 0 else 0.0
        if cv > cv_threshold:
            out.append(ProfileWarning(variant_id, b, "noisy", f"run-to-run CV {cv:.3f} > {cv_threshold:g}"))
        slower = [(b0, m0) for b0, m0 in medians.items() if b0 < b and medians[b] < m0 * (1 - MONOTONE_TOLERANCE)]
        if slower:
            b0, m0 = max(slower, key=lambda x: x[1])
            out.append(ProfileWarning(
                variant_id, b, "non_monotone", f"median {medians[b]:.4g} ms < batch {b0}'s {m0:.4g} ms"
            ))  # fmt: skip
    return out


@dataclass(frozen=True)
class VariantProfile:
    variant_id: str
    load_ms: float
    p50_ms: tuple[tuple[int, float], ...]  # (batch, median ms)
    p99_ms: tuple[tuple[int, float], ...]
    latency_cv: float  # std / mean of repeated runs at one batch size, pooled over sizes
    memory_mb: float
    accuracy: float
    accuracy_source: str  # measured | declared
    warnings: tuple[ProfileWarning, ...] = ()  # what stayed suspicious after re-measuring
    repeats: int = 0  # timed runs in all, over every batch size, re-measurements included


def _rss_mb() -> float:
    try:
        import psutil
    except ImportError:  # the resource module's peak is the only fallback (coarser: a high-water mark)
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return float(psutil.Process(os.getpid()).memory_info().rss) / 2**20


def measure_accuracy(runner: ModelRunner, validation: tuple[np.ndarray, np.ndarray], chunk: int = 256) -> float:
    x, y = validation
    hits = 0
    for i in range(0, len(x), chunk):
        hits += int((runner.run(x[i : i + chunk]).argmax(axis=1) == y[i : i + chunk]).sum())
    return hits / len(x)


def profile_variant(
    gv: GeneratedVariant,
    model: RegisteredModel,
    folder: str | Path,
    batches: Sequence[int] | None = None,
    warmup: int = 3,
    repeats: int = 20,
    load_repeats: int = 2,
    budget_s: float | None = None,
    min_repeats: int = 3,
    cv_threshold: float = NOISY_CV,
    retries: int = 1,
) -> VariantProfile:
    """Measure one generated variant (its artifact in ``folder``)."""
    if repeats < 2 or warmup < 0 or load_repeats < 1 or min_repeats < 2 or retries < 0:
        raise ConfigError(
            "profiling needs repeats >= 2, warmup >= 0, load_repeats >= 1, min_repeats >= 2, retries >= 0"
        )
    if budget_s is not None and not budget_s > 0:
        raise ConfigError(f"profiling budget_s must be > 0, got {budget_s}")
    path = Path(folder) / gv.artifact
    sizes = sorted(set(batches or range(1, gv.max_batch + 1)))
    if sizes[0] < 1 or sizes[-1] > gv.max_batch:
        raise ConfigError(f"{gv.variant_id}: batch sizes must be in 1..{gv.max_batch}, got {sizes}")
    loads = []
    runner: ModelRunner | None = None
    # No gc.collect() here: it costs ~0.2 s on a heap holding scikit-learn and onnx, and the
    # runtime's memory is native, freed by reference counting when a runner is dropped.
    rss0 = _rss_mb()
    for _ in range(load_repeats):
        runner = None
        t0 = time.perf_counter()
        runner = open_runner(gv.backend, path, gv.allocation, gv.max_batch, gv.options)
        runner.run_batch(1)  # the executor's load includes the first run (arena allocation)
        loads.append((time.perf_counter() - t0) * 1000)
    assert runner is not None
    live = runner
    peak = _rss_mb()

    timed = [0]  # timed runs in all, re-measurements included

    def measure(b: int) -> np.ndarray:
        first = [live.run_batch(b) for _ in range(warmup)]
        n = repeats
        if budget_s is not None:
            probe = min(first) if first else live.run_batch(b)
            n = int(min(repeats, max(min(min_repeats, repeats), budget_s // max(probe, 1e-9))))
        timed[0] += n
        return np.array([live.run_batch(b) for _ in range(n)]) * 1000

    samples: dict[int, np.ndarray] = {}
    for b in sizes:
        samples[b] = measure(b)
        peak = max(peak, _rss_mb())
    found = profile_warnings(gv.variant_id, samples, cv_threshold)
    for _ in range(retries):
        if not found:
            break
        again = {w.batch for w in found}
        # A non-monotone pair may be the smaller batch's fault: measure both again.
        again |= {b0 for w in found if w.kind == "non_monotone" for b0 in sizes if b0 < w.batch
                  and np.median(samples[w.batch]) < np.median(samples[b0]) * (1 - MONOTONE_TOLERANCE)}  # fmt: skip
        for b in sorted(again):
            # Interference (another process on the cores) only ever adds time: of the two
            # measurements keep the one with the lower median.
            fresh = measure(b)
            if np.median(fresh) <= np.median(samples[b]):
                samples[b] = fresh
        found = profile_warnings(gv.variant_id, samples, cv_threshold)
    p50 = [(b, float(np.median(ms))) for b, ms in sorted(samples.items())]
    p99 = [(b, float(np.percentile(ms, 99))) for b, ms in sorted(samples.items())]
    spreads = [ms / ms.mean() for _, ms in sorted(samples.items())]
    memory = max(peak - rss0, path.stat().st_size / 2**20, 1.0)
    if model.validation is not None:
        accuracy, source = measure_accuracy(runner, model.validation), "measured"
    else:
        accuracy, source = float(model.declared_accuracy or 0.0), "declared"
    runner.close()
    cv = float(np.concatenate(spreads).std())
    return VariantProfile(
        gv.variant_id, float(np.median(loads)), tuple(p50), tuple(p99), cv, float(memory), accuracy, source,
        tuple(found), timed[0],
    )  # fmt: skip


def fit_line(points: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares ``latency = intercept + slope * batch`` (INFaaS's model), both >= 0."""
    b = np.array([p[0] for p in points], dtype=float)
    ms = np.array([p[1] for p in points], dtype=float)
    if len(points) == 1:
        return float(ms[0]), 0.0
    slope, icpt = np.polyfit(b, ms, 1)
    slope = max(float(slope), 0.0)
    icpt = float(ms.mean() - slope * b.mean())
    if icpt < 0:
        icpt, slope = 0.0, float((b @ ms) / (b @ b))
    return icpt, slope


def catalog_row(gv: GeneratedVariant, prof: VariantProfile, model: RegisteredModel) -> dict[str, object]:
    icpt, slope = fit_line(prof.p50_ms)
    cpu = f"{os.cpu_count()} CPU(s)"
    return {
        "variant_id": gv.variant_id,
        "architecture": gv.architecture,
        "task": gv.task,
        "dataset": gv.dataset,
        "framework": gv.backend,
        "hardware": gv.hardware,
        "precision": gv.precision,
        "allocation": gv.allocation,
        "max_batch": gv.max_batch,
        "accuracy": round(prof.accuracy, 6),
        "load_latency_ms": round(prof.load_ms, 4),
        "memory_mb": round(prof.memory_mb, 3),
        "latency_intercept_ms": round(icpt, 6),
        "latency_slope_ms": round(slope, 6),
        "profile": ";".join(f"{b}:{ms:.6g}" for b, ms in prof.p50_ms),
        "gflops": model.gflops,
        "source": f"{model.source}; measured by infaas_sim.profiling on this machine ({cpu}); "
        f"accuracy {prof.accuracy_source}",
        "backend": gv.backend,
        "artifact": gv.artifact,
        "options": format_options(gv.options),
        "accuracy_source": prof.accuracy_source,
        "profile_p99": ";".join(f"{b}:{ms:.6g}" for b, ms in prof.p99_ms),
        "latency_cv": round(prof.latency_cv, 6),
    }


def write_catalog(rows: Sequence[dict[str, object]], path: str | Path) -> Path:
    """Write rows (simulator schema + artifact columns) and check the simulator loads them."""
    p = Path(path)
    frame = pd.DataFrame(list(rows), columns=[*COLUMNS, *ARTIFACT_COLUMNS])
    tmp = p.with_name(p.name + ".tmp" + p.suffix)
    if p.suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    else:
        frame.to_csv(tmp, index=False)
    Catalog.load(tmp)  # a row the simulator would reject is an error now, not at run time
    tmp.replace(p)
    return p
