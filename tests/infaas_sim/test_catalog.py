"""The variant catalog: validated loading from CSV and Parquet, the latency model, and the
hot-path lookup of candidates for a requirement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from infaas_sim.catalog import COLUMNS, Catalog
from infaas_sim.errors import CatalogError, ConfigError
from infaas_sim.hardware import HardwareKind
from infaas_sim.query import Level, Requirement
from infaas_sim.variant import Variant, cpu_latency_factor


def _variant(**kw: Any) -> Variant:
    base: dict[str, Any] = dict(
        variant_id="v", architecture="m", task="cls", dataset="ds", framework="fw", hardware=HardwareKind.CPU,
        precision="fp32", allocation=2.0, max_batch=4, accuracy=0.7, load_latency_ms=100.0, memory_mb=100.0,
        latency_intercept_ms=5.0, latency_slope_ms=1.0,
    )  # fmt: skip
    base.update(kw)
    return Variant(**base)


# --- the latency model ----------------------------------------------------------------------------
def test_linear_latency_model() -> None:
    v = _variant(latency_intercept_ms=4.0, latency_slope_ms=2.0, max_batch=8)
    assert [v.latency_ms(b) for b in (1, 4, 8)] == [6.0, 12.0, 20.0]
    assert v.throughput_qps(8) == pytest.approx(400.0)
    assert len(v.latency_by_batch) == 9


def test_profiled_points_are_interpolated_and_extrapolated_with_the_last_slope() -> None:
    v = _variant(profile=((1, 5.0), (4, 11.0), (8, 20.0)), max_batch=10)
    assert v.latency_ms(1) == 5.0 and v.latency_ms(4) == 11.0 and v.latency_ms(8) == 20.0
    assert v.latency_ms(2) == pytest.approx(7.0)
    assert v.latency_ms(6) == pytest.approx(15.5)
    assert v.latency_ms(10) == pytest.approx(24.5)  # 20 + 2 * 9/4
    one = _variant(profile=((2, 8.0),), latency_slope_ms=1.5, max_batch=4)
    assert [one.latency_ms(b) for b in (1, 2, 4)] == [6.5, 8.0, 11.0]


def test_a_latency_model_giving_a_non_positive_latency_is_refused() -> None:
    with pytest.raises(CatalogError, match="non-positive"):
        _variant(latency_intercept_ms=0.0, latency_slope_ms=0.0)
    with pytest.raises(CatalogError, match="max_batch"):
        _variant(max_batch=0)


def test_cpu_latency_factor_follows_amdahl() -> None:
    assert cpu_latency_factor(2, 2) == pytest.approx(1.0)
    assert cpu_latency_factor(2, 4) == pytest.approx((0.1 + 0.9 / 4) / (0.1 + 0.9 / 2))
    assert cpu_latency_factor(2, 1) > 1.0 > cpu_latency_factor(2, 8)
    assert cpu_latency_factor(1, 1000) == pytest.approx(0.1, rel=0.01)  # the serial share


# --- save / load ----------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_save_and_load_round_trip(suffix: str, tiny_catalog: Catalog, tmp_path: Path) -> None:
    extra = _variant(
        variant_id="profiled", profile=((1, 5.5), (4, 11.25)), gflops=4.1, source="measured, see notes", max_batch=6
    )
    cat = Catalog([*tiny_catalog.variants, extra], name="t")
    path = tmp_path / f"cat{suffix}"
    cat.save(path)
    back = Catalog.load(path)
    assert back.variants == cat.variants
    assert [v.latency_by_batch for v in back.variants] == [v.latency_by_batch for v in cat.variants]
    assert back.name == path.name
    assert list(pd.read_csv(path).columns if suffix == ".csv" else pd.read_parquet(path).columns) == COLUMNS


def test_the_default_catalog_loads() -> None:
    cat = Catalog.load("default")
    assert len(cat) > 10
    assert {v.hardware for v in cat.variants} == set(HardwareKind)


def _csv_lines(cat: Catalog, tmp_path: Path) -> list[str]:
    cat.save(tmp_path / "ok.csv")
    return (tmp_path / "ok.csv").read_text().splitlines()


def _write(tmp_path: Path, lines: list[str], name: str = "bad.csv") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def _replace_cell(line: str, col: str, value: str) -> str:
    cells = line.split(",")
    cells[COLUMNS.index(col)] = value
    return ",".join(cells)


@pytest.mark.parametrize(
    ("col", "value", "message"),
    [
        ("accuracy", "1.7", "expected a fraction in [0, 1], got '1.7'"),
        ("hardware", "tpu", "expected one of cpu, gpu, inferentia, got 'tpu'"),
        ("latency_slope_ms", "fast", "'fast'"),
        ("max_batch", "2.5", "expected an integer"),
        ("memory_mb", "-3", "expected a positive number"),
        ("load_latency_ms", "-1", "expected a number >= 0"),
        ("variant_id", "", "missing value"),
        ("latency_intercept_ms", "inf", "expected a finite number"),
        ("profile", "1:5;x", "expected 'batch:ms;batch:ms'"),
        ("profile", "1:nan;2:5", "latencies finite and > 0"),
        ("profile", "1:4;2:inf", "latencies finite and > 0"),
        ("variant_id", "   ", "missing value"),
        ("latency_cv", "-0.1", "expected a number >= 0"),
    ],
)
def test_a_bad_csv_row_names_its_row_and_column(
    col: str, value: str, message: str, tiny_catalog: Catalog, tmp_path: Path
) -> None:
    lines = _csv_lines(tiny_catalog, tmp_path)
    lines[3] = _replace_cell(lines[3], col, value)  # the third variant, on line 4 of the file
    with pytest.raises(CatalogError) as exc:
        Catalog.load(_write(tmp_path, lines))
    text = str(exc.value)
    assert f"bad.csv row 4, column {col!r}" in text
    assert message in text
    assert "\n" not in text


@pytest.mark.parametrize(("col", "value"), [("accuracy", 1.7), ("hardware", "tpu"), ("allocation", 0.0)])
def test_a_bad_parquet_row_names_its_row_and_column(
    col: str, value: Any, tiny_catalog: Catalog, tmp_path: Path
) -> None:
    frame = tiny_catalog.to_frame()
    frame[col] = frame[col].astype(object)
    frame.loc[1, col] = value  # the second row
    p = tmp_path / "bad.parquet"
    frame.to_parquet(p, index=False)
    with pytest.raises(CatalogError, match=rf"bad.parquet row 2, column '{col}'"):
        Catalog.load(p)


def test_a_non_numeric_parquet_cell_names_its_row_and_column(tiny_catalog: Catalog, tmp_path: Path) -> None:
    frame = tiny_catalog.to_frame().astype({"latency_slope_ms": str})  # a string column
    frame.loc[4, "latency_slope_ms"] = "fast"
    p = tmp_path / "bad.parquet"
    frame.to_parquet(p, index=False)
    with pytest.raises(CatalogError, match=r"bad.parquet row 5, column 'latency_slope_ms'.*fast"):
        Catalog.load(p)


def test_a_missing_column_is_named(tiny_catalog: Catalog, tmp_path: Path) -> None:
    p = tmp_path / "cat.csv"
    tiny_catalog.to_frame().drop(columns=["memory_mb", "accuracy"]).to_csv(p, index=False)
    with pytest.raises(CatalogError, match=r"cat.csv: missing column\(s\) accuracy, memory_mb"):
        Catalog.load(p)


def test_optional_columns_may_be_absent(tiny_catalog: Catalog, tmp_path: Path) -> None:
    p = tmp_path / "cat.csv"
    tiny_catalog.to_frame().drop(columns=["profile", "gflops", "source"]).to_csv(p, index=False)
    assert Catalog.load(p).variants == tiny_catalog.variants


def test_a_duplicate_variant_id_is_refused(tiny_catalog: Catalog, tmp_path: Path) -> None:
    lines = _csv_lines(tiny_catalog, tmp_path)
    lines[2] = _replace_cell(lines[2], "variant_id", "cpu-d10")
    with pytest.raises(CatalogError, match="duplicate variant_id 'cpu-d10'"):
        Catalog.load(_write(tmp_path, lines))


def test_a_duplicate_variant_id_names_its_row_and_column(tiny_catalog: Catalog, tmp_path: Path) -> None:
    lines = _csv_lines(tiny_catalog, tmp_path)
    lines[2] = _replace_cell(lines[2], "variant_id", "cpu-d10")
    with pytest.raises(CatalogError, match=r"bad.csv row 3, column 'variant_id'"):
        Catalog.load(_write(tmp_path, lines))


def test_a_bad_row_after_a_comment_line_names_its_line_in_the_file(tiny_catalog: Catalog, tmp_path: Path) -> None:
    lines = _csv_lines(tiny_catalog, tmp_path)
    lines[2] = _replace_cell(lines[2], "accuracy", "1.7")  # line 3 of the file before the comment
    lines.insert(1, "# measured on 2024-01-01")  # the bad row is now on line 4
    with pytest.raises(CatalogError, match=r"bad.csv row 4, column 'accuracy'"):
        Catalog.load(_write(tmp_path, lines))


def test_a_hash_inside_a_field_is_kept(tiny_catalog: Catalog, tmp_path: Path) -> None:
    frame = tiny_catalog.to_frame()
    frame.loc[0, "source"] = "https://example.org/bench#table-2"
    frame.to_csv(tmp_path / "cat.csv", index=False)
    assert Catalog.load(tmp_path / "cat.csv").variants[0].source == "https://example.org/bench#table-2"


def test_a_column_twice_in_the_header_is_refused(tiny_catalog: Catalog, tmp_path: Path) -> None:
    lines = _csv_lines(tiny_catalog, tmp_path)
    lines[0] = lines[0].replace("memory_mb", "accuracy")
    with pytest.raises(CatalogError, match=r"bad\.csv row 1: column\(s\) 'accuracy' appear twice in the header"):
        Catalog.load(_write(tmp_path, lines))


def test_a_header_with_a_byte_order_mark_loads(tiny_catalog: Catalog, tmp_path: Path) -> None:
    lines = _csv_lines(tiny_catalog, tmp_path)
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode())
    assert [v.variant_id for v in Catalog.load(p).variants] == [v.variant_id for v in tiny_catalog.variants]


def test_missing_or_unreadable_files_are_catalog_errors(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="not found"):
        Catalog.load(tmp_path / "nope.csv")
    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(CatalogError, match="could not be read"):
        Catalog.load(tmp_path / "x.parquet")
    (tmp_path / "empty.csv").write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(CatalogError, match="no variants"):
        Catalog.load(tmp_path / "empty.csv")


# --- lookups --------------------------------------------------------------------------------------
def _ids(cat: Catalog, indices: tuple[int, ...]) -> list[str]:
    return [cat.variants[i].variant_id for i in indices]


def task(slo: float, acc: float = 0.0) -> Requirement:
    return Requirement(Level.TASK, "cls", "ds", slo_ms=slo, min_accuracy=acc)


def test_candidates_are_fastest_first(tiny_catalog: Catalog) -> None:
    # Batch 1: gpu-a 2.5, inf-a 3.8, gpu-b 4.0, cpu-batch 6.0, cpu-d10 10.0 ms.
    c = tiny_catalog.candidates(task(100), 1)
    assert _ids(tiny_catalog, c.indices) == ["gpu-a", "inf-a", "gpu-b", "cpu-batch", "cpu-d10"]
    assert c.reason == ""
    lat = [tiny_catalog.variants[i].latency_ms(1) for i in c.indices]
    assert lat == sorted(lat)


def test_candidates_respect_accuracy_slo_and_batch(tiny_catalog: Catalog) -> None:
    assert _ids(tiny_catalog, tiny_catalog.candidates(task(100, acc=0.75), 1).indices) == ["gpu-a", "gpu-b"]
    assert _ids(tiny_catalog, tiny_catalog.candidates(task(3.9), 1).indices) == ["gpu-a", "inf-a"]
    assert _ids(tiny_catalog, tiny_catalog.candidates(task(6.0), 1).indices) == [
        "gpu-a",
        "inf-a",
        "gpu-b",
        "cpu-batch",
    ]  # fmt: skip  (an SLO equal to the latency is met)
    # Batch 8: cpu-d10 (max 1) drops out; gpu-a 6, inf-a 9.4, gpu-b 11, cpu-batch 20 ms.
    assert _ids(tiny_catalog, tiny_catalog.candidates(task(100), 8).indices) == [
        "gpu-a", "inf-a", "gpu-b", "cpu-batch"
    ]  # fmt: skip
    assert _ids(tiny_catalog, tiny_catalog.candidates(task(10), 8).indices) == ["gpu-a", "inf-a"]
    assert _ids(tiny_catalog, tiny_catalog.candidates(task(100), 9).indices) == ["gpu-a", "gpu-b"]


def test_candidates_by_architecture_and_pinned_variant(tiny_catalog: Catalog) -> None:
    arch = Requirement(Level.ARCHITECTURE, "r50", slo_ms=100)
    assert _ids(tiny_catalog, tiny_catalog.candidates(arch, 1).indices) == ["gpu-a", "inf-a"]
    pinned = Requirement(Level.VARIANT, "cpu-batch")
    assert _ids(tiny_catalog, tiny_catalog.candidates(pinned, 8).indices) == ["cpu-batch"]
    assert _ids(tiny_catalog, tiny_catalog.candidates(Requirement(Level.VARIANT, "gpu-a"), 16).indices) == ["gpu-a"]


def test_a_pinned_variant_is_no_candidate_for_a_batch_above_its_max(tiny_catalog: Catalog) -> None:
    # cpu-batch takes at most 8 inputs; the catalog's largest max batch is 16.
    c = tiny_catalog.candidates(Requirement(Level.VARIANT, "cpu-batch"), 9)
    assert c.indices == ()
    assert "takes a batch of 9 inputs" in c.reason


def test_when_nothing_fits_the_reason_names_the_closest_variant(tiny_catalog: Catalog) -> None:
    c = tiny_catalog.candidates(task(1.0), 1)
    assert c.indices == ()
    assert "the closest, gpu-a, takes 2.5 ms" in c.reason
    assert "task cls/ds within 1 ms" in c.reason
    c = tiny_catalog.candidates(task(5.0, acc=0.78), 4)  # gpu-b: 7 ms at batch 4
    assert "the closest, gpu-b, takes 7.0 ms" in c.reason and "accuracy >= 0.78" in c.reason
    c = tiny_catalog.candidates(task(100, acc=0.9), 1)
    assert "the most accurate, gpu-b, reaches 0.800" in c.reason
    c = tiny_catalog.candidates(task(100), 17)
    assert c.indices == () and "takes a batch of 17 inputs" in c.reason
    c = tiny_catalog.candidates(task(100, acc=0.79), 17)  # gpu-b meets the accuracy, not the batch
    assert c.indices == () and "takes a batch of 17" in c.reason


def test_candidates_are_memoised(tiny_catalog: Catalog) -> None:
    assert tiny_catalog.candidates(task(50), 2) is tiny_catalog.candidates(task(50), 2)


def test_unknown_names_are_config_errors(tiny_catalog: Catalog) -> None:
    with pytest.raises(ConfigError, match=r"unknown task det/ds .*known: cls/ds"):
        tiny_catalog.candidates(Requirement(Level.TASK, "det", "ds", slo_ms=10), 1)
    with pytest.raises(ConfigError, match="unknown architecture 'vgg'"):
        tiny_catalog.candidates(Requirement(Level.ARCHITECTURE, "vgg", slo_ms=10), 1)
    with pytest.raises(ConfigError, match="unknown variant 'nope'"):
        tiny_catalog.candidates(Requirement(Level.VARIANT, "nope"), 1)
    with pytest.raises(ConfigError, match="unknown variant 'nope'"):
        tiny_catalog["nope"]
    assert tiny_catalog["gpu-b"].accuracy == 0.8


def test_catalog_indexes(tiny_catalog: Catalog) -> None:
    assert tiny_catalog.tasks == [("cls", "ds")]
    assert tiny_catalog.architectures == ["m", "r101", "r50"]
    assert tiny_catalog.max_batch == 16
    i = tiny_catalog.index_of["cpu-d10"]
    assert tiny_catalog.latency[i, 1] == 10.0 and tiny_catalog.latency[i, 2] == float("inf")
    with pytest.raises(CatalogError, match="duplicate variant_id"):
        Catalog([tiny_catalog.variants[0], tiny_catalog.variants[0]])
    with pytest.raises(CatalogError, match="no variants"):
        Catalog([])


def test_requirements_validate_themselves() -> None:
    with pytest.raises(ConfigError, match="slo_ms must be > 0"):
        task(0)
    with pytest.raises(ConfigError, match="min_accuracy"):
        task(10, acc=1.5)
    with pytest.raises(ConfigError, match="needs slo_ms"):
        Requirement(Level.ARCHITECTURE, "r50")
    with pytest.raises(ConfigError, match="needs a dataset"):
        Requirement(Level.TASK, "cls", slo_ms=10)


# --- CPU core profiles ----------------------------------------------------------------------------
def _cores_catalog() -> Catalog:
    # One model at 2, 4 and 8 cores following latency = 1 + 8 b / cores (Amdahl-like, not p = 0.9),
    # another build of it (max batch 2) at 2 cores, and a second framework at 4 cores twice.
    def at(cores: float, vid: str, max_batch: int = 4, fw: str = "fw") -> Variant:
        return _variant(variant_id=vid, allocation=cores, max_batch=max_batch, framework=fw,
                        latency_intercept_ms=1.0, latency_slope_ms=8.0 / cores)  # fmt: skip

    return Catalog([at(2, "m-2c"), at(4, "m-4c"), at(8, "m-8c"), at(2, "m-2c-b2", max_batch=2),
                    at(4, "x-4c", fw="x"), at(4, "x-4c-bis", fw="x")])  # fmt: skip


def test_a_cpu_models_rows_at_other_core_counts_are_its_core_profile() -> None:
    cat = _cores_catalog()
    assert cat.core_profile("m-2c").cores == (2.0, 4.0, 8.0)
    assert cat.core_profile("m-2c-b2").cores == (2.0,)  # another build: its own profile
    assert cat.core_profile("x-4c").cores == (4.0,)  # two rows at 4 cores: ambiguous, left out
    with pytest.raises(ConfigError, match="not a CPU variant"):
        Catalog([_variant(hardware=HardwareKind.GPU)]).core_profile("v")


def test_cpu_latency_is_the_profiled_row_at_its_cores_and_interpolated_in_inverse_cores_between() -> None:
    cat = _cores_catalog()
    for b in (1, 3, 4):
        assert cat.cpu_latency_ms("m-2c", 4, b) == pytest.approx(cat["m-4c"].latency_ms(b))
        assert cat.cpu_latency_ms("m-8c", 2, b) == pytest.approx(cat["m-2c"].latency_ms(b))
        # 1 + 8 b / c is linear in 1/c: interpolation between 4 and 8 cores is exact at 6 and 5.
        assert cat.cpu_latency_ms("m-4c", 6, b) == pytest.approx(1 + 8 * b / 6)
        assert cat.cpu_latency_ms(cat["m-2c"], 5, b) == pytest.approx(1 + 8 * b / 5)
    # Beyond the profiled range: the nearest point scaled by the Amdahl factor.
    assert cat.cpu_latency_ms("m-2c", 1, 2) == pytest.approx(cat["m-2c"].latency_ms(2) * cpu_latency_factor(2, 1))
    assert cat.cpu_latency_ms("m-2c", 16, 2) == pytest.approx(cat["m-8c"].latency_ms(2) * cpu_latency_factor(8, 16))
    # A single point: Amdahl alone, as before profiles existed.
    assert cat.cpu_latency_ms("m-2c-b2", 4, 1) == pytest.approx(cat["m-2c-b2"].latency_ms(1) * cpu_latency_factor(2, 4))
    with pytest.raises(ConfigError, match=r"batches of 1\.\.4"):
        cat.cpu_latency_ms("m-2c", 4, 5)
    with pytest.raises(ConfigError, match="cores must be > 0"):
        cat.cpu_latency_ms("m-2c", 0, 1)


def test_the_default_catalogs_cpu_rows_agree_with_its_core_profiles() -> None:
    # Measured on 1 and 2 cores, fitted on 4 and 8: one CPU model, resized between its rows.
    cat = Catalog.load("default")
    v1, v2, v4, v8 = (cat[f"alexnet-ort-fp32-opt-{c}c"] for c in (1, 2, 4, 8))
    assert cat.core_profile(v2).cores == (1.0, 2.0, 4.0, 8.0)
    for b in range(1, v2.max_batch + 1):
        assert cat.cpu_latency_ms(v1, 8, b) == pytest.approx(v8.latency_ms(b))
        assert cat.cpu_latency_ms(v8, 2, b) == pytest.approx(v2.latency_ms(b))
        # Between two rows: linear in 1/cores, which is exact for the fitted l(c, b) model.
        six = cat.cpu_latency_ms(v2, 6, b)
        l4, l8 = v4.latency_ms(b), v8.latency_ms(b)
        assert six == pytest.approx(l4 + (l8 - l4) * (1 / 6 - 1 / 4) / (1 / 8 - 1 / 4))
        # Beyond the rows: Amdahl's law with the simulator's parallel share, from the nearest.
        assert cat.cpu_latency_ms(v2, 16, b) == pytest.approx(v8.latency_ms(b) * cpu_latency_factor(8, 16))
