"""Measure the default catalog's CPU rows on this machine: ``infaas_sim/catalogs/cpu_measured.csv``.

    .venv/bin/python -m infaas_sim.catalogs.measure_cpu [--archs resnet50,vgg16] [--resume]

Needs torch and torchvision (and timm for the architectures torchvision lacks): see
docs/catalog.md for the install line. Per architecture of the default catalog that torchvision
or timm implements:

1. build it with random weights (latency does not depend on the weights; the row's accuracy is
   the published top-1 of ``generate_default.ARCHITECTURES``, with its source) and export it to
   ONNX with a dynamic batch dimension (``profiling.zoo.from_torch``);
2. generate the ONNX Runtime variants with the variant generator (``profiling.generate``): fp32
   as exported (basic graph optimisation), ORT-optimised (extended optimisations saved offline)
   and int8 (static QDQ quantisation calibrated on random images), on 1 and 2 intra-op threads;
3. profile each with the profiler (``profiling.profile``): load time, latency per batch 1..8
   (median, p99 and run-to-run spread; a noisy batch is re-measured and reported), peak memory;
4. fit, per architecture and precision, Themis's CPU latency model
   ``l(c, b) = a*b/c + beta*b + g/c + z`` (non-negative least squares over the 1- and 2-core
   medians) and write rows for 4 and 8 cores from it, marked ``fitted`` in ``source``.

Results per architecture are kept in ``--work`` as they come (``--resume`` skips those done), so
a long measurement survives an interruption. The CSV opens with a provenance header (``#``
lines: CPU model, cores, versions, date, command, the fit). Architectures no library here
implements (NASNet-Mobile, YOLOv5) are listed in the header and keep their modelled rows in
the default catalog.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from infaas_sim.catalogs.generate_default import ARCHITECTURES, Arch
from infaas_sim.errors import ConfigError, InputError

OUTPUT = Path(__file__).with_name("cpu_measured.csv")
WORK = Path("outputs/measure_cpu")
MEASURED_CORES = (1, 2)
FITTED_CORES = (4, 8)
MAX_BATCH = 8
PRECISIONS = ("fp32", "fp32-opt", "int8-static")
CALIBRATION_IMAGES = 8
# int8 top-1 is not measured (random weights): modelled as 1% below fp32, relative. Source: Intel
# Neural Compressor's validated ONNX Runtime QDQ int8 ImageNet CNNs stay within about 1% of fp32
# (e.g. ResNet50 v1.0 74.11% vs 74.27%, Inception-ResNet-v2 80.34% vs 80.40%).
INT8_ACCURACY_FACTOR = 0.99
INT8_SOURCE = "int8 top-1 modelled as 0.99 x fp32 (Intel Neural Compressor validated ONNX Runtime QDQ int8 list)"
COLUMNS_EXTRA = ("profile_p99",)


@dataclass(frozen=True, slots=True)
class Build:
    """Where an architecture's PyTorch implementation comes from and its input resolution."""

    library: str  # torchvision | timm
    name: str  # the library's constructor
    image: int  # input height = width
    kwargs: tuple[tuple[str, Any], ...] = ()


