"""The profiler: catalog rows the simulator loads, with measured latencies, load times,
memory and accuracies (measured or declared, marked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from infaas_sim.catalog import Catalog
from infaas_sim.errors import CatalogError, ConfigError
from infaas_sim.hardware import HardwareKind
from infaas_sim.profiling.build import main
from infaas_sim.profiling.generate import GeneratedVariant
from infaas_sim.profiling.profile import (
    MONOTONE_TOLERANCE,
    fit_line,
    profile_variant,
    profile_warnings,
    write_catalog,
)
from infaas_sim.realtime import ARTIFACT_COLUMNS, load_artifacts


def test_the_simulator_loads_the_profiled_catalog(built: Any) -> None:
    cat = Catalog.load(built.catalog)
    assert len(cat) == len(built.report.variants)
    assert set(cat.tasks) == {("digit-classification", "digits"), ("image-classification", "synthetic-images")}
    v = cat["resnet-tiny-ort-fp32-opt-1c"]
    assert v.hardware is HardwareKind.CPU and v.allocation == 1 and v.max_batch == 4
    assert [b for b, _ in v.profile] == [1, 2, 3, 4]  # every batch size measured
    assert all(ms > 0 for _, ms in v.profile) and v.load_latency_ms > 0 and v.memory_mb > 0
    # A conv net's batch of 4 takes longer than a batch of 1 (the work is 4x).
    assert v.latency_ms(4) > 1.5 * v.latency_ms(1)


def test_accuracy_is_measured_or_declared_and_marked(built: Any) -> None:
    frame = pd.read_csv(built.catalog)
    assert set(ARTIFACT_COLUMNS) <= set(frame.columns)
    digits = frame[frame["architecture"] == "digits-mlp-s"]
    resnet = frame[frame["architecture"] == "resnet-tiny"]
    assert (digits["accuracy_source"] == "measured").all() and (digits["accuracy"] > 0.9).all()
    assert (resnet["accuracy_source"] == "declared").all() and (resnet["accuracy"] == 0.60).all()
    assert resnet["source"].str.contains("accuracy declared").all()
    # The p99 column is at least the median at every batch size.
    for _, row in frame.iterrows():
        p50 = dict(x.split(":") for x in row["profile"].split(";"))
        p99 = dict(x.split(":") for x in row["profile_p99"].split(";"))
        assert all(float(p99[b]) >= float(p50[b]) for b in p50)
        assert row["latency_cv"] >= 0


def test_artifacts_resolve_next_to_the_catalog(built: Any) -> None:
    arts = load_artifacts(built.catalog)
    assert set(arts) == {v.variant_id for v in built.report.variants}
    assert all(a.path.is_file() and a.backend == "onnxruntime" for a in arts.values())
    assert arts["resnet-tiny-ort-fp32-2c"].allocation == 2.0


def test_fit_line_is_least_squares_and_non_negative() -> None:
    assert fit_line([(1, 3.0), (2, 5.0), (4, 9.0)]) == pytest.approx((1.0, 2.0))
    icpt, slope = fit_line([(1, 1.0), (2, 3.5), (3, 6.0)])  # would give a negative intercept
    assert icpt == 0.0 and slope > 0
    assert fit_line([(1, 4.0), (2, 3.0)])[1] == 0.0  # never a negative slope
    assert fit_line([(8, 5.0)]) == (5.0, 0.0)


def test_profiling_arguments_are_checked(built: Any) -> None:
    gv = next(v for v in built.report.variants if v.variant_id == "digits-mlp-s-ort-fp32-1c")
    model = built.models["digits-mlp-s"]
    with pytest.raises(ConfigError, match="repeats"):
        profile_variant(gv, model, built.folder, repeats=1)
    with pytest.raises(ConfigError, match="batch sizes"):
        profile_variant(gv, model, built.folder, batches=[1, 9])
    prof = profile_variant(gv, model, built.folder, batches=[2], warmup=0, repeats=3)
    assert [b for b, _ in prof.p50_ms] == [2] and prof.accuracy > 0.9


def test_write_catalog_refuses_rows_the_simulator_rejects(built: Any, tmp_path: Path) -> None:
    row = pd.read_csv(built.catalog).iloc[0].to_dict()
    row["accuracy"] = 1.5
    with pytest.raises(CatalogError, match="accuracy"):
        write_catalog([row], tmp_path / "bad.csv")
    assert not (tmp_path / "bad.csv").exists()


def test_a_missing_artifact_is_a_clear_error(built: Any, tmp_path: Path) -> None:
    row = pd.read_csv(built.catalog).iloc[0].to_dict()
    write_catalog([row], tmp_path / "catalog.csv")  # the artifact file is not in tmp_path
    with pytest.raises(CatalogError, match="not found next to the catalog"):
        load_artifacts(tmp_path / "catalog.csv")
    with pytest.raises(CatalogError, match="not a profiled catalog"):
        load_artifacts(Path(__file__).parents[3] / "infaas_sim" / "catalogs" / "default.csv")


@pytest.mark.parametrize("escape", ["../../etc/passwd", "/etc/passwd", "sub/../../outside.onnx"])
def test_an_artifact_path_outside_the_catalogs_folder_is_refused(built: Any, tmp_path: Path, escape: str) -> None:
    row = pd.read_csv(built.catalog).iloc[0].to_dict()
    row["artifact"] = escape
    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    (tmp_path / "a" / "outside.onnx").write_bytes(b"x")
    write_catalog([row], folder / "catalog.csv")
    with pytest.raises(CatalogError, match=r"catalog\.csv row 2, column 'artifact': .* resolves outside the catalog"):
        load_artifacts(folder / "catalog.csv")
    # An allowed root is searched too.
    if escape == "sub/../../outside.onnx":
        assert load_artifacts(folder / "catalog.csv", roots=[tmp_path / "a"])


def test_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--family", "digits-linear", "--out", str(tmp_path), "--cores", "1", "--max-batch", "2",
               "--precisions", "fp32", "--repeats", "3", "--warmup", "0"])  # fmt: skip
    assert rc == 0
    assert "catalog:" in capsys.readouterr().out
    assert len(Catalog.load(tmp_path / "catalog.csv")) == 1
    assert main(["--family", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown built-in model" in capsys.readouterr().err


def test_generated_variant_is_a_frozen_record() -> None:
    gv = GeneratedVariant("a", "b", "t", "d", "onnxruntime", "cpu", "fp32", 1.0, 4, "f.onnx")
    with pytest.raises(AttributeError):
        gv.max_batch = 8  # type: ignore[misc]


# --- noisy profiles: reported with the variant and batch, re-measured ----------------------------
def test_spread_above_the_threshold_is_reported_as_noisy() -> None:
    samples = {1: np.array([10.0, 10.1, 9.9]), 2: np.array([10.0, 20.0, 15.0])}
    found = profile_warnings("v", samples, cv_threshold=0.1)
    assert [(w.variant_id, w.batch, w.kind) for w in found] == [("v", 2, "noisy")]
    assert found[0].describe().startswith("v batch 2: run-to-run CV 0.27")
    assert profile_warnings("v", samples, cv_threshold=0.5) == []


def test_a_larger_batch_measured_faster_is_reported() -> None:
    samples = {1: np.array([5.0] * 3), 2: np.array([12.0] * 3), 3: np.array([9.0] * 3)}
    (w,) = profile_warnings("v", samples)
    assert (w.batch, w.kind) == (3, "non_monotone") and "batch 2's 12 ms" in w.detail
    # Within the tolerance (a flat latency, as a tiny model's) is not flagged.
    flat = {1: np.array([5.0] * 3), 2: np.array([5.0 * (1 - MONOTONE_TOLERANCE / 2)] * 3)}
    assert profile_warnings("v", flat) == []


class _ScriptedRunner:
    """A runner whose batch times come from a script per batch size (seconds)."""

    def __init__(self, script: dict[int, list[float]]) -> None:
        self.script = {b: list(ts) for b, ts in script.items()}

    def run_batch(self, n: int) -> float:
        ts = self.script.get(n)
        return ts.pop(0) if ts else 0.001 * n

    def close(self) -> None:
        pass


def _profile_scripted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, retries: int) -> Any:
    from infaas_sim.profiling import profile as prof_mod
    from infaas_sim.profiling.zoo import RegisteredModel

    (tmp_path / "m.onnx").write_bytes(b"x")
    gv = GeneratedVariant("m-1c", "m", "t", "d", "onnxruntime", "cpu", "fp32", 1.0, 2, "m.onnx")
    model = RegisteredModel("m", "t", "d", b"", np.zeros((1, 2), np.float32), declared_accuracy=0.5)
    # Batch 2's first three timed runs are noisy; anything measured after them is clean.
    runner = _ScriptedRunner({2: [0.002, 0.002, 0.006]})
    monkeypatch.setattr(prof_mod, "open_runner", lambda *a, **k: runner)
    return profile_variant(gv, model, tmp_path, warmup=0, repeats=3, load_repeats=1, retries=retries)


def test_a_noisy_batch_is_measured_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kept = _profile_scripted(tmp_path, monkeypatch, retries=0)
    assert [(w.batch, w.kind) for w in kept.warnings] == [(2, "noisy")]
    again = _profile_scripted(tmp_path, monkeypatch, retries=1)
    assert again.warnings == ()
    assert dict(again.p50_ms)[2] == pytest.approx(2.0)
    assert again.repeats == 3 + 3 + 3  # batch 1, batch 2, batch 2 again


def test_a_time_budget_sets_the_repeats_between_min_and_max(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from infaas_sim.profiling import profile as prof_mod
    from infaas_sim.profiling.zoo import RegisteredModel

    (tmp_path / "m.onnx").write_bytes(b"x")
    gv = GeneratedVariant("m-1c", "m", "t", "d", "onnxruntime", "cpu", "fp32", 1.0, 2, "m.onnx")
    model = RegisteredModel("m", "t", "d", b"", np.zeros((1, 2), np.float32), declared_accuracy=0.5)
    monkeypatch.setattr(prof_mod, "open_runner", lambda *a, **k: _ScriptedRunner({}))
    # 1 ms and 2 ms per run: a 5 ms budget buys 5 runs of batch 1, the minimum 3 of batch 2.
    p = profile_variant(gv, model, tmp_path, warmup=1, repeats=10, load_repeats=1, budget_s=0.005, min_repeats=3)
    assert p.repeats == 5 + 3
    with pytest.raises(ConfigError, match="budget_s"):
        profile_variant(gv, model, tmp_path, budget_s=0)
