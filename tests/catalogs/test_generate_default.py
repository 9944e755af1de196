"""The default catalog and its generator (infaas_sim/catalogs/generate_default.py): measured CPU
rows, modelled accelerator rows calibrated on INFaaS's ResNet-50 profile, each with its source."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import pytest

from infaas_sim.catalog import Catalog
from infaas_sim.catalogs import generate_default as gen
from infaas_sim.catalogs import measure_cpu as mc
from infaas_sim.hardware import HardwareKind
from infaas_sim.query import Level, Requirement
from infaas_sim.variant import Variant

ARCHITECTURES = (
    *("alexnet", "densenet121", "densenet169", "densenet201", "inceptionv3", "inception-resnetv2"),
    *("mobilenetv1", "mobilenetv2", "nasnetmobile", "nasnetlarge", "resnet50", "resnet101", "resnet152"),
    *("resnet50v2", "resnet101v2", "resnet152v2", "resnext50", "resnext101", "vgg16", "vgg19", "xception"),
)
ID_FORMS = re.compile(
    r"[a-z0-9-]+-ort-(fp32|fp32-opt|int8-static)-\d+c|[a-z0-9-]+-trt-fp(16|32)-b\d+"
    r"|[a-z0-9-]+-tensorflow-gpu|[a-z0-9-]+-neuron-\dnc"
)
SOURCES = re.compile(r".*latency\+load\+memory: (modelled: |calibrated on INFaaS)|^measured: onnxruntime on |^fitted: ")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load("default")


def test_committed_csvs_are_what_the_generator_writes(tmp_path: Path) -> None:
    out, batched = tmp_path / "default.csv", tmp_path / "nb.csv"
    assert gen.main(["--out", str(out), "--batched-out", str(batched)]) == 0
    assert out.read_bytes() == gen.OUTPUT.read_bytes(), "regenerate: python -m infaas_sim.catalogs.generate_default"
    assert batched.read_bytes() == gen.BATCHED_OUTPUT.read_bytes()


def test_without_the_measured_csv_the_generator_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match="measure_cpu"):
        gen.rows(measured_path=missing)


def test_generator_runs_as_a_module(tmp_path: Path) -> None:
    out = tmp_path / "d.csv"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "infaas_sim.catalogs.generate_default",
            "--out",
            str(out),
            "--batched-out",
            str(tmp_path / "nb.csv"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "variants" in done.stdout
    assert out.read_text() == gen.render()


def test_resnet50_calibration_points_are_exact(catalog: Catalog) -> None:
    trt = catalog["resnet50-trt-fp32-b8"]
    assert (trt.framework, trt.hardware, trt.precision, trt.max_batch) == ("tensorrt", HardwareKind.GPU, "fp32", 8)
    assert (trt.latency_intercept_ms, trt.latency_slope_ms) == (2.71, 1.19)
    assert (trt.load_latency_ms, trt.memory_mb) == (1146.0, 92.0)
    # (variant, load ms, batch-1 ms)
    points = [
        ("resnet50-tensorflow-gpu", 1308.0, 7.1),
        ("resnet50-neuron-1nc", 3555.0, 22.0),
    ]
    for vid, load_ms, b1_ms in points:
        v = catalog[vid]
        assert v.load_latency_ms == load_ms, vid
        assert v.latency_ms(1) == pytest.approx(b1_ms, abs=1e-9), vid
        assert not v.profile
        assert "INFaaS code" in v.source
    assert catalog["resnet50-neuron-1nc"].allocation == 1


def test_scale_and_coverage(catalog: Catalog) -> None:
    classifiers = [v for v in catalog.variants if v.task == "image-classification"]
    assert 350 <= len(classifiers) <= 450
    assert set(ARCHITECTURES) <= set(catalog.architectures)
    detectors = [v for v in catalog.variants if v.task == "object-detection"]
    assert {v.architecture for v in detectors} == {f"yolov5{s}" for s in "nsmlx"}
    assert {v.dataset for v in detectors} == {"coco"}
    kinds: dict[str, set[HardwareKind]] = defaultdict(set)
    for v in catalog.variants:
        kinds[v.architecture].add(v.hardware)
        assert (v.task, v.dataset) in {("image-classification", "imagenet"), ("object-detection", "coco")}
        assert ID_FORMS.fullmatch(v.variant_id), v.variant_id
        assert v.variant_id.startswith(v.architecture + "-")
        assert v.gflops > 0 and "GFLOPs:" in v.source
    for arch in ARCHITECTURES:
        assert kinds[arch] == set(HardwareKind), arch
    frameworks = {(v.framework, v.hardware) for v in catalog.variants}
    assert frameworks == {("onnxruntime", HardwareKind.CPU), ("tensorrt", HardwareKind.GPU),
                          ("tensorflow", HardwareKind.GPU), ("neuron", HardwareKind.INFERENTIA)}  # fmt: skip
    assert {v.max_batch for v in catalog.variants if v.framework == "tensorrt"} >= {1, 4, 8, 16}
    assert {v.allocation for v in catalog.variants if v.hardware is HardwareKind.CPU} == {1, 2, 4, 8}
    assert {v.precision for v in catalog.variants if v.hardware is HardwareKind.CPU} == set(mc.PRECISIONS)
    assert {v.allocation for v in catalog.variants if v.hardware is HardwareKind.INFERENTIA} == {1, 2, 4}


def test_every_row_says_where_its_numbers_come_from(catalog: Catalog) -> None:
    counts: dict[str, int] = defaultdict(int)
    for v in catalog.variants:
        assert SOURCES.match(v.source), (v.variant_id, v.source)
        head = v.source.split(":", 1)[0]
        if v.hardware is HardwareKind.CPU:
            if v.architecture in gen.CPU_SCALED_FROM:
                assert "modelled: " in v.source and "not measured" in v.source, v.variant_id
            else:
                assert head in ("measured", "fitted"), v.variant_id
                assert head == ("measured" if v.allocation in mc.MEASURED_CORES else "fitted"), v.variant_id
        else:
            assert "modelled: " in v.source or "calibrated on INFaaS" in v.source, v.variant_id
        counts[head] += 1
    assert counts["measured"] >= 100 and counts["fitted"] >= 100


def test_measured_cpu_rows_are_copied_with_their_spread(catalog: Catalog) -> None:
    measured = Catalog.load("cpu_measured")
    for m in measured.variants:
        v = catalog[m.variant_id]
        assert (v.profile, v.load_latency_ms, v.memory_mb, v.latency_cv, v.accuracy, v.source) == (
            m.profile, m.load_latency_ms, m.memory_mb, m.latency_cv, m.accuracy, m.source)  # fmt: skip
    # The modelled accelerator rows have no measured spread: deterministic in simulation.
    assert all(v.latency_cv == 0 for v in catalog.variants if v.hardware is not HardwareKind.CPU)


def test_inferentia_variants_are_batch_1_and_batched_ones_live_in_neuron_batched(catalog: Catalog) -> None:
    assert {v.max_batch for v in catalog.variants if v.hardware is HardwareKind.INFERENTIA} == {1}
    batched = Catalog.load("neuron_batched")
    extra = {v.variant_id for v in batched.variants} - {v.variant_id for v in catalog.variants}
    assert extra and all(vid.endswith("-b8") for vid in extra)
    for vid in extra:
        v, one = batched[vid], batched[vid.removesuffix("-b8")]
        assert v.hardware is HardwareKind.INFERENTIA and v.max_batch == 8 and "modelled" in v.source
        assert v.latency_ms(1) == pytest.approx(one.latency_ms(1))
        assert v.throughput_qps(8) > one.throughput_qps(1)  # batching pays on a NeuronCore
    assert {v.variant_id for v in catalog.variants} <= {v.variant_id for v in batched.variants}


def test_unmeasured_architectures_scale_a_measured_ones_cpu_rows(catalog: Catalog) -> None:
    for arch, ref in gen.CPU_SCALED_FROM.items():
        a = next(x for x in gen.ARCHITECTURES if x.name == arch)
        r = next(x for x in gen.ARCHITECTURES if x.name == ref)
        for c in (1, 8):
            v, rv = catalog[f"{arch}-ort-fp32-opt-{c}c"], catalog[f"{ref}-ort-fp32-opt-{c}c"]
            for b in range(1, v.max_batch + 1):
                assert v.latency_ms(b) == pytest.approx(rv.latency_ms(b) * a.gflops / r.gflops, rel=1e-4)


def _batches(*vs: Variant) -> range:
    return range(1, min(v.max_batch for v in vs) + 1)


def test_more_cores_or_neuroncores_are_faster(catalog: Catalog) -> None:
    groups: dict[tuple[str, str, str, HardwareKind], list[Variant]] = defaultdict(list)
    for v in catalog.variants:
        if v.hardware is not HardwareKind.GPU:
            groups[(v.architecture, v.framework, v.precision, v.hardware)].append(v)
    checked = 0
    for vs in groups.values():
        vs.sort(key=lambda v: v.allocation)
        for small, big in pairwise(vs):
            if big.allocation <= 4 and big.hardware is HardwareKind.CPU:
                # 1 vs 2 cores is measured (below; ONNX Runtime's threads can lose on small inputs),
                # 2 measured vs 4 fitted compares a measurement with a smoothing of it
                continue
            checked += 1
            assert all(big.latency_ms(b) <= small.latency_ms(b) for b in _batches(small, big)), big.variant_id
    assert checked >= 100
    # Measured: two threads beat one on the large models at every batch, by about 2x at most.
    for arch in ("resnet50", "vgg16", "densenet121"):
        one, two = catalog[f"{arch}-ort-fp32-opt-1c"], catalog[f"{arch}-ort-fp32-opt-2c"]
        for b in _batches(one, two):
            assert 1.0 < one.latency_ms(b) / two.latency_ms(b) < 2.2, (arch, b)  # (2 cores share an L3)


def test_fp16_engines_are_faster_than_fp32(catalog: Catalog) -> None:
    pairs = 0
    for arch in ARCHITECTURES:
        trt = [v for v in catalog.variants if v.architecture == arch and v.framework == "tensorrt"]
        for h in (v for v in trt if v.precision == "fp16"):
            for f in (v for v in trt if v.precision == "fp32"):
                pairs += 1
                assert all(h.latency_ms(b) < f.latency_ms(b) for b in _batches(h, f)), (h.variant_id, f.variant_id)
                assert h.memory_mb < f.memory_mb or h.max_batch > f.max_batch
    assert pairs >= len(ARCHITECTURES)
    assert catalog["resnet50-trt-fp16-b8"].latency_slope_ms == pytest.approx(1.19 / 2, rel=1e-3)


def test_larger_engines_serve_more_per_second(catalog: Catalog) -> None:
    engines = [catalog[f"resnet50-trt-fp32-b{b}"] for b in (1, 4, 8, 16)]
    qps = [v.throughput_qps(v.max_batch) for v in engines]
    assert qps == sorted(qps) and len(set(qps)) == 4
    assert [v.memory_mb for v in engines] == sorted(v.memory_mb for v in engines)


def test_more_gflops_is_never_faster_on_the_same_modelled_configuration(catalog: Catalog) -> None:
    # A property of the accelerator model only: measured CPU rows need not follow GFLOPs
    # (DenseNet's 2.8 GFLOPs run slower than ResNet-34's 3.7 on a CPU).
    configs: dict[tuple[object, ...], list[Variant]] = defaultdict(list)
    for v in catalog.variants:
        if v.hardware is not HardwareKind.CPU:
            configs[(v.framework, v.hardware, v.precision, v.allocation, v.max_batch)].append(v)
    for vs in configs.values():
        vs.sort(key=lambda v: v.gflops)
        for lo, hi in pairwise(vs):
            for b in (1, lo.max_batch):
                assert hi.latency_ms(b) >= lo.latency_ms(b), (lo.variant_id, hi.variant_id, b)
    for cfg in ("trt-fp32-b8", "neuron-1nc", "tensorflow-gpu"):
        chain = [catalog[f"{a}-{cfg}"].latency_ms(1) for a in ("mobilenetv2", "resnet50", "resnet101", "resnet152",
                                                               "vgg19", "nasnetlarge")]  # fmt: skip
        assert chain == sorted(chain) and len(set(chain)) == len(chain), cfg


def test_load_and_memory_grow_with_model_size(catalog: Catalog) -> None:
    for cfg in ("trt-fp32-b8", "neuron-1nc", "ort-fp32-opt-2c"):
        small, mid, big = (catalog[f"{a}-{cfg}"] for a in ("mobilenetv2", "resnet50", "vgg19"))
        assert small.load_latency_ms < mid.load_latency_ms < big.load_latency_ms
        assert small.memory_mb < mid.memory_mb < big.memory_mb


def test_accuracy_follows_the_sources(catalog: Catalog) -> None:
    acc = {a: catalog[f"{a}-ort-fp32-2c"].accuracy for a in ARCHITECTURES}
    assert acc["resnet152"] > acc["resnet101"] > acc["resnet50"] > acc["mobilenetv2"] > acc["alexnet"]
    assert acc["resnet152v2"] > acc["resnet101v2"] > acc["resnet50v2"]
    assert acc["densenet201"] > acc["densenet169"] > acc["densenet121"]
    assert acc["resnext101"] > acc["resnext50"]
    assert max(acc, key=acc.__getitem__) == "nasnetlarge"
    assert acc["resnet50"] == 0.749 and acc["alexnet"] == 0.56522  # Keras table; torchvision
    for a in ARCHITECTURES:  # one accuracy per architecture, int8 below it (modelled, marked)
        fp32 = {v.accuracy for v in catalog.variants if v.architecture == a and not v.precision.startswith("int8")}
        int8 = {v.accuracy for v in catalog.variants if v.architecture == a and v.precision.startswith("int8")}
        assert fp32 == {acc[a]} and len(int8) <= 1, a  # no int8 where quantisation failed (the CSV says)
        assert all(x == pytest.approx(acc[a] * mc.INT8_ACCURACY_FACTOR, abs=1e-6) for x in int8), a


def test_candidates_gpu_for_10ms_and_nothing_for_half_a_millisecond(catalog: Catalog) -> None:
    tight = catalog.candidates(Requirement(Level.TASK, "image-classification", "imagenet", slo_ms=10.0), 1)
    assert tight.indices
    assert any(catalog.variants[i].hardware is HardwareKind.GPU for i in tight.indices)
    assert all(catalog.variants[i].latency_ms(1) <= 10.0 for i in tight.indices)
    r50 = catalog.candidates(Requirement(Level.ARCHITECTURE, "resnet50", slo_ms=10.0), 1)
    assert "resnet50-trt-fp32-b8" in {catalog.variants[i].variant_id for i in r50.indices}
    none = catalog.candidates(Requirement(Level.TASK, "image-classification", "imagenet", slo_ms=0.5), 1)
    assert not none.indices and "no variant meets" in none.reason


def test_loose_slos_have_cpu_choices(catalog: Catalog) -> None:
    # INFaaS looks at CPU variants first for SLOs over 100 ms: the mix3 workload's apps have them.
    for slo, accuracy in ((200.0, 0.76), (2000.0, 0.78)):
        req = Requirement(Level.TASK, "image-classification", "imagenet", slo_ms=slo, min_accuracy=accuracy)
        found = catalog.candidates(req, 1).indices
        assert any(catalog.variants[i].hardware is HardwareKind.CPU for i in found), slo