# The default catalog's architectures (generate_default.ARCHITECTURES) by implementation. Keras-
# only models come from timm's ports of the same networks (legacy_xception and nasnetalarge are
# the original Keras/TF-slim graphs; resnetv2_* the pre-activation ResNets of Keras's ResNetV2).
BUILDS: dict[str, Build] = {
    "alexnet": Build("torchvision", "alexnet", 224),
    "densenet121": Build("torchvision", "densenet121", 224),
    "densenet169": Build("torchvision", "densenet169", 224),
    "densenet201": Build("torchvision", "densenet201", 224),
    "inception-resnetv2": Build("timm", "inception_resnet_v2", 299),
    "inceptionv3": Build("torchvision", "inception_v3", 299, (("aux_logits", False), ("init_weights", False))),
    "mobilenetv1": Build("timm", "mobilenetv1_100", 224),
    "mobilenetv2": Build("torchvision", "mobilenet_v2", 224),
    "nasnetlarge": Build("timm", "nasnetalarge", 331),
    "resnet18": Build("torchvision", "resnet18", 224),
    "resnet34": Build("torchvision", "resnet34", 224),
    "resnet50": Build("torchvision", "resnet50", 224),
    "resnet101": Build("torchvision", "resnet101", 224),
    "resnet152": Build("torchvision", "resnet152", 224),
    "resnet50v2": Build("timm", "resnetv2_50", 224),
    "resnet101v2": Build("timm", "resnetv2_101", 224),
    "resnet152v2": Build("timm", "resnetv2_152", 224),
    "resnext50": Build("torchvision", "resnext50_32x4d", 224),
    "resnext101": Build("torchvision", "resnext101_32x8d", 224),
    "vgg16": Build("torchvision", "vgg16", 224),
    "vgg19": Build("torchvision", "vgg19", 224),
    "xception": Build("timm", "legacy_xception", 299),
}
NOT_MEASURED = {
    "nasnetmobile": "no implementation in torchvision or timm",
    "yolov5n": "YOLOv5 is not in torchvision or timm (Ultralytics' package)",
}
for _a in ARCHITECTURES:
    if _a.name.startswith("yolov5"):
        NOT_MEASURED[_a.name] = NOT_MEASURED["yolov5n"]


def build_module(build: Build) -> Any:
    """The architecture as a PyTorch module with random weights (seeded), in eval mode."""
    try:
        import torch
    except ImportError:
        raise ConfigError("measuring needs torch (docs/catalog.md gives the install line)") from None
    torch.manual_seed(0)
    try:
        if build.library == "torchvision":
            import torchvision

            module = getattr(torchvision.models, build.name)(weights=None, **dict(build.kwargs))
        else:
            import timm

            module = timm.create_model(build.name, pretrained=False, **dict(build.kwargs))
    except ImportError as exc:
        raise ConfigError(f"measuring {build.name} needs {build.library}: {exc}") from None
    return module.eval()


# --- the scaling fit -------------------------------------------------------------------------------
FIT_TERMS = ("a", "beta", "g", "z")  # l(c, b) = a*b/c + beta*b + g/c + z


def fit_cores(points: Sequence[tuple[float, int, float]]) -> dict[str, float]:
    """Non-negative least squares of Themis's ``l(c, b) = a*b/c + beta*b + g/c + z`` (ms) over
    ``(cores, batch, ms)`` points; needs two core counts to tell a from beta and g from z."""
    from scipy.optimize import nnls

    c = np.array([p[0] for p in points], dtype=float)
    b = np.array([p[1] for p in points], dtype=float)
    ms = np.array([p[2] for p in points], dtype=float)
    if len(set(c)) < 2:
        raise InputError("the core-scaling fit needs measurements on two core counts")
    # Relative error, not absolute: weight each point by 1/ms so batch 8 does not drown batch 1.
    x = np.column_stack([b / c, b, 1 / c, np.ones_like(b)]) / ms[:, None]
    coef, _ = nnls(x, np.ones_like(ms))
    return dict(zip(FIT_TERMS, (float(v) for v in coef), strict=True))


def fitted_latency(fit: dict[str, float], cores: float, batch: int) -> float:
    return fit["a"] * batch / cores + fit["beta"] * batch + fit["g"] / cores + fit["z"]


