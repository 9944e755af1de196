"""Per-query records: packed columns in query-id order, the frame they make, a tally for the
summary and timeline, and a Parquet stream, so that a run's memory does not grow with its
length.

The recorder (:class:`~infaas_sim.metrics.Recorder`) packs its outcome tuples into typed
NumPy columns every ``CHUNK`` outcomes. Outcomes come in completion order; :class:`InOrder`
hands the packed columns on in query-id order, a block at a time: a block holds every pending
record whose id is below the *mark*, the lowest id without an outcome yet, so no later record
can sort before it. What stays pending is bounded by the queries in flight, not the run.

Each block becomes a frame (:class:`FrameBuilder`), is counted into a :class:`Tally` (what the
summary and timeline need: counts, per-second bincounts, served latencies and accuracies) and
either kept (in memory: joined once at the end) or written as a row group of a Parquet file
(:class:`ParquetSink`) and dropped. Both give the same rows; the summary and timeline are
computed from the tally, the same way whichever the records went.

Categories are fixed for a whole run so that every block has the same: ``app`` the
applications, ``status`` the three outcomes, ``variant`` the catalog's variant ids and ``""``
(no variant: rejected or failed), ``hardware`` the hardware kinds and ``""``, each sorted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from infaas_sim.catalog import Catalog
from infaas_sim.hardware import HardwareKind
from infaas_sim.query import Application, Status

QUERY_COLUMNS = [
    "qid",
    "app",
    "arrival",
    "status",
    "reason",
    "variant",
    "hardware",
    "worker",
    "instance",
    "batch",
    "exec_batch",
    "queueing_ms",
    "loading_ms",
    "batching_ms",
    "execution_ms",
    "latency_ms",
    "completion",
    "slo_ms",
    "slo_met",
    "accuracy",
    "stages",
    "stage_variants",
    "stage_latency_ms",
    "stage_queueing_ms",
    "stage_loading_ms",
    "stage_batching_ms",
    "stage_execution_ms",
]
STAGE_LISTS = ("stage_queueing_ms", "stage_loading_ms", "stage_batching_ms", "stage_execution_ms")

SERVED, REJECTED, FAILED = 0, 1, 2
STATUS_NAMES = [Status.SERVED.value, Status.REJECTED.value, Status.FAILED.value]
_STATUS_INDEX = pd.Index(STATUS_NAMES)

#: Outcomes per packed chunk, and the least a block handed on holds (but the last): 16k
#: keeps the tuples waiting to be packed to a few MB (65k: 208 bytes a query in-loop, 16k: 73).
CHUNK = 16_384
# The record tuple's fields and the dtype each is packed as (the last, the stage log, as objects).
ROW_DTYPES = (np.int64, np.int64, np.float64, np.int64, object, np.int64, np.int64, np.int64, np.int64, np.int64,
              np.float64, np.float64, np.float64, np.float64, np.float64, object)  # fmt: skip

Columns = list[np.ndarray]  # one array per record field, ROW_DTYPES'


class AccountingError(AssertionError):
    """Some query that arrived has no outcome, or more than one."""


def pack(rows: Sequence[tuple[Any, ...]]) -> Columns:
    """Record tuples as typed columns."""
    if not rows:
        return empty_columns()
    out = []
    for col, dtype in zip(zip(*rows, strict=True), ROW_DTYPES, strict=True):
        if dtype is object:
            arr = np.empty(len(col), dtype=object)
            arr[:] = col
        else:
            arr = np.array(col, dtype=dtype)
        out.append(arr)
    return out


def empty_columns() -> Columns:
    return [np.array([], dtype=d) for d in ROW_DTYPES]


def concat(chunks: Sequence[Columns]) -> Columns:
    if not chunks:
        return empty_columns()
    if len(chunks) == 1:
        return chunks[0]
    return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]


class InOrder:
    """Takes packed chunks in any order of query id and hands them on in id order, in blocks
    of at least ``CHUNK`` records (the last block: what is left). Also the accounting check:
    an id given twice is an :class:`AccountingError`."""

    def __init__(self, emit: Callable[[Columns], None], block: int | None = None) -> None:
        self._emit = emit
        self._block = CHUNK if block is None else block
        self._done = np.zeros(1024, dtype=bool)  # by query id: has its outcome
        self._mark = 0  # every id below has its outcome
        self._pending: list[Columns] = []
        self._n = 0  # ids taken
        self._top = 0  # one past the largest id taken

    def add(self, cols: Columns) -> None:
        ids = cols[0]
        if not len(ids):
            return
        top = int(ids.max()) + 1
        if top > len(self._done):
            grown = np.zeros(max(top, 2 * len(self._done)), dtype=bool)
            grown[: len(self._done)] = self._done
            self._done = grown
        if int(ids.min()) < 0:
            raise AccountingError(f"a record has a negative query id ({int(ids.min())})")
        self._done[ids] = True
        self._n += len(ids)
        self._top = max(self._top, top)
        rest = self._done[self._mark : self._top]
        open_ = np.flatnonzero(~rest)
        self._mark += int(open_[0]) if len(open_) else len(rest)
        self._pending.append(cols)
        ready = sum(int(np.count_nonzero(c[0] < self._mark)) for c in self._pending)
        if ready >= self._block:
            self._release(self._mark)

    def _release(self, below: float) -> None:
        cols = concat(self._pending)
        ids = cols[0]
        take = ids < below
        self._pending = [[c[~take] for c in cols]] if not take.all() else []
        out = [c[take] for c in cols]
        order = np.argsort(out[0], kind="stable")
        self._emit([c[order] for c in out])

    def flush(self) -> None:
        """Hand on everything left (the run is over), then check that no id came twice."""
        if self._pending:
            self._release(math.inf)
        if int(np.count_nonzero(self._done)) != self._n:
            raise AccountingError("some query has more than one outcome")

    def held(self) -> list[Columns]:
        """The chunks not handed on yet (behind a query still in flight)."""
        return list(self._pending)


class FrameBuilder:
    """Packed columns (in id order) to the records frame, names for indexes."""

    def __init__(self, catalog: Catalog, apps: Sequence[Application]) -> None:
        self.catalog = catalog
        self.apps = list(apps)
        variants = catalog.variants
        ids = [v.variant_id for v in variants]
        self.variant_categories = pd.Index(sorted({*ids, ""}))
        rank = {name: i for i, name in enumerate(self.variant_categories)}
        # index vi (the last entry: vi = -1, no variant) -> category code
        self._var_code = np.array([rank[i] for i in ids] + [rank[""]], dtype=np.int32)
        self.hardware_categories = pd.Index(sorted({*(k.value for k in HardwareKind), ""}))
        hw_rank = {name: i for i, name in enumerate(self.hardware_categories)}
        self._hw_code = np.array([hw_rank[v.hardware.value] for v in variants] + [hw_rank[""]], dtype=np.int32)
        self._var_names = np.array([*ids, ""], dtype=object)
        self._accs = np.array([v.accuracy for v in variants] + [np.nan])
        self.app_names = pd.Index([a.name for a in self.apps])
        self._slos = np.array([a.slo_ms if a.slo_ms is not None else np.inf for a in self.apps])
        self._n_stages = np.array([len(a.stages) for a in self.apps], dtype=np.int64)
        self._pipelines = any(a.pipeline is not None for a in self.apps)

    def fits(self, catalog: Catalog, apps: Sequence[Application]) -> bool:
        return catalog is self.catalog and len(apps) == len(self.apps)

    def frame(self, cols: Columns) -> pd.DataFrame:
        qid, app, arrival, status, reason, vi, wid, iid, batch, exec_batch, qu, lo, ba, ex, comp, logs = cols
        n = len(qid)
        app_i = app.astype(np.int64)
        status_i = status.astype(np.int64)
        f: dict[str, Any] = {
            "qid": qid.astype(np.int64),
            "app": pd.Categorical.from_codes(app_i, categories=self.app_names),
            "arrival": arrival.astype(float),
            "status": pd.Categorical.from_codes(status_i, categories=_STATUS_INDEX),
            "reason": reason,
            "variant": pd.Categorical.from_codes(self._var_code[vi], categories=self.variant_categories),
            "hardware": pd.Categorical.from_codes(self._hw_code[vi], categories=self.hardware_categories),
            "worker": wid.astype(np.int64),
            "instance": iid.astype(np.int64),
            "batch": batch.astype(np.int64),
            "exec_batch": exec_batch.astype(np.int64),
        }
        for name, arr in (("queueing_ms", qu), ("loading_ms", lo), ("batching_ms", ba), ("execution_ms", ex)):
            f[name] = arr.astype(float) * 1000
        completion = comp.astype(float)
        served = status_i == SERVED
        f["latency_ms"] = np.where(served, (completion - f["arrival"]) * 1000, np.nan)
        f["completion"] = completion
        f["slo_ms"] = self._slos[app_i] if n else np.array([])
        f["slo_met"] = served & (np.asarray(f["latency_ms"]) <= np.asarray(f["slo_ms"]) + 1e-9)
        f["accuracy"] = np.where(served, self._accs[vi], np.nan)
        f["stages"] = self._n_stages[app_i] if n else np.array([], dtype=np.int64)
        self._stage_columns(f, logs, served)
        frame = pd.DataFrame(f, columns=QUERY_COLUMNS)
        frame["reason"] = frame["reason"].astype(object).where(frame["reason"].notna(), None)
        return frame

    def _stage_columns(self, f: dict[str, Any], logs: np.ndarray, served: np.ndarray) -> None:
        """The per-stage list columns (None for single-model rows) and pipeline accuracy."""
        n = len(logs)
        lists = {name: np.full(n, None, dtype=object) for name in ("stage_variants", "stage_latency_ms", *STAGE_LISTS)}
        f.update(lists)
        if not self._pipelines:
            return  # no stage logs to read: skip the per-row loop
        acc = np.asarray(f["accuracy"], dtype=float)
        names, accs = self._var_names, self._accs
        for pos, log in enumerate(logs.tolist()):
            if log is None:
                continue
            lists["stage_variants"][pos] = [str(names[r[0]]) for r in log]
            lists["stage_latency_ms"][pos] = [(r[9] - r[8]) * 1000 for r in log]
            for k, name in enumerate(STAGE_LISTS):
                lists[name][pos] = [r[4 + k] * 1000 for r in log]
            if served[pos]:
                acc[pos] = float(np.mean([accs[r[0]] for r in log]))
        f["accuracy"] = acc


class Tally:
    """What the summary and the timeline need of the records, counted block by block: the
    outcome counts, per-second bincounts of arrivals and of endings by kind, and the served
    queries' latencies and accuracies (kept in id order, so that their mean is the one the
    whole frame gives, bit for bit)."""

    def __init__(self) -> None:
        self.queries = 0
        self.served = 0
        self.rejected = 0
        self.failed = 0
        self.met = 0
        self.last_completion = 0.0
        self._lat: list[np.ndarray] = []
        self._acc: list[np.ndarray] = []
        self.per_second: dict[str, np.ndarray] = {
            k: np.zeros(0, dtype=np.int64) for k in ("arrivals", "completions", "late", "rejections", "failures")
        }

    @classmethod
    def of(cls, queries: pd.DataFrame) -> Tally:
        t = cls()
        t.add(queries)
        return t

    def add(self, q: pd.DataFrame) -> None:
        if not len(q):
            return
        status = q["status"]
        served = (status == "served").to_numpy()
        rejected = (status == "rejected").to_numpy()
        failed = (status == "failed").to_numpy()
        met = q["slo_met"].to_numpy(dtype=bool)
        late = served & ~met
        ended = q["completion"].to_numpy()  # when the query got its outcome, whatever it was
        self.queries += len(q)
        self.served += int(served.sum())
        self.rejected += int(rejected.sum())
        self.failed += int(failed.sum())
        self.met += int((served & met).sum())
        self.last_completion = max(self.last_completion, float(ended.max()))
        self._lat.append(q["latency_ms"].to_numpy()[served])
        self._acc.append(q["accuracy"].to_numpy()[served])
        self._count("arrivals", q["arrival"].to_numpy())
        self._count("completions", ended[served])
        self._count("late", ended[late])
        self._count("rejections", ended[rejected])
        self._count("failures", ended[failed])

    def _count(self, name: str, times: np.ndarray) -> None:
        if not len(times):
            return
        idx = np.floor(times).astype(np.int64)
        idx = idx[idx >= 0]
        c = np.bincount(idx)
        have = self.per_second[name]
        if len(c) > len(have):
            c[: len(have)] += have
            self.per_second[name] = c
        else:
            have[: len(c)] += c

    def seconds(self, name: str, n: int) -> np.ndarray:
        """Per-second counts of ``name`` for seconds ``0 .. n-1``."""
        out = np.zeros(n, dtype=np.int64)
        have = self.per_second[name][:n]
        out[: len(have)] = have
        return out

    def latencies(self) -> np.ndarray:
        """Served queries' latency (ms), in id order."""
        self._lat = [np.concatenate(self._lat)] if len(self._lat) > 1 else self._lat
        return self._lat[0] if self._lat else np.array([])

    def accuracies(self) -> np.ndarray:
        self._acc = [np.concatenate(self._acc)] if len(self._acc) > 1 else self._acc
        return self._acc[0] if self._acc else np.array([])


