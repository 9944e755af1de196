"""Variant generation: from one registered model, every variant the installed backends allow.

What INFaaS promises ("model-less": register a model once, the system makes its variants) and
its release left to the user. For a model this writes into ``out_dir``:

- ONNX Runtime (CPU): the fp32 export (loaded with basic graph optimisation, as a plain
  export runs), the graph-optimised model (ORT's extended optimisations applied offline and
  saved, then loaded with all optimisations), int8 by dynamic quantisation (weights int8,
  activations quantised on the fly; ``onnxruntime.quantization.quantize_dynamic``) and int8 by
  static quantisation (QDQ, activation ranges calibrated on the model's sample inputs;
  ``quantize_static``), each at every CPU allocation in ``cores`` (intra-op threads);
- TensorRT (GPU): fp32 / fp16 / int8 engines per max batch, when tensorrt is importable;
- Neuron (Inferentia): compiled per NeuronCore count, when the Neuron SDK is importable and
  the model was registered from a PyTorch module.

A backend that is absent is reported as such (``GenerationReport.absent``) and a variant that
fails is reported with its error (``failed``); the rest still generate.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from infaas_sim.errors import ConfigError
from infaas_sim.profiling.zoo import RegisteredModel
from infaas_sim.realtime import BUILDERS, backend_absent

BACKENDS = ("onnxruntime", "tensorrt", "neuron")
ORT_PRECISIONS = ("fp32", "fp32-opt", "int8-dynamic", "int8-static")


@dataclass(frozen=True)
class GeneratedVariant:
    variant_id: str
    architecture: str
    task: str
    dataset: str
    backend: str  # also the catalog's framework
    hardware: str  # cpu | gpu | inferentia
    precision: str
    allocation: float  # cores, accelerator share, NeuronCores
    max_batch: int
    artifact: str  # file name in the output folder
    options: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class GenerationReport:
    variants: tuple[GeneratedVariant, ...]
    absent: dict[str, str] = field(default_factory=dict, hash=False)  # backend -> why
    failed: tuple[tuple[str, str], ...] = ()  # (what, error)

    def merge(self, other: GenerationReport) -> GenerationReport:
        return GenerationReport(
            self.variants + other.variants, {**self.absent, **other.absent}, self.failed + other.failed
        )

    def describe(self) -> str:
        lines = [f"{len(self.variants)} variants generated"]
        lines += [f"backend {b} absent: {why}" for b, why in sorted(self.absent.items())]
        lines += [f"failed {what}: {err}" for what, err in self.failed]
        return "\n".join(lines)


class _Calibration:
    """onnxruntime's CalibrationDataReader over the model's sample inputs, in batches."""

    def __init__(self, name: str, samples: np.ndarray, batch: int = 8) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = iter(
            [{name: samples[i : i + batch]} for i in range(0, len(samples), batch)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - some onnxruntime versions call it
        pass


class _DropPreprocessAdvice(logging.Filter):
    """onnxruntime.quantization logs advice to run its shape-inference pre-processing on the
    root logger at every call; our graphs carry full shapes already (onnx.helper value infos,
    checked), so the advice is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage() and "preprocess" not in record.getMessage()


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    f = _DropPreprocessAdvice()
    root = logging.getLogger()
    root.addFilter(f)
    try:
        yield
    finally:
        root.removeFilter(f)


