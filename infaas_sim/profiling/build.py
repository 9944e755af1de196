"""Generate and profile a model family into a catalog folder, in one call or one command.

``python -m infaas_sim.profiling --family small --out outputs/variants/small`` writes the
artifacts and ``catalog.csv`` (loadable by ``Catalog.load``; the ``onnxruntime`` executor
takes the same file as ``executor.params.catalog``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from infaas_sim.errors import InputError
from infaas_sim.profiling.generate import BACKENDS, ORT_PRECISIONS, GenerationReport, generate_variants
from infaas_sim.profiling.profile import CATALOG_FILE, catalog_row, profile_variant, write_catalog
from infaas_sim.profiling.zoo import RegisteredModel, builtin_family


def build_catalog(
    models: Sequence[RegisteredModel],
    out_dir: str | Path,
    cores: Sequence[float] = (1, 2),
    max_batch: int = 8,
    backends: Sequence[str] = BACKENDS,
    ort_precisions: Sequence[str] = ORT_PRECISIONS,
    warmup: int = 3,
    repeats: int = 20,
    catalog_name: str = CATALOG_FILE,
    log: bool = False,
    retries: int = 1,
) -> tuple[Path, GenerationReport]:
    """Generate every model's variants into ``out_dir``, profile them, write the catalog.
    Profiles still noisy after ``retries`` re-measurements are printed to stderr with the
    variant and batch (``ProfileWarning``)."""
    out = Path(out_dir)
    report = GenerationReport(())
    rows = []
    for model in models:
        rep = generate_variants(model, out, cores, max_batch, backends, ort_precisions)
        report = report.merge(rep)
        for gv in rep.variants:
            t0 = time.perf_counter()
            prof = profile_variant(gv, model, out, warmup=warmup, repeats=repeats, retries=retries)
            rows.append(catalog_row(gv, prof, model))
            for w in prof.warnings:
                print(f"warning: noisy profile: {w.describe()}", file=sys.stderr)
            if log:
                print(
                    f"{gv.variant_id}: load {prof.load_ms:.1f} ms, b1 {prof.p50_ms[0][1]:.3f} ms, "
                    f"b{prof.p50_ms[-1][0]} {prof.p50_ms[-1][1]:.3f} ms, cv {prof.latency_cv:.3f}, "
                    f"acc {prof.accuracy:.3f} ({prof.accuracy_source}) [{time.perf_counter() - t0:.1f} s]",
                    file=sys.stderr,
                )
    if not rows:
        raise InputError(f"no variant could be generated: {report.describe()}")
    return write_catalog(rows, out / catalog_name), report


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m infaas_sim.profiling", description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="small", help="small | full | comma-separated built-in model names")
    ap.add_argument("--out", default="outputs/variants/small", help="output folder (artifacts + catalog.csv)")
    ap.add_argument("--cores", default="1,2", help="CPU allocations (intra-op threads), comma-separated")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--precisions", default=",".join(ORT_PRECISIONS), help="onnxruntime precisions")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--retries", type=int, default=1, help="re-measurements of a noisy batch size")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        family = a.family if a.family in ("small", "full") else [n for n in a.family.split(",") if n]
        models = builtin_family(family, seed=a.seed)
        path, report = build_catalog(
            models, a.out, _floats(a.cores), a.max_batch, [b for b in a.backends.split(",") if b],
            [p for p in a.precisions.split(",") if p], a.warmup, a.repeats, log=True, retries=a.retries,
        )  # fmt: skip
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.describe())
    print(f"catalog: {path}")
    return 0
