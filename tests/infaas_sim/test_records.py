"""Records in query-id order, streamed to Parquet as the run goes: the same rows, summary and
timeline as kept in memory, in memory bounded by the queries in flight (infaas_sim/records.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import infaas_sim.records as records
from infaas_sim.policy import Load, make_policy
from infaas_sim.records import AccountingError, Columns, InOrder, empty_columns
from tests.infaas_sim.test_metrics import mixed_run, run_pipeline


def _cols(ids: list[int]) -> Columns:
    cols = empty_columns()
    n = len(ids)
    out = []
    for c in cols:
        a = np.zeros(n, dtype=c.dtype) if c.dtype != object else np.full(n, None, dtype=object)
        out.append(a)
    out[0] = np.array(ids, dtype=np.int64)
    out[2] = np.array(ids, dtype=np.float64)  # a field that must travel with its id
    return out


def test_in_order_hands_on_blocks_in_id_order_whatever_order_outcomes_came_in() -> None:
    rng = np.random.default_rng(0)
    ids = np.arange(10_000)
    # Outcomes mostly in order, each displaced by up to 300 places (queries that waited).
    order = ids[np.argsort(ids + rng.integers(0, 300, size=ids.size), kind="stable")]
    blocks: list[Columns] = []
    q = InOrder(blocks.append, block=1000)
    for lo in range(0, len(order), 97):
        q.add(_cols(order[lo : lo + 97].tolist()))
    assert len(blocks) >= 5  # handed on as the run went, not only at the end
    q.flush()
    got = np.concatenate([b[0] for b in blocks])
    assert got.tolist() == ids.tolist()
    assert all(len(b[0]) >= 1000 for b in blocks[:-1])
    assert all((b[2] == b[0]).all() for b in blocks)  # rows kept whole


def test_in_order_keeps_only_what_is_not_yet_in_order() -> None:
    # Query 0 is still in flight: nothing can be handed on before it, everything after waits.
    blocks: list[Columns] = []
    q = InOrder(blocks.append, block=10)
    q.add(_cols(list(range(1, 50))))
    assert blocks == []
    q.add(_cols([0]))
    assert len(blocks) == 1 and blocks[0][0].tolist() == list(range(50))


def test_an_id_recorded_twice_is_an_accounting_error() -> None:
    q = InOrder(lambda cols: None, block=10)
    q.add(_cols([0, 1, 2]))
    q.add(_cols([2, 3]))
    with pytest.raises(AccountingError, match="more than one outcome"):
        q.flush()


def _same_records(kept: Any, streamed: Any) -> None:
    a, b = kept.queries, streamed.queries
    # Text columns read back from Parquet as strings, None as missing: the same values.
    for f in (a, b):
        f["reason"] = f["reason"].astype(object).where(f["reason"].notna(), None)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert {k: v for k, v in kept.summary.items() if k != "wall_s"} == {
        k: v for k, v in streamed.summary.items() if k != "wall_s"
    }
    pd.testing.assert_frame_equal(kept.timeline, streamed.timeline)


def test_streamed_records_read_back_as_the_ones_kept_in_memory(
    h: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Blocks of 7: the file has many row groups, written as the run went.
    monkeypatch.setattr(records, "CHUNK", 7)
    kept = mixed_run(h)
    path = tmp_path / "queries.parquet"
    streamed = mixed_run(h, records_to=path)
    assert streamed.records == path
    assert pq.ParquetFile(path).num_row_groups > 10
    assert kept.queries["reason"].notna().any() and (kept.queries["status"] == "rejected").any()
    _same_records(kept, streamed)


def test_a_pipeline_run_streams_its_stage_lists(
    h: Any, pipeline_catalog: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records, "CHUNK", 5)
    kept = run_pipeline(h, pipeline_catalog)
    streamed = run_pipeline(h, pipeline_catalog, records_to=tmp_path / "queries.parquet")
    assert kept.queries["stage_variants"].notna().all()
    _same_records(kept, streamed)


def test_categories_are_the_whole_catalog_so_every_block_and_run_has_the_same(h: Any) -> None:
    q = mixed_run(h).queries
    assert list(q["variant"].cat.categories) == sorted({v.variant_id for v in h.VARIANTS} | {""})
    assert list(q["hardware"].cat.categories) == ["", "cpu", "gpu", "inferentia"]
    assert (q.loc[q["status"] != "served", "variant"] == "").all()


def test_a_run_that_fails_leaves_no_records_file(h: Any, tmp_path: Path) -> None:
    class Boom(RuntimeError):
        pass

    def route(query: Any, candidates: Any, view: Any) -> Any:
        if query.qid == 20:
            raise Boom("policy bug")
        return h.jsq(view, 0)

    path = tmp_path / "queries.parquet"
    app = h.pinned_app(h.VARIANTS[0].variant_id, 0, name="a")
    wl = h.workload([app], h.periodic_times(0.1, 10.0))
    with pytest.raises(Boom):
        h.simulate(h.VARIANTS, wl, h.Scripted(setup=[Load(h.VARIANTS[0].variant_id)], route=route), 10.0,
                   records_to=path)  # fmt: skip
    assert not path.exists()


def test_an_empty_run_streams_a_file_with_the_schema(h: Any, tmp_path: Path) -> None:
    path = tmp_path / "queries.parquet"
    app = h.pinned_app(h.VARIANTS[0].variant_id, 0, name="a")
    res = h.simulate(h.VARIANTS, h.workload([app], np.array([])), make_policy("static"), 5.0, records_to=path)
    q = pd.read_parquet(path)
    assert len(q) == 0 and list(q.columns) == records.QUERY_COLUMNS
    assert res.summary["queries"] == 0