def _ort_files(model: RegisteredModel, out: Path) -> tuple[dict[str, Path], list[tuple[str, str]]]:
    """The four ONNX Runtime model files; a precision that fails is reported, not fatal."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    files: dict[str, Path] = {}
    failed: list[tuple[str, str]] = []
    base = out / f"{model.name}.fp32.onnx"
    base.write_bytes(model.onnx_bytes)
    files["fp32"] = base

    def attempt(precision: str, path: Path, make: Any) -> None:
        try:
            make(path)
            files[precision] = path
        except Exception as exc:  # a quantiser or optimiser error costs one variant, not the run
            failed.append((f"{model.name} {precision}", f"{type(exc).__name__}: {exc}".splitlines()[0]))

    def optimise(path: Path) -> None:
        so = ort.SessionOptions()
        # Extended, not all: layout optimisations saved offline tie a file to one CPU type
        # (ORT docs, "Graph optimizations: online/offline mode").
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(path)
        ort.InferenceSession(str(base), sess_options=so, providers=["CPUExecutionProvider"])

    def dynamic(path: Path) -> None:
        with _quiet_quantizer():
            quantize_dynamic(str(base), str(path), weight_type=QuantType.QInt8)

    def static(path: Path) -> None:
        reader = _Calibration(_input_name(model), model.sample_inputs)
        with _quiet_quantizer():
            quantize_static(
                str(base), str(path), reader, quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
            )  # fmt: skip

    attempt("fp32-opt", out / f"{model.name}.opt.onnx", optimise)
    attempt("int8-dynamic", out / f"{model.name}.int8-dynamic.onnx", dynamic)
    attempt("int8-static", out / f"{model.name}.int8-static.onnx", static)
    return files, failed


def _input_name(model: RegisteredModel) -> str:
    import onnx

    return str(onnx.load_from_string(model.onnx_bytes).graph.input[0].name)


def _cores_tag(c: float) -> str:
    return f"{c:g}c"


def generate_variants(
    model: RegisteredModel,
    out_dir: str | Path,
    cores: Sequence[float] = (1, 2),
    max_batch: int = 8,
    backends: Sequence[str] = BACKENDS,
    ort_precisions: Sequence[str] = ORT_PRECISIONS,
    trt_max_batches: Sequence[int] = (1, 8, 32),
    trt_precisions: Sequence[str] = ("fp32", "fp16", "int8"),
    neuron_cores: Sequence[int] = (1, 4),
) -> GenerationReport:
    """Generate ``model``'s variants into ``out_dir`` (see the module docstring)."""
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise ConfigError(f"unknown backend(s) {sorted(unknown)} (known: {', '.join(BACKENDS)})")
    bad = set(ort_precisions) - set(ORT_PRECISIONS)
    if bad:
        raise ConfigError(f"unknown onnxruntime precision(s) {sorted(bad)} (known: {', '.join(ORT_PRECISIONS)})")
    if max_batch < 1 or any(c <= 0 for c in cores):
        raise ConfigError("max_batch must be >= 1 and cores > 0")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = GenerationReport(())
    ort_files: dict[str, Path] = {}
    for backend in backends:
        why = backend_absent(backend)
        if backend == "neuron" and why is None and model.torch_module is None:
            why = "the Neuron SDK compiles PyTorch modules; this model was not registered from one"
        if why is not None:
            report = report.merge(GenerationReport((), {backend: why}))
            continue
        if backend == "onnxruntime":
            ort_files, failed = _ort_files(model, out)
            variants = [
                _variant(model, "onnxruntime", "cpu", p, c, max_batch, ort_files[p].name,
                         {"opt": "basic" if p == "fp32" else "all"}, f"ort-{p}-{_cores_tag(c)}")
                for p in ort_precisions if p in ort_files for c in cores
            ]  # fmt: skip
            report = report.merge(GenerationReport(tuple(variants), failed=tuple(failed)))
        elif backend == "tensorrt":
            report = report.merge(_tensorrt(model, out, ort_files, trt_max_batches, trt_precisions))
        else:
            report = report.merge(_neuron(model, out, neuron_cores, max_batch))
    return report


def _variant(
    model: RegisteredModel, backend: str, hardware: str, precision: str, alloc: float, max_batch: int,
    artifact: str, options: dict[str, str], tag: str,
) -> GeneratedVariant:  # fmt: skip
    return GeneratedVariant(
        f"{model.name}-{tag}", model.name, model.task, model.dataset, backend, hardware, precision, float(alloc),
        max_batch, artifact, options,
    )  # fmt: skip


def _tensorrt(
    model: RegisteredModel, out: Path, ort_files: dict[str, Path], batches: Sequence[int], precisions: Sequence[str]
) -> GenerationReport:
    build_engine = BUILDERS.get("tensorrt")

    fp32 = out / f"{model.name}.fp32.onnx"
    if not fp32.exists():
        fp32.write_bytes(model.onnx_bytes)
    variants, failed = [], []
    for prec in precisions:
        # Int8 engines come from the QDQ (static-quantised) model: explicit quantisation.
        src = ort_files.get("int8-static") if prec == "int8" else fp32
        if src is None:
            failed.append((f"{model.name} trt-{prec}", "needs the int8-static ONNX model (generate onnxruntime too)"))
            continue
        for mb in batches:
            name = f"{model.name}.trt-{prec}-b{mb}.engine"
            try:
                build_engine(src, out / name, prec, mb)
            except Exception as exc:
                failed.append((f"{model.name} trt-{prec}-b{mb}", f"{type(exc).__name__}: {exc}".splitlines()[0]))
                continue
            variants.append(_variant(model, "tensorrt", "gpu", prec, 1, mb, name, {}, f"trt-{prec}-b{mb}"))
    return GenerationReport(tuple(variants), failed=tuple(failed))


def _neuron(model: RegisteredModel, out: Path, cores: Sequence[int], max_batch: int) -> GenerationReport:
    compile_neuron = BUILDERS.get("neuron")

    variants, failed = [], []
    shape = "x".join(str(d) for d in model.input_shape)
    for n in cores:
        name = f"{model.name}.neuron-{n}nc-b{max_batch}.pt"
        try:
            compile_neuron(model.torch_module, model.sample_inputs, out / name, n, max_batch)
        except Exception as exc:
            failed.append((f"{model.name} neuron-{n}nc", f"{type(exc).__name__}: {exc}".splitlines()[0]))
            continue
        variants.append(
            _variant(model, "neuron", "inferentia", "fp32", n, max_batch, name, {"shape": shape}, f"neuron-{n}nc")
        )
    return GenerationReport(tuple(variants), failed=tuple(failed))
