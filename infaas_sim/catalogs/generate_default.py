"""Generate the default catalogs, ``infaas_sim/catalogs/default.csv`` and ``neuron_batched.csv``.

    .venv/bin/python -m infaas_sim.catalogs.generate_default [--out PATH] [--batched-out PATH]

23 ImageNet classifiers (the INFaaS evaluation's, plus ResNet-18/34 for InfAdapter's family) and
five YOLOv5 COCO detectors (for IPA-style detection-then-classification pipelines), each compiled
for CPU (ONNX Runtime fp32, graph-optimised and int8 on 1-8 cores), GPU (TensorRT engines in
fp32 / fp16 at several max batches, TensorFlow-GPU; allocation 1.0 = one V100) and Inferentia
(Neuron on 1-4 NeuronCores). Accuracy, parameter count and GFLOPs (multiply-adds) are published
facts; each carries its source below and in the ``source`` column. docs/catalog.md says, row
family by row family, what is measured, fitted and modelled.

**CPU rows are measured** (``cpu_measured.csv``, written by ``python -m
infaas_sim.catalogs.measure_cpu``: torchvision / timm architectures exported to ONNX and profiled
on 1 and 2 cores; 4- and 8-core rows fitted with Themis's l(c, b) model). They are copied as
they are, with their measured run-to-run spread (``latency_cv``). The architectures no library
here implements (NASNet-Mobile, YOLOv5) get *modelled* CPU rows: a measured architecture's rows
(``CPU_SCALED_FROM``) scaled by the GFLOPs ratio, load time and memory by the parameter ratio.

**Accelerator rows are modelled**: latency, load time and memory are not published per
variant, so they come from a small performance model calibrated on the ResNet-50 points in
INFaaS's code:

* Calibration (reproduced exactly): TensorRT fp32 batch-8 engine, latency 2.71 + 1.19 b ms
  (INFaaS's fit; its measured batch-1 point is 3.7 ms), load 1146 ms, 92 MB; TF-GPU 7.1 ms,
  load 1308 ms; Inferentia on 1 NeuronCore 22 ms, load 3555 ms.
* Architectures: ``w = GFLOPs / GFLOPs(ResNet-50)``. The per-input slope scales with ``w``;
  the intercept (kernel launches, per-layer fixed costs) scales as ``w**0.5``. No per-family
  efficiency factors: on one hardware configuration more GFLOPs is never faster.
* GPU: fp16 halves the TensorRT slope (V100 tensor cores, about 2x) and cuts the intercept
  by 1.25x (launch- and memory-bound layers gain less). An engine built for max batch m pays
  3% more intercept per doubling of m over 8 (kernels tuned for larger batches). TF-GPU has
  a 1.5x TensorRT slope, the rest of its 7.1 ms is intercept.
* Inferentia: INFaaS's released Inferentia variants are batch 1, and so are the default
  catalog's; batched Neuron variants (max batch 8, ids ending ``-b8``) are added in
  ``neuron_batched.csv`` (``catalog=neuron_batched``): AWS's Neuron ResNet-50 tutorial compiles
  at batch 5 for the best inf1 throughput, so batching pays there; its per-input share (40% of
  the 1-NeuronCore batch-1 latency) is our assumption. n NeuronCores divide latency by
  ``n**0.6`` (1.52x on 2, 2.30x on 4: pipelining with diminishing returns).
* Load time: half of ResNet-50's load time on a framework is fixed (runtime, session/engine
  set-up); the other half scales with weight bytes (parameters x bytes per parameter).
* Memory: weights (fp32 4 B, fp16 / bf16 2 B per parameter) plus activations (1 MB per
  ResNet-50-sized fp32 input, scaled by ``w``, times max batch) plus a per-runtime overhead.
  TensorRT's weight factor 0.82 is fitted so the ResNet-50 engine uses INFaaS's 92 MB (less
  than its 102 MB of fp32 weights as we count them).

Modelled values are written with 4 significant digits; the output is deterministic and sorted by
architecture, hardware, framework, precision, allocation and max batch.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from infaas_sim.catalog import COLUMNS

OUTPUT = Path(__file__).with_name("default.csv")
TASK = "image-classification"
DATASET = "imagenet"
DETECTION = "object-detection"
COCO = "coco"

# --- sources --------------------------------------------------------------------------------------
KERAS = "Keras Applications table"  # https://keras.io/api/applications/ (top-1, parameters)
TORCHVISION = "torchvision model zoo"  # https://pytorch.org/vision/stable/models.html (acc@1, params, GFLOPS)
RESNET_V2_FLOPS = "torchvision ResNet v1 GFLOPS (v2 keeps v1's convolutions: He et al. 2016)"
MOBILENET_PAPER = "Howard et al. 2017 (MobileNets) 569M mult-adds"
NASNET_PAPER = "Zoph et al. 2018 (NASNet) Table 2 mult-adds"
EFFICIENTNET_PAPER = "Tan & Le 2019 (EfficientNet) Table 2"
TIMM_CARD = "timm model card inception_resnet_v2 (GMACs at 299x299)"
YOLOV5 = "Ultralytics YOLOv5 README v7.0 table"  # https://github.com/ultralytics/yolov5 (mAP@0.5, params, FLOPs)
INFAAS = "calibrated on INFaaS code (ResNet-50 profile)"
DERIVED = "modelled: generate_default.py model scaled from INFaaS ResNet-50 profile"
MEASURED_CPU = Path(__file__).with_name("cpu_measured.csv")
BATCHED_OUTPUT = Path(__file__).with_name("neuron_batched.csv")


@dataclass(frozen=True, slots=True)
class Arch:
    name: str
    accuracy: float  # ImageNet top-1, fraction
    params_m: float  # parameters, millions
    gflops: float  # multiply-adds per input, 1e9
    keras: bool  # ships in Keras Applications: has TensorFlow-GPU variants
    torchvision: bool  # ships in torchvision (else measure_cpu builds it from timm, or cannot)
    facts_source: str  # source of accuracy and parameters
    gflops_source: str
    task: str = TASK
    dataset: str = DATASET


# fmt: off
ARCHITECTURES: tuple[Arch, ...] = (
    # Not in Keras Applications. torchvision AlexNet_Weights.IMAGENET1K_V1: acc@1 56.522, 61.1M params, 0.71 GFLOPS
    Arch("alexnet", 0.56522, 61.1, 0.71, False, True, TORCHVISION, TORCHVISION),
    # Keras DenseNet121: 75.0%, 8.1M; torchvision densenet121: 2.83 GFLOPS
    Arch("densenet121", 0.750, 8.1, 2.83, True, True, KERAS, TORCHVISION),
    # Keras DenseNet169: 76.2%, 14.3M; torchvision densenet169: 3.36 GFLOPS
    Arch("densenet169", 0.762, 14.3, 3.36, True, True, KERAS, TORCHVISION),
    # Keras DenseNet201: 77.3%, 20.2M; torchvision densenet201: 4.29 GFLOPS
    Arch("densenet201", 0.773, 20.2, 4.29, True, True, KERAS, TORCHVISION),
    # Keras InceptionResNetV2: 80.3%, 55.9M; timm inception_resnet_v2 card: 13.2 GMACs (299x299)
    Arch("inception-resnetv2", 0.803, 55.9, 13.2, True, False, KERAS, TIMM_CARD),
    # Keras InceptionV3: 77.9%, 23.9M; torchvision inception_v3 (299x299): 5.71 GFLOPS
    Arch("inceptionv3", 0.779, 23.9, 5.71, True, True, KERAS, TORCHVISION),
    # Keras MobileNet: 70.4%, 4.3M; MobileNets paper (1.0 MobileNet-224): 569M mult-adds
    Arch("mobilenetv1", 0.704, 4.3, 0.569, True, False, KERAS, MOBILENET_PAPER),
    # Keras MobileNetV2: 71.3%, 3.5M; torchvision mobilenet_v2: 0.30 GFLOPS
    Arch("mobilenetv2", 0.713, 3.5, 0.30, True, True, KERAS, TORCHVISION),
    # Keras NASNetLarge: 82.5%, 88.9M; NASNet paper, NASNet-A (6 @ 4032) at 331x331: 23.8B mult-adds
    Arch("nasnetlarge", 0.825, 88.9, 23.8, True, False, KERAS, NASNET_PAPER),
    # Keras NASNetMobile: 74.4%, 5.3M; NASNet paper, NASNet-A (4 @ 1056): 564M mult-adds
    Arch("nasnetmobile", 0.744, 5.3, 0.564, True, False, KERAS, NASNET_PAPER),
    # Not in Keras Applications. torchvision ResNet18_Weights.IMAGENET1K_V1: acc@1 69.758, 11.7M, 1.81 GFLOPS
    Arch("resnet18", 0.69758, 11.7, 1.81, False, True, TORCHVISION, TORCHVISION),
    # Not in Keras Applications. torchvision ResNet34_Weights.IMAGENET1K_V1: acc@1 73.314, 21.8M, 3.66 GFLOPS
    Arch("resnet34", 0.73314, 21.8, 3.66, False, True, TORCHVISION, TORCHVISION),
    # Keras ResNet101: 76.4%, 44.7M; torchvision resnet101: 7.80 GFLOPS
    Arch("resnet101", 0.764, 44.7, 7.80, True, True, KERAS, TORCHVISION),
    # Keras ResNet101V2: 77.2%, 44.7M; GFLOPS as ResNet-101 v1
    Arch("resnet101v2", 0.772, 44.7, 7.80, True, False, KERAS, RESNET_V2_FLOPS),
    # Keras ResNet152: 76.6%, 60.4M; torchvision resnet152: 11.51 GFLOPS
    Arch("resnet152", 0.766, 60.4, 11.51, True, True, KERAS, TORCHVISION),
    # Keras ResNet152V2: 78.0%, 60.4M; GFLOPS as ResNet-152 v1
    Arch("resnet152v2", 0.780, 60.4, 11.51, True, False, KERAS, RESNET_V2_FLOPS),
    # Keras ResNet50: 74.9%, 25.6M; torchvision resnet50: 4.09 GFLOPS (the reference, w = 1)
    Arch("resnet50", 0.749, 25.6, 4.09, True, True, KERAS, TORCHVISION),
    # Keras ResNet50V2: 76.0%, 25.6M; GFLOPS as ResNet-50 v1
    Arch("resnet50v2", 0.760, 25.6, 4.09, True, False, KERAS, RESNET_V2_FLOPS),
    # torchvision resnext101_32x8d IMAGENET1K_V1: acc@1 79.312, 88.8M params, 16.41 GFLOPS
    Arch("resnext101", 0.79312, 88.8, 16.41, False, True, TORCHVISION, TORCHVISION),
    # torchvision resnext50_32x4d IMAGENET1K_V1: acc@1 77.618, 25.0M params, 4.23 GFLOPS
    Arch("resnext50", 0.77618, 25.0, 4.23, False, True, TORCHVISION, TORCHVISION),
    # Keras VGG16: 71.3%, 138.4M; torchvision vgg16: 15.47 GFLOPS
    Arch("vgg16", 0.713, 138.4, 15.47, True, True, KERAS, TORCHVISION),
    # Keras VGG19: 71.3%, 143.7M; torchvision vgg19: 19.63 GFLOPS
    Arch("vgg19", 0.713, 143.7, 19.63, True, True, KERAS, TORCHVISION),
    # Keras Xception: 79.0%, 22.9M; EfficientNet paper Table 2: 8.4B FLOPS (multiply-adds, 299x299)
    Arch("xception", 0.790, 22.9, 8.4, True, False, KERAS, EFFICIENTNET_PAPER),
    # Object detection on COCO, for pipelines (IPA's video pipeline: YOLOv5 then ResNet). Accuracy is
    # mAP@0.5 on COCO val (the figures IPA uses: 45.7/56.8/64.1/67.3/68.9). Ultralytics reports FLOPs at
    # 640x640 (4.5/16.5/49.0/109.1/205.7 B), i.e. twice the multiply-adds we count: halved here.
    Arch("yolov5n", 0.457, 1.9, 2.25, False, True, YOLOV5, YOLOV5, DETECTION, COCO),
    Arch("yolov5s", 0.568, 7.2, 8.25, False, True, YOLOV5, YOLOV5, DETECTION, COCO),
    Arch("yolov5m", 0.641, 21.2, 24.5, False, True, YOLOV5, YOLOV5, DETECTION, COCO),
    Arch("yolov5l", 0.673, 46.5, 54.55, False, True, YOLOV5, YOLOV5, DETECTION, COCO),
    Arch("yolov5x", 0.689, 86.7, 102.85, False, True, YOLOV5, YOLOV5, DETECTION, COCO),
)
# fmt: on
REFERENCE = next(a for a in ARCHITECTURES if a.name == "resnet50")

# --- calibration: ResNet-50 points from INFaaS's code (/work/shared/reference/policies.md) ---------
TRT_INTERCEPT_MS = 2.71  # TensorRT fp32 batch-8 engine: fit 2.71 + 1.19 b (measured batch-1: 3.7 ms)
TRT_SLOPE_MS = 1.19
TRT_LOAD_MS = 1146.0
TRT_MEMORY_MB = 92.0
TRT_REF_BATCH = 8  # the calibrated engine's max batch
TF_GPU_B1_MS = 7.1
TF_GPU_LOAD_MS = 1308.0
NEURON_B1_MS = 22.0  # one NeuronCore, batch 1
NEURON_LOAD_MS = 3555.0

# --- model assumptions (see the module docstring) ------------------------------------------------
ACCEL_INTERCEPT_EXPONENT = 0.5  # accelerator intercepts scale as w ** 0.5
FP16_SLOPE_SPEEDUP = 2.0  # V100 tensor cores
FP16_INTERCEPT_SPEEDUP = 1.25
ENGINE_BATCH_PENALTY = 0.03  # TensorRT intercept +3% per doubling of max batch over 8
TF_GPU_SLOPE_FACTOR = 1.5  # TF-GPU's per-input cost relative to a TensorRT fp32 engine
NEURON_SLOPE_FRACTION = 0.4  # share of the 1-NeuronCore batch-1 latency that is per input
NEURON_CORE_EXPONENT = 0.6  # n NeuronCores: latency / n ** 0.6
LOAD_FIXED_FRACTION = 0.5  # of ResNet-50's load time, the part independent of model size
ACTIVATION_MB = 1.0  # per fp32 input of a ResNet-50-sized model (scaled by w and bytes)
BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
# Runtime memory beyond weights and activations (MB), by (framework, hardware): assumptions.
OVERHEAD_MB = {
    ("tensorflow", "gpu"): 250.0,
    ("tensorrt", "gpu"): 0.0,
    ("neuron", "inferentia"): 20.0,
}
# TensorRT weight factor, fitted: the ResNet-50 fp32 batch-8 engine takes INFaaS's 92 MB.
TRT_WEIGHT_FACTOR = (TRT_MEMORY_MB - ACTIVATION_MB * TRT_REF_BATCH) / (REFERENCE.params_m * BYTES["fp32"])
LOAD_REF_MS = {
    ("tensorflow", "gpu"): TF_GPU_LOAD_MS,
    ("tensorrt", "gpu"): TRT_LOAD_MS,
    ("neuron", "inferentia"): NEURON_LOAD_MS,
}
# Precision of the calibrated ResNet-50 variant of each runtime (its load time's weight bytes).
LOAD_REF_PRECISION = {("neuron", "inferentia"): "bf16"}

# --- the variant matrix ---------------------------------------------------------------------------
TF_GPU_MAX_BATCH = 16
NEURON_MAX_BATCH = 1  # INFaaS's released Inferentia variants
NEURON_BATCHED_MAX_BATCH = 8  # neuron_batched.csv only
FULL_MATRIX = {"resnet50"}  # INFaaS's profiled model: every combination
FULL_TRT = tuple((p, b) for p in ("fp32", "fp16") for b in (1, 4, 8, 16))
FULL_NEURON_CORES = (1, 2, 4)
# Others: two TensorRT engines; TF-GPU where Keras ships the model; 1 and 4 NeuronCores.
TRT = (("fp32", 8), ("fp16", 16))
NEURON_CORES = (1, 4)
# CPU rows of the architectures measure_cpu cannot build: a measured architecture's, scaled.
CPU_SCALED_FROM = {"nasnetmobile": "nasnetlarge", **{f"yolov5{s}": "resnet50" for s in "nsmlx"}}
HARDWARE_ORDER = {"cpu": 0, "gpu": 1, "inferentia": 2}


@dataclass(frozen=True, slots=True)
class Spec:
    """How one variant is built: runtime, hardware, precision, allocation, max batch."""

    framework: str
    hardware: str
    precision: str
    allocation: float
    max_batch: int

    def variant_id(self, arch: str) -> str:
        if self.framework == "tensorrt":
            return f"{arch}-trt-{self.precision}-b{self.max_batch}"
        if self.hardware == "gpu":
            return f"{arch}-{self.framework}-gpu"
        tail = "" if self.max_batch == NEURON_MAX_BATCH else f"-b{self.max_batch}"
        return f"{arch}-neuron-{self.allocation:g}nc{tail}"


def specs(arch: Arch, neuron_max_batches: Sequence[int] = (NEURON_MAX_BATCH,)) -> list[Spec]:
    """The accelerator variants built for one architecture (CPU rows are measured)."""
    full = arch.name in FULL_MATRIX
    out = [Spec("tensorrt", "gpu", p, 1.0, b) for p, b in (FULL_TRT if full else TRT)]
    if arch.keras:
        out.append(Spec("tensorflow", "gpu", "fp32", 1.0, TF_GPU_MAX_BATCH))
    out += [Spec("neuron", "inferentia", "bf16", float(n), mb) for mb in neuron_max_batches
            for n in (FULL_NEURON_CORES if full else NEURON_CORES)]  # fmt: skip
    return out


# --- the performance model ------------------------------------------------------------------------
def work(arch: Arch) -> float:
    """Compute relative to ResNet-50 (GFLOPs ratio)."""
    return arch.gflops / REFERENCE.gflops


def latency_model(arch: Arch, spec: Spec) -> tuple[float, float]:
    """(intercept_ms, slope_ms) of latency(b) = intercept + slope * b."""
    w = work(arch)
    wi = w**ACCEL_INTERCEPT_EXPONENT
    if spec.framework == "tensorrt":
        intercept = TRT_INTERCEPT_MS * wi * (1 + ENGINE_BATCH_PENALTY * math.log2(spec.max_batch / TRT_REF_BATCH))
        slope = TRT_SLOPE_MS * w
        if spec.precision == "fp16":
            intercept, slope = intercept / FP16_INTERCEPT_SPEEDUP, slope / FP16_SLOPE_SPEEDUP
        return intercept, slope
    if spec.hardware == "gpu":  # TensorFlow on the GPU
        slope_ref = TRT_SLOPE_MS * TF_GPU_SLOPE_FACTOR
        return (TF_GPU_B1_MS - slope_ref) * wi, slope_ref * w
    speedup = spec.allocation**NEURON_CORE_EXPONENT
    return (
        NEURON_B1_MS * (1 - NEURON_SLOPE_FRACTION) * wi / speedup,
        NEURON_B1_MS * NEURON_SLOPE_FRACTION * w / speedup,
    )


def weight_mb(arch: Arch, precision: str) -> float:
    return arch.params_m * BYTES[precision]


def load_latency_ms(arch: Arch, spec: Spec) -> float:
    key = (spec.framework, spec.hardware)
    ref_bytes = weight_mb(REFERENCE, LOAD_REF_PRECISION.get(key, "fp32"))
    scale = LOAD_FIXED_FRACTION + (1 - LOAD_FIXED_FRACTION) * weight_mb(arch, spec.precision) / ref_bytes
    return LOAD_REF_MS[key] * scale


def memory_mb(arch: Arch, spec: Spec) -> float:
    factor = TRT_WEIGHT_FACTOR if spec.framework == "tensorrt" else 1.0
    bytes_ratio = BYTES[spec.precision] / BYTES["fp32"]
    activations = ACTIVATION_MB * work(arch) * bytes_ratio * spec.max_batch
    return factor * weight_mb(arch, spec.precision) + activations + OVERHEAD_MB[(spec.framework, spec.hardware)]


def is_calibration_point(arch: Arch, spec: Spec) -> bool:
    if arch is not REFERENCE or (spec.max_batch != NEURON_MAX_BATCH and spec.hardware == "inferentia"):
        return False
    if spec.framework == "tensorrt":
        return spec.precision == "fp32" and spec.max_batch == TRT_REF_BATCH
    return spec.hardware == "gpu" or spec.allocation == 1


# --- output ---------------------------------------------------------------------------------------
def _sig(x: float, digits: int = 4) -> str:
    """``x`` rounded to ``digits`` significant digits, written without an exponent."""
    return f"{float(f'{x:.{digits}g}'):g}"


def read_measured(path: Path = MEASURED_CPU) -> tuple[list[str], list[dict[str, str]]]:
    """The measured CSV's provenance lines (without ``# ``) and its rows, as strings."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run python -m infaas_sim.catalogs.measure_cpu")
    with path.open(newline="", encoding="utf-8") as f:
        lines = f.read().splitlines()
    header = [ln[2:] if ln.startswith("# ") else ln[1:] for ln in lines if ln.startswith("#")]
    body = [ln for ln in lines if not ln.startswith("#")]
    return header, [dict(r) for r in csv.DictReader(body)]


