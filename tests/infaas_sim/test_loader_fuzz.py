"""Fuzzing the two file loaders a user feeds by hand, the trace reader and the catalog reader:
whatever the bytes, each either loads or raises the project's own one-line error (a
TraceError / CatalogError naming the file), never another exception. Seeded (derandomized),
a few hundred examples each."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infaas_sim.catalog import COLUMNS, Catalog
from infaas_sim.errors import CatalogError, TraceError
from traces.replay import FORMATS, read_trace_file

FUZZ = settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Tokens that have broken loaders before: empty and blank cells, non-finite numbers, signs,
# huge exponents, separators and quotes, a byte-order mark, other scripts.
TRICKY = st.sampled_from([
    "", " ", "nan", "NaN", "inf", "-inf", "-1", "0", "1e309", "1e-320", "abc", "1:2;3", "1:nan", "\ufeff",
    '"', ",", ";", "1.5", "2.5", "  7  ", "0x10", "1_000", "ﾛ", "\t",
])  # fmt: skip
CELL = TRICKY | st.text(max_size=8)


def _one_line(exc: Exception) -> None:
    text = str(exc)
    assert text and "\n" not in text, repr(text)


TOKENS = st.one_of(TRICKY, st.integers(-5, 10**6).map(str), st.floats(allow_nan=True).map(repr))


@FUZZ
@given(body=st.lists(TOKENS, max_size=40), sep=st.sampled_from(["\n", "\r\n", ",", " ", "\n\n"]),
       fmt=st.sampled_from(FORMATS))  # fmt: skip
def test_the_trace_reader_loads_or_says_why_in_one_line(body: list[str], sep: str, fmt: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "trace.txt"
        p.write_text(sep.join(body), encoding="utf-8")
        try:
            data = read_trace_file(p, fmt)
        except TraceError as exc:
            _one_line(exc)
        else:
            assert data is not None


@FUZZ
@given(raw=st.binary(max_size=300))
def test_the_trace_reader_survives_arbitrary_bytes(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "trace.txt"
        p.write_bytes(raw)
        try:
            read_trace_file(p)
        except TraceError as exc:
            _one_line(exc)


VALID_ROW = {
    "variant_id": "v1", "architecture": "m", "task": "cls", "dataset": "ds", "framework": "fw", "hardware": "cpu",
    "precision": "fp32", "allocation": "2", "max_batch": "4", "accuracy": "0.7", "load_latency_ms": "100",
    "memory_mb": "100", "latency_intercept_ms": "5", "latency_slope_ms": "1", "profile": "1:6;2:7",
    "gflops": "1", "source": "test", "latency_cv": "0.05",
}  # fmt: skip


@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(COLUMNS), CELL), max_size=4),
       extra_header=st.sampled_from(["", "\ufeff", "# a note\n"]), rows=st.integers(1, 3))  # fmt: skip
def test_the_catalog_reader_loads_or_says_why_in_one_line(edits: list[tuple[str, str]], extra_header: str,
                                                          rows: int) -> None:  # fmt: skip
    import csv
    import io

    buf = io.StringIO()
    buf.write(extra_header)
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for i in range(rows):
        row = {**VALID_ROW, "variant_id": f"v{i}"}
        if i == rows - 1:
            row.update(dict(edits))
        w.writerow(row)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "cat.csv"
        p.write_text(buf.getvalue(), encoding="utf-8")
        try:
            cat = Catalog.load(p)
        except CatalogError as exc:
            _one_line(exc)
            assert "cat.csv" in str(exc)
        else:
            assert len(cat) == rows
            for v in cat.variants:
                assert all(0 < v.latency_ms(b) < float("inf") for b in range(1, v.max_batch + 1))


@FUZZ
@given(raw=st.binary(max_size=300))
def test_the_catalog_reader_survives_arbitrary_bytes(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "cat.csv"
        p.write_bytes(raw)
        try:
            Catalog.load(p)
        except CatalogError as exc:
            _one_line(exc)
