"""The measured CPU catalog (infaas_sim/catalogs/cpu_measured.csv) and the script that writes it
(infaas_sim/catalogs/measure_cpu.py): schema and provenance of the checked-in file, the
core-scaling fit, and one tiny architecture measured end to end."""

from __future__ import annotations

import importlib.util
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from infaas_sim.catalog import Catalog
from infaas_sim.catalogs import measure_cpu as mc
from infaas_sim.catalogs.generate_default import ARCHITECTURES, Arch
from infaas_sim.hardware import HardwareKind

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_TORCHVISION = HAS_TORCH and importlib.util.find_spec("torchvision") is not None


@pytest.fixture(scope="module")
def measured() -> Catalog:
    return Catalog.load("cpu_measured")


def test_provenance_header_names_machine_versions_date_and_command() -> None:
    header = [ln for ln in mc.OUTPUT.read_text().splitlines() if ln.startswith("#")]
    text = "\n".join(header)
    assert re.search(r"^# CPU: .+; \d+ logical CPU\(s\)", text, re.M)
    assert re.search(r"onnxruntime \d+\.\d+", text)
    assert re.search(r"torch \d+\.\d+", text) and "torchvision" in text and "timm" in text
    date = r"^# Date: \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC\. Command: python -m infaas_sim\.catalogs\.measure_cpu"
    assert re.search(date, text, re.M)
    assert "a*b/c + beta*b + g/c + z" in text
    assert "Noisy profiles left after re-measuring:" in text


def test_every_measurable_architecture_precision_and_core_count_is_there_or_named_failed(
    measured: Catalog,
) -> None:
    groups: dict[tuple[str, str], set[float]] = defaultdict(set)
    for v in measured.variants:
        assert v.hardware is HardwareKind.CPU and v.framework == "onnxruntime"
        groups[(v.architecture, v.precision)].add(v.allocation)
    assert {a for a, _ in groups} == set(mc.BUILDS)
    header = "\n".join(ln for ln in mc.OUTPUT.read_text().splitlines() if ln.startswith("#"))
    for arch in mc.BUILDS:
        for precision in mc.PRECISIONS:
            cores = groups.get((arch, precision))
            if cores is None:  # a variant the runtime could not run: the header says which and why
                assert f"{arch}-ort-{precision}-1c (" in header, (arch, precision)
            else:
                assert cores == {1.0, 2.0, 4.0, 8.0}, (arch, precision)
    assert sum(len(c) for c in groups.values()) >= 0.9 * 4 * len(mc.BUILDS) * len(mc.PRECISIONS)


def test_measured_rows_say_measured_and_fitted_rows_say_fitted(measured: Catalog) -> None:
    for v in measured.variants:
        if v.allocation in mc.MEASURED_CORES:
            assert v.source.startswith("measured: onnxruntime on "), v.variant_id
            assert [b for b, _ in v.profile] == list(range(1, v.max_batch + 1)), v.variant_id
            assert v.latency_cv > 0, v.variant_id  # repeated runs never agree to the nanosecond
        else:
            assert v.allocation in mc.FITTED_CORES
            assert v.source.startswith("fitted: l(c,b) = a*b/c + beta*b + g/c + z"), v.variant_id
            assert "measured" not in v.source.split(";")[0]
        assert v.load_latency_ms > 0 and v.memory_mb > 0


def test_accuracy_is_the_published_figure_and_int8_is_marked_modelled(measured: Catalog) -> None:
    published = {a.name: a.accuracy for a in ARCHITECTURES}
    for v in measured.variants:
        if v.precision.startswith("int8"):
            assert v.accuracy == pytest.approx(published[v.architecture] * mc.INT8_ACCURACY_FACTOR, abs=1e-6)
            assert "int8 top-1 modelled" in v.source
        else:
            assert v.accuracy == published[v.architecture]