def _cpu_row(row: dict[str, str]) -> dict[str, str]:
    out = {c: row.get(c, "") for c in COLUMNS}
    return out


def scaled_cpu_rows(arch: Arch, measured: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """Modelled CPU rows of an architecture no library here builds: the measured (and fitted)
    rows of ``CPU_SCALED_FROM[arch]``, latency scaled by the GFLOPs ratio, load time and memory
    by the parameter ratio (half of each fixed, as for the accelerators)."""
    ref_name = CPU_SCALED_FROM[arch.name]
    ref = next(a for a in ARCHITECTURES if a.name == ref_name)
    w = arch.gflops / ref.gflops
    size = LOAD_FIXED_FRACTION + (1 - LOAD_FIXED_FRACTION) * arch.params_m / ref.params_m
    out = []
    for row in measured:
        if row["architecture"] != ref_name:
            continue
        pts = [(int(b), float(ms) * w) for b, ms in (x.split(":") for x in row["profile"].split(";") if x)]
        int8 = row["precision"].startswith("int8")
        ref_acc = float(row["accuracy"]) / ref.accuracy  # 1, or the int8 factor measure_cpu applies
        how = row["source"].split(":", 1)[0]  # measured | fitted
        out.append({
            **_cpu_row(row),
            "variant_id": arch.name + row["variant_id"][len(ref_name):],
            "architecture": arch.name, "task": arch.task, "dataset": arch.dataset,
            "accuracy": f"{arch.accuracy * ref_acc:.6g}",
            "load_latency_ms": _sig(float(row["load_latency_ms"]) * size),
            "memory_mb": _sig(float(row["memory_mb"]) * size),
            "latency_intercept_ms": _sig(float(row["latency_intercept_ms"]) * w),
            "latency_slope_ms": _sig(float(row["latency_slope_ms"]) * w),
            "profile": ";".join(f"{b}:{_sig(ms, 6)}" for b, ms in pts),
            "gflops": f"{arch.gflops:g}",
            "source": (
                f"accuracy+params: {arch.facts_source}{' (int8: as measure_cpu models it)' if int8 else ''}; "
                f"GFLOPs: {arch.gflops_source}; latency+load+memory: modelled: {ref_name}'s {how} CPU row "
                f"{row['variant_id']} scaled by GFLOPs ({w:.4g}x) and parameters ({size:.4g}x); not measured: "
                f"no implementation of {arch.name} in torchvision or timm"
            ),
        })  # fmt: skip
    return out


def accelerator_row(arch: Arch, spec: Spec) -> dict[str, str]:
    intercept, slope = latency_model(arch, spec)
    perf = INFAAS if is_calibration_point(arch, spec) else DERIVED
    return {
        "variant_id": spec.variant_id(arch.name),
        "architecture": arch.name,
        "task": arch.task,
        "dataset": arch.dataset,
        "framework": spec.framework,
        "hardware": spec.hardware,
        "precision": spec.precision,
        "allocation": f"{spec.allocation:g}",
        "max_batch": str(spec.max_batch),
        "accuracy": f"{arch.accuracy:g}",
        "load_latency_ms": _sig(load_latency_ms(arch, spec)),
        "memory_mb": _sig(memory_mb(arch, spec)),
        "latency_intercept_ms": _sig(intercept),
        "latency_slope_ms": _sig(slope),
        "profile": "",
        "gflops": f"{arch.gflops:g}",
        "source": f"accuracy+params: {arch.facts_source}; GFLOPs: {arch.gflops_source}; latency+load+memory: {perf}",
        "latency_cv": "",
    }


def _key(row: dict[str, str]) -> tuple[str, int, str, str, float, int]:
    return (row["architecture"], HARDWARE_ORDER[row["hardware"]], row["framework"], row["precision"],
            float(row["allocation"]), int(row["max_batch"]))  # fmt: skip


def rows(batched_neuron: bool = False, measured_path: Path = MEASURED_CPU) -> list[dict[str, str]]:
    """Every catalog row as CSV cells, sorted by architecture then hardware: the measured CPU
    rows, modelled CPU rows for the architectures not measured, modelled accelerator rows
    (with ``batched_neuron``, also the max-batch-8 Neuron variants)."""
    _, measured = read_measured(measured_path)
    have = {r["architecture"] for r in measured}
    missing = [a.name for a in ARCHITECTURES if a.name not in have and a.name not in CPU_SCALED_FROM]
    if missing:
        raise ValueError(f"{measured_path.name} has no rows for {', '.join(missing)}: run measure_cpu")
    out = [_cpu_row(r) for r in measured]
    neuron = (NEURON_MAX_BATCH, NEURON_BATCHED_MAX_BATCH) if batched_neuron else (NEURON_MAX_BATCH,)
    for arch in ARCHITECTURES:
        if arch.name in CPU_SCALED_FROM:
            out += scaled_cpu_rows(arch, measured)
        out += [accelerator_row(arch, spec) for spec in specs(arch, neuron)]
    out.sort(key=_key)
    return out


def render(batched_neuron: bool = False, measured_path: Path = MEASURED_CPU) -> str:
    header, _ = read_measured(measured_path)
    when = next((h for h in header if h.startswith("Date: ")), "Date: unknown.").split(". Command")[0]
    name = "neuron_batched.csv" if batched_neuron else "default.csv"
    notes = [
        f"{name}: written by python -m infaas_sim.catalogs.generate_default (docs/catalog.md: the row families).",
        f"CPU rows: copied from cpu_measured.csv (measured / fitted on {when[6:]}; its header has the machine and"
        " versions); NASNet-Mobile and YOLOv5 CPU rows modelled from measured rows. GPU and Inferentia rows:"
        " modelled, calibrated on INFaaS's ResNet-50 profile. Each row's source column says which.",
        "Inferentia variants are batch 1, as INFaaS's released ones"
        + ("; this catalog adds batched Neuron variants (-b8), modelled." if batched_neuron else
           "; batched Neuron variants: catalog=neuron_batched."),
    ]  # fmt: skip
    buf = io.StringIO()
    for line in notes:
        buf.write(f"# {line}\n")
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(batched_neuron, measured_path))
    return buf.getvalue()


def write(path: Path = OUTPUT, batched_neuron: bool = False) -> int:
    text = render(batched_neuron)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return sum(1 for ln in text.splitlines() if not ln.startswith("#")) - 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the default INFaaS-style ImageNet catalogs.")
    parser.add_argument("--out", type=Path, default=OUTPUT, help=f"default catalog CSV (default: {OUTPUT})")
    parser.add_argument("--batched-out", type=Path, default=BATCHED_OUTPUT,
                        help=f"the catalog with batched Neuron variants (default: {BATCHED_OUTPUT})")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        n = write(args.out)
        m = write(args.batched_out, batched_neuron=True)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {n} variants to {args.out} and {m} to {args.batched_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