def _arrow_schema(frame: pd.DataFrame) -> Any:
    """The file's schema from the first block: its columns with the list and text columns
    typed (a block without a pipeline or a rejection would infer them as nulls) and the
    category codes 32-bit (a catalog that grows needs no new schema)."""
    import pyarrow as pa

    schema = pa.Schema.from_pandas(frame, preserve_index=False)
    typed = {"reason": pa.string(), "stage_variants": pa.list_(pa.string())}
    typed |= {name: pa.list_(pa.float64()) for name in ("stage_latency_ms", *STAGE_LISTS)}
    for name in ("app", "status", "variant", "hardware"):
        typed[name] = pa.dictionary(pa.int32(), pa.string())
    for name, typ in typed.items():
        i = schema.get_field_index(name)
        schema = schema.set(i, pa.field(name, typ))
    return schema


class ParquetSink:
    """Blocks of records written as row groups of one Parquet file as the run goes; the file
    is whole only after :meth:`close` (:meth:`abort` removes it)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer: Any = None
        self._schema: Any = None
        self.path.unlink(missing_ok=True)  # a killed run's leftover is not this run's

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:
            self._schema = _arrow_schema(frame)
            self._writer = pq.ParquetWriter(self.path, self._schema)
        self._writer.write_table(pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False))

    def close(self, empty: pd.DataFrame) -> None:
        if self._writer is None:  # no records at all: still a file with the schema
            self.write(empty)
        self._writer.close()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.path.unlink(missing_ok=True)