def test_fitted_rows_follow_the_fit_of_the_measured_ones(measured: Catalog) -> None:
    # Refitting the measured 1- and 2-core medians gives the 4- and 8-core rows back.
    for arch in ("resnet50", "mobilenetv2"):
        for precision in mc.PRECISIONS:
            rows = {v.allocation: v for v in measured.variants if v.architecture == arch and v.precision == precision}
            points = [(c, b, ms) for c in mc.MEASURED_CORES for b, ms in rows[c].profile]
            fit = mc.fit_cores(points)
            for c in mc.FITTED_CORES:
                for b, ms in rows[c].profile:
                    assert ms == pytest.approx(mc.fitted_latency(fit, c, b), rel=1e-4)
            # More cores never slower in the fitted model (its terms are non-negative).
            assert rows[8].latency_ms(1) <= rows[4].latency_ms(1)


def test_fit_recovers_a_known_model() -> None:
    truth = {"a": 9.0, "beta": 1.5, "g": 4.0, "z": 0.5}
    points = [(c, b, mc.fitted_latency(truth, c, b)) for c in (1, 2) for b in range(1, 9)]
    fit = mc.fit_cores(points)
    for k, v in truth.items():
        assert fit[k] == pytest.approx(v, rel=1e-6, abs=1e-9)


def test_fit_needs_two_core_counts() -> None:
    with pytest.raises(ValueError, match="two core counts"):
        mc.fit_cores([(1, b, float(b)) for b in range(1, 5)])


def test_unknown_or_unbuildable_architecture_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert mc.main(["--archs", "nasnetmobile,nope", "--work", "/nonexistent/never-made"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "nasnetmobile (no implementation in torchvision or timm)" in err
    assert "nope (not in the default catalog)" in err


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (pip install -e '.[torch]')")
def test_one_tiny_architecture_measured_end_to_end(tmp_path: Path) -> None:
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10),
    )  # fmt: skip
    arch = Arch("tinynet", 0.5, 0.001, 0.0002, False, False, "test", "test")
    res = mc.measure_arch(arch, module, 16, tmp_path / "tiny", cores=(1, 2), max_batch=3,
                          precisions=("fp32", "int8-static"), budget_s=0.01, repeats=4)  # fmt: skip
    assert not res["failed"]
    assert sorted(r["variant_id"] for r in res["rows"]) == [
        "tinynet-ort-fp32-1c", "tinynet-ort-fp32-2c", "tinynet-ort-int8-static-1c", "tinynet-ort-int8-static-2c",
    ]  # fmt: skip
    rows = mc.finish_rows([res], "test CPU", archs=[arch])
    assert len(rows) == 8  # 4 measured + 2 precisions x 2 fitted core counts
    out = mc.write_csv(rows, mc.provenance("test", [res], __import__("datetime").datetime(2026, 1, 1)),
                       tmp_path / "m.csv")  # fmt: skip
    cat = Catalog.load(out)
    for vid in ("tinynet-ort-fp32-4c", "tinynet-ort-int8-static-8c"):
        assert cat[vid].source.startswith("fitted:")
    v = cat["tinynet-ort-fp32-1c"]
    assert v.source.startswith("measured: onnxruntime on test CPU, 1 intra-op thread(s)")
    assert [b for b, _ in v.profile] == [1, 2, 3] and all(ms > 0 for _, ms in v.profile)
    assert v.load_latency_ms > 0 and v.memory_mb > 0 and v.latency_cv >= 0
    assert cat["tinynet-ort-int8-static-1c"].accuracy == pytest.approx(0.5 * mc.INT8_ACCURACY_FACTOR)
    assert out.read_text().startswith("# CPU rows of the default catalog")


@pytest.mark.skipif(not HAS_TORCHVISION, reason="torchvision is not installed (docs/catalog.md has the install line)")
def test_builds_come_from_torchvision_with_random_weights() -> None:
    import torch

    module = mc.build_module(mc.BUILDS["resnet18"])
    with torch.no_grad():
        out = module(torch.from_numpy(np.zeros((1, 3, 64, 64), dtype=np.float32)))
    assert tuple(out.shape) == (1, 1000)