# --- measuring one architecture ------------------------------------------------------------------
def measure_arch(
    arch: Arch,
    module: Any,
    image: int,
    folder: Path,
    cores: Sequence[int] = MEASURED_CORES,
    max_batch: int = MAX_BATCH,
    precisions: Sequence[str] = PRECISIONS,
    budget_s: float = 0.6,
    repeats: int = 10,
    retries: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Export, generate and profile one architecture; its measured rows and warnings."""
    import torch

    from infaas_sim.profiling.generate import generate_variants
    from infaas_sim.profiling.profile import catalog_row, profile_variant
    from infaas_sim.profiling.zoo import from_torch

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    samples = rng.random((CALIBRATION_IMAGES, 3, image, image), dtype=np.float32)
    t0 = time.perf_counter()
    model = from_torch(
        module, torch.from_numpy(samples[:1]), arch.name, arch.task, arch.dataset, sample_inputs=samples,
        declared_accuracy=arch.accuracy, gflops=arch.gflops,
    )  # fmt: skip
    export_s = time.perf_counter() - t0
    report = generate_variants(
        model, folder, cores=[float(c) for c in cores], max_batch=max_batch, backends=("onnxruntime",),
        ort_precisions=precisions,
    )  # fmt: skip
    if not report.variants:  # the backend is absent, or every variant failed: nothing to keep
        raise ConfigError(f"{arch.name}: no variant could be generated ({'; '.join(report.describe().splitlines())})")
    rows, warnings = [], []
    failed = [list(f) for f in report.failed]
    for gv in report.variants:
        try:
            prof = profile_variant(gv, model, folder, warmup=1, repeats=repeats, budget_s=budget_s, retries=retries)
        except Exception as exc:  # a variant the runtime cannot run (a broken quantised graph) costs itself only
            failed.append([gv.variant_id, f"{type(exc).__name__}: {exc}".splitlines()[0][:200]])
            if progress is not None:
                progress(f"{gv.variant_id}: failed ({failed[-1][1]})")
            continue
        row = catalog_row(gv, prof, model)
        rows.append({k: row[k] for k in (*_catalog_columns(), *COLUMNS_EXTRA)})
        warnings += [w.describe() for w in prof.warnings]
        if progress is not None:
            progress(f"{gv.variant_id}: b1 {prof.p50_ms[0][1]:.1f} ms, b{max_batch} {prof.p50_ms[-1][1]:.1f} ms")
    return {
        "architecture": arch.name, "rows": rows, "warnings": warnings, "failed": failed,
        "export_s": export_s, "image": image,
    }  # fmt: skip


def _catalog_columns() -> list[str]:
    from infaas_sim.catalog import COLUMNS

    return list(COLUMNS)


# --- rows ------------------------------------------------------------------------------------------
def _parse_points(text: str) -> list[tuple[int, float]]:
    return [(int(b), float(ms)) for b, ms in (item.split(":") for item in text.split(";") if item)]


def _profile_text(points: Sequence[tuple[int, float]]) -> str:
    return ";".join(f"{b}:{ms:.6g}" for b, ms in points)


def _measured_source(arch: Arch, row: dict[str, Any], cpu: str) -> str:
    acc = f"accuracy: {arch.facts_source}" if not str(row["precision"]).startswith("int8") else INT8_SOURCE
    return (
        f"measured: onnxruntime on {cpu}, {int(float(row['allocation']))} intra-op thread(s), "
        f"median of repeated runs (infaas_sim.catalogs.measure_cpu); {acc}; GFLOPs: {arch.gflops_source}"
    )


def finish_rows(
    results: Sequence[dict[str, Any]],
    cpu: str,
    fitted_cores: Sequence[int] = FITTED_CORES,
    archs: Sequence[Arch] = ARCHITECTURES,
) -> list[dict[str, Any]]:
    """Measured rows with their sources and accuracies, plus the fitted rows per (arch, precision)."""
    by_name = {a.name: a for a in archs}
    out: list[dict[str, Any]] = []
    for res in results:
        arch = by_name[res["architecture"]]
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in res["rows"]:
            row = dict(row)
            if str(row["precision"]).startswith("int8"):
                row["accuracy"] = round(arch.accuracy * INT8_ACCURACY_FACTOR, 6)
            else:
                row["accuracy"] = arch.accuracy
            row["source"] = _measured_source(arch, row, cpu)
            out.append(row)
            groups.setdefault(str(row["precision"]), []).append(row)
        for rows in groups.values():
            points = [(float(r["allocation"]), b, ms) for r in rows for b, ms in _parse_points(r["profile"])]
            if len({p[0] for p in points}) < 2:
                continue
            fit = fit_cores(points)
            top = max(rows, key=lambda r: float(r["allocation"]))  # load, memory and spread: from it
            for c in fitted_cores:
                max_batch = int(top["max_batch"])
                pts = [(b, fitted_latency(fit, c, b)) for b in range(1, max_batch + 1)]
                icpt, slope = _line(pts)
                vid = str(top["variant_id"]).rsplit("-", 1)[0] + f"-{c}c"
                coef = " ".join(f"{k}={fit[k]:.4g}" for k in FIT_TERMS)
                source = (
                    f"fitted: l(c,b) = a*b/c + beta*b + g/c + z (Themis's CPU model; NNLS on the 1- and 2-core "
                    f"medians: {coef} ms) at {c} cores; load, memory and spread as measured on "
                    f"{int(float(top['allocation']))} cores; " + _measured_source(arch, top, cpu).split("; ", 1)[1]
                )
                out.append({
                    **top, "variant_id": vid, "allocation": float(c), "latency_intercept_ms": round(icpt, 6),
                    "latency_slope_ms": round(slope, 6), "profile": _profile_text(pts), "profile_p99": "",
                    "source": source,
                })  # fmt: skip
    order = {a.name: i for i, a in enumerate(archs)}
    out.sort(key=lambda r: (order[r["architecture"]], str(r["precision"]), float(r["allocation"])))
    return out


def _line(points: Sequence[tuple[int, float]]) -> tuple[float, float]:
    from infaas_sim.profiling.profile import fit_line

    return fit_line(points)


# --- provenance and output -------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return "absent"


def provenance(command: str, results: Sequence[dict[str, Any]], when: dt.datetime) -> list[str]:
    cpu = cpu_model()
    warnings = [w for r in results for w in r["warnings"]]
    measured, fitted = ", ".join(map(str, MEASURED_CORES)), ", ".join(map(str, FITTED_CORES))
    versions = ", ".join(f"{m} {_version(m)}" for m in ("onnxruntime", "onnx", "torch", "torchvision", "timm"))
    skipped = f"{', '.join(sorted(NOT_MEASURED))} ({'; '.join(sorted(set(NOT_MEASURED.values())))})"
    noisy = f" ({'; '.join(warnings[:20])})" if warnings else "."
    failed = [f"{what} ({why})" for r in results for what, why in r["failed"]]
    lines = [
        "CPU rows of the default catalog, measured by infaas_sim.catalogs.measure_cpu (docs/catalog.md).",
        f"CPU: {cpu}; {os.cpu_count()} logical CPU(s) on this machine; measured on {measured} intra-op thread(s); "
        f"{fitted}-core rows fitted (source says 'fitted').",
        f"Versions: python {platform.python_version()}, {versions}.",
        f"Date: {when.strftime('%Y-%m-%d %H:%M UTC')}. Command: {command}",
        "Latency: median of timed session.run calls on synthetic inputs after one warm-up, per batch 1..8; "
        "profile_p99 their 99th percentile; latency_cv the run-to-run spread (std / mean, pooled over batches).",
        "Load: open the session and run batch 1 (median of 2); memory: resident-set growth (at least the file size).",
        "Fit: l(c,b) = a*b/c + beta*b + g/c + z, non-negative least squares on relative error (Themis, SoCC'23).",
        f"Not measured (generate_default models their CPU rows from measured ones): {skipped}.",
        f"Noisy profiles left after re-measuring: {len(warnings)}{noisy}",
        f"Variants that failed (no rows): {len(failed)}" + (f" ({'; '.join(failed)})" if failed else "."),
    ]
    return lines


def render(rows: Sequence[dict[str, Any]], header: Sequence[str]) -> str:
    buf = io.StringIO()
    for line in header:
        buf.write(f"# {line}\n")
    writer = csv.DictWriter(buf, fieldnames=[*_catalog_columns(), *COLUMNS_EXTRA], lineterminator="\n",
                            extrasaction="ignore")  # fmt: skip
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buf.getvalue()


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        return f"{float(f'{v:.6g}'):g}" if math.isfinite(v) else ""
    return v


def write_csv(rows: Sequence[dict[str, Any]], header: Sequence[str], path: Path) -> Path:
    """Write atomically and check that the simulator loads the file."""
    from infaas_sim.catalog import Catalog

    tmp = path.with_name(path.name + ".tmp.csv")
    tmp.write_text(render(rows, header), encoding="utf-8")
    Catalog.load(tmp)
    tmp.replace(path)
    return path


def measure(
    archs: Sequence[str],
    out: Path = OUTPUT,
    work: Path = WORK,
    resume: bool = False,
    budget_s: float = 0.6,
    repeats: int = 10,
    retries: int = 1,
    keep_artifacts: bool = False,
    command: str = "",
) -> tuple[Path, list[str]]:
    """Measure ``archs`` (names of ``BUILDS``) and write the CSV; returns it and the warnings."""
    from tqdm import tqdm

    unknown = [a for a in archs if a not in BUILDS]
    if unknown:
        why = [f"{a} ({NOT_MEASURED.get(a, 'not in the default catalog')})" for a in unknown]
        raise InputError(f"cannot measure {', '.join(why)}; measurable: {', '.join(BUILDS)}")
    by_name = {a.name: a for a in ARCHITECTURES}
    work.mkdir(parents=True, exist_ok=True)
    results = []
    bar = tqdm(archs, desc="measure_cpu", unit="arch", file=sys.stderr)
    for name in bar:
        bar.set_postfix_str(name)
        done = work / f"{name}.json"
        if resume and done.exists():
            results.append(json.loads(done.read_text()))
            continue
        build = BUILDS[name]
        folder = work / name
        res = measure_arch(
            by_name[name], build_module(build), build.image, folder, budget_s=budget_s, repeats=repeats,
            retries=retries, progress=lambda msg: bar.write(msg, file=sys.stderr),
        )  # fmt: skip
        if not keep_artifacts:
            shutil.rmtree(folder, ignore_errors=True)  # GBs of ONNX files per architecture
        tmp = done.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(res, indent=1))
        tmp.replace(done)
        results.append(res)
    rows = finish_rows(results, cpu_model())
    header = provenance(command, results, dt.datetime.now(dt.UTC))
    return write_csv(rows, header, out), [w for r in results for w in r["warnings"]]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m infaas_sim.catalogs.measure_cpu", description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default=",".join(BUILDS), help="comma-separated architectures (default: all measurable)")
    ap.add_argument("--out", type=Path, default=OUTPUT, help=f"output CSV (default: {OUTPUT})")
    ap.add_argument("--work", type=Path, default=WORK, help="per-architecture results and artifacts")
    ap.add_argument("--resume", action="store_true", help="reuse architectures already measured in --work")
    ap.add_argument("--budget-s", type=float, default=0.6, help="seconds of timed runs per batch size (3..--repeats)")
    ap.add_argument("--repeats", type=int, default=10, help="timed runs per batch size at most")
    ap.add_argument("--retries", type=int, default=1, help="re-measurements of a noisy batch size")
    ap.add_argument("--keep-artifacts", action="store_true", help="keep the generated ONNX files")
    a = ap.parse_args(argv)
    command = "python -m infaas_sim.catalogs.measure_cpu " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        path, warnings = measure(
            [x for x in a.archs.split(",") if x], a.out, a.work, a.resume, a.budget_s, a.repeats, a.retries,
            a.keep_artifacts, command.strip(),
        )  # fmt: skip
    except (InputError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"warning: noisy profile: {w}", file=sys.stderr)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
