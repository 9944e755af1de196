"""Outcome records, the per-second timeline, and the run summary.

The recorder appends one tuple per outcome on the hot path (the cheapest append Python has)
and, every ``CHUNK`` outcomes, packs them into typed NumPy columns (about 130 bytes an
outcome, against about 1 KB as tuples) handed on in query-id order
(:mod:`infaas_sim.records`): kept and joined once at the end, or, with ``stream_to``, written
to a Parquet file block by block and dropped, so that memory does not grow with the run's
length. The summary and the timeline are computed from a :class:`~infaas_sim.records.Tally`
of the records, the same whichever way they went.

Pipelines: a query's record is written once, when its last stage completes (or a stage is
rejected or fails). Its top-level latency components are sums over its stages, ``variant``,
``hardware``, ``worker``, ``instance`` and ``exec_batch`` are the last completed stage's,
``accuracy`` the mean of its stages' accuracies, and ``latency_ms`` / ``slo_ms`` /
``slo_met`` are end to end. The ``stage_*`` columns hold one list entry per completed stage
(None for a single-model application): ``stage_variants``, ``stage_latency_ms`` (submit to
completion of the stage) and the stage's ``queueing``/``loading``/``batching``/``execution``.

The timeline (one row per second ``t``, from 0 to the second of the last outcome: the drain
after ``run.duration_s`` included, so that every query is counted in some row):

- traffic from the records: ``arrivals`` (by arrival); ``completions`` (served, by
  completion); ``violations``, every query that did not get its answer within its SLO
  (``late`` + ``rejections`` + ``failures``), and those three, each in the second the query
  ended (for a pipeline: once, by its end-to-end outcome, never per stage);
- state: ``workers_<kind>``, ``instances``, ``queued_inputs``, ``cost_rate_per_hour`` and
  ``allocated_<kind>`` (units held by loaded or loading instances: CPU cores, GPU devices,
  NeuronCores) as sampled at the end of each second;
- ``util_<kind>``: busy unit-seconds / available unit-seconds in that second, in [0, 1]. A
  batch's busy time is spread over the seconds it ran (:meth:`RateMeter.add_span`), and a
  worker is available from its start-up's end to its release or crash.

The summary's ``slo_violations`` = ``late`` + ``rejected`` + ``failed``, so that
``slo_violations / queries == slo_violation_rate``; ``utilisation`` is the same ratio as the
timeline's over the whole run; ``core_hours`` (CPU) and ``allocated_unit_hours`` (per kind)
integrate the allocated units over the samples, InfAdapter's cost measure beside VM cost.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from infaas_sim import records
from infaas_sim.catalog import Catalog
from infaas_sim.hardware import HardwareKind
from infaas_sim.query import Application, Query
from infaas_sim.records import (
    FAILED,
    QUERY_COLUMNS,
    REJECTED,
    SERVED,
    AccountingError,
    Columns,
    FrameBuilder,
    InOrder,
    ParquetSink,
    Tally,
    concat,
    empty_columns,
    pack,
)

if TYPE_CHECKING:
    from infaas_sim.cluster import Instance, Worker

__all__ = ["QUERY_COLUMNS", "AccountingError", "Recorder", "TimelineSampler", "instances_frame", "summarize",
           "timeline_frame"]  # fmt: skip


class Recorder:
    """Collects exactly one outcome per query.

    ``stream_to``: a Parquet file to write the records to as the run goes (in id order, a
    block at a time: :mod:`infaas_sim.records`), so that memory does not grow with the run's
    length; without it the records are kept and :meth:`frame` returns them. Either way
    :attr:`tally` holds what the summary and timeline need once :meth:`check_conservation`
    (the records' end) has run.
    """

    def __init__(self, catalog: Catalog, apps: Sequence[Application], stream_to: Path | None = None) -> None:
        self.catalog = catalog
        self.apps = list(apps)
        self.arrived = 0
        # (qid, app, arrival, status, reason, vi, worker, iid, batch, exec_batch,
        #  queueing, loading, batching, execution, completion, stage log or None):
        # the outcomes since the last pack; never packed while an outcome is being recorded
        # (only at an arrival), so a caller may read back what it just appended
        self.rows: list[tuple[Any, ...]] = []
        self._n_packed = 0
        # One string object per distinct reason: a rejection costs a reference, not a string.
        # Reasons format their numbers to a few digits (wait 2.31 s, 2014 ms), so the distinct
        # texts are bounded whatever the run's length, even under sustained overload.
        self._reasons: dict[str, str] = {}
        self.sink = ParquetSink(stream_to) if stream_to is not None else None
        self._kept: list[Columns] = []  # in memory: blocks in id order
        self._order = InOrder(self._take)
        self._builder: FrameBuilder | None = None
        self.tally = Tally()
        self._finished = False
        self._frame: pd.DataFrame | None = None

    def arrival(self) -> None:
        self.arrived += 1
        if len(self.rows) >= records.CHUNK:
            self._pack()

    @property
    def outcomes(self) -> int:
        """Outcomes recorded so far."""
        return self._n_packed + len(self.rows)

    def _pack(self) -> None:
        if not self.rows:
            return
        cols = pack(self.rows)
        self._n_packed += len(self.rows)
        self.rows = []
        self._order.add(cols)

    def _frames(self) -> FrameBuilder:
        b = self._builder
        if b is None or not b.fits(self.catalog, self.apps):
            b = self._builder = FrameBuilder(self.catalog, self.apps)
        return b

    def _take(self, cols: Columns) -> None:
        """A block in id order: written and counted (streaming) or kept."""
        if self.sink is None:
            self._kept.append(cols)
            return
        frame = self._frames().frame(cols)
        self.tally.add(frame)
        self.sink.write(frame)

    def _columns(self) -> Columns:
        """Every outcome so far, one array per record field (in memory; for tests)."""
        self._pack()
        return concat([*self._kept, *self._order.held()])

    def served_batch(
        self, batch: Sequence[Query], inst: Instance, start: float, end: float, inputs: int, due_at: float
    ) -> list[Query] | None:
        """Record a served batch. Returns the pipeline queries of it that have a stage left
        (their stage is logged, their record is not written yet), or None: the recorder only
        records, the controller submits the next stage."""
        # A query's wait splits at its instance's readiness and at its batch's close
        # (``due_at``: full, or its oldest query waited max_wait_s): loading until ready,
        # batching from then until the batch closed, queueing from the close to the start.
        ready = inst.ready_at
        vi = inst.vi
        wid = inst.worker.wid
        iid = inst.iid
        execution = end - start
        close = due_at if due_at < start else start
        append = self.rows.append
        more: list[Query] | None = None
        for q in batch:
            enq = q.enqueued
            loading = ready - enq if ready > enq else 0.0
            avail = enq + loading
            batching = close - avail if close > avail else 0.0
            queueing = start - q.submitted - loading - batching
            if queueing < 0:
                queueing = 0.0
            log = q.stage_log
            if log is None:
                append((q.qid, q.app.index, q.arrival, SERVED, None, vi, wid, iid, q.batch, inputs,
                        queueing, loading, batching, execution, end, None))  # fmt: skip
                continue
            log.append((vi, wid, iid, inputs, queueing, loading, batching, execution, q.submitted, end))
            if q.last_stage:
                append(self._pipeline_row(q, SERVED, None, end))
            elif more is None:
                more = [q]
            else:
                more.append(q)
        return more

    def _pipeline_row(self, q: Query, status: int, reason: str | None, now: float) -> tuple[Any, ...]:
        """The one record of a pipeline query: sums over its completed stages."""
        log = q.stage_log or []
        qu = sum(r[4] for r in log)
        lo = sum(r[5] for r in log)
        ba = sum(r[6] for r in log)
        ex = sum(r[7] for r in log)
        vi, wid, iid, inputs = log[-1][:4] if log else (-1, -1, -1, 0)
        if status != SERVED:
            vi, wid, iid, inputs = -1, -1, -1, 0
            n = len(q.app.stages)
            reason = f"stage {q.stage + 1} of {n} ({q.requirement.describe()}): {reason}"
            reason = self._reasons.setdefault(reason, reason)
        return (q.qid, q.app.index, q.arrival, status, reason, vi, wid, iid, q.batch, inputs,
                qu, lo, ba, ex, now, tuple(log))  # fmt: skip

    def failed_batch(self, batch: Sequence[Query], fault: str, now: float) -> None:
        fault = self._reasons.setdefault(fault, fault)
        for q in batch:
            if q.stage_log is not None:
                self.rows.append(self._pipeline_row(q, FAILED, fault, now))
                continue
            self.rows.append((q.qid, q.app.index, q.arrival, FAILED, fault, -1, -1, -1, q.batch, 0,
                              0.0, 0.0, 0.0, 0.0, now, None))  # fmt: skip

    def rejected(self, q: Query, reason: str, now: float) -> None:
        reason = self._reasons.setdefault(reason, reason)
        if q.stage_log is not None:
            self.rows.append(self._pipeline_row(q, REJECTED, reason, now))
            return
        self.rows.append((q.qid, q.app.index, q.arrival, REJECTED, reason, -1, -1, -1, q.batch, 0,
                          0.0, 0.0, 0.0, 0.0, now, None))  # fmt: skip

    def check_conservation(self) -> None:
        """Every arrived query has exactly one outcome: arrivals = served + rejected + failed.
        Also the end of the records: the rest is handed on, the stream closed, the tally made."""
        if self.outcomes != self.arrived:
            raise AccountingError(f"{self.arrived} queries arrived but {self.outcomes} outcomes were recorded")
        self._pack()
        self._order.flush()
        self._finished = True
        if self.sink is not None:
            self.sink.close(self._frames().frame(empty_columns()))
            return
        self._frame = self._frames().frame(concat(self._kept))
        self._kept = []
        self.tally.add(self._frame)

    def abort(self) -> None:
        """The run failed: no records file is left to be mistaken for a run's."""
        if self.sink is not None:
            self.sink.abort()

    def frame(self) -> pd.DataFrame:
        """Per-query records, sorted by query id, with names rather than indexes (read back
        from the file when streamed)."""
        if not self._finished:
            self.check_conservation()
        if self.sink is not None:
            return pd.read_parquet(self.sink.path)
        assert self._frame is not None
        return self._frame


@dataclass
class TimelineSampler:
    """Samples of the cluster's state (workers, instances, allocated units, cost), each covering
    ``[times[i], times[i] + spans[i])``, and, once the run is over, each second's busy and
    available unit-seconds per hardware kind (:meth:`measure_usage`)."""

    times: list[float] = field(default_factory=list)
    spans: list[float] = field(default_factory=list)
    workers: list[dict[str, int]] = field(default_factory=list)
    instances: list[dict[str, int]] = field(default_factory=list)
    allocated_units: list[dict[str, float]] = field(default_factory=list)
    cost_rate: list[float] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)
    busy_by_second: dict[str, np.ndarray] = field(default_factory=dict)
    capacity_by_second: dict[str, np.ndarray] = field(default_factory=dict)

    def sampled_until(self) -> float:
        return self.times[-1] + self.spans[-1] if self.times else 0.0

    def measure_usage(self, workers: Iterable[Worker], end: float) -> None:
        """Busy and available unit-seconds per kind in every second of ``[0, end)``.

        Read from the workers' busy meters after the run rather than sampled during it: a
        batch still running at a sample adds its busy time to the seconds it ran when it ends.
        """
        n = max(1, math.ceil(end))
        busy = {k.value: np.zeros(n) for k in HardwareKind}
        cap = {k.value: np.zeros(n) for k in HardwareKind}
        for w in workers:
            stop = min(w.released_at, end)
            lo, hi = math.floor(w.ready_at), min(n, math.ceil(stop))
            if hi <= lo:
                continue  # released before it was ready: it never served
            sec = np.arange(lo, hi, dtype=float)
            avail = np.clip(np.minimum(stop, sec + 1) - np.maximum(w.ready_at, sec), 0.0, 1.0)
            avail *= w.itype.capacity_units
            b = np.zeros(hi - lo)
            counts = w.busy_meter.counts(0)[lo:hi]
            b[: len(counts)] = counts
            k = w.kind.value
            # Never more than the worker had: a batch in flight when its replica is resized
            # is charged at the new allocation for the whole batch.
            busy[k][lo:hi] += np.minimum(b, avail)
            cap[k][lo:hi] += avail
        self.busy_by_second = busy
        self.capacity_by_second = cap

    def utilisation(self) -> dict[str, float]:
        """Busy / available unit-seconds over the whole run, per kind that had capacity."""
        out = {}
        for k, cap in self.capacity_by_second.items():
            total = float(cap.sum())
            if total > 0:
                out[k] = float(self.busy_by_second[k].sum()) / total
        return out

    def allocated_unit_hours(self) -> dict[str, float]:
        """Allocated units integrated over the samples, per kind (CPU: core-hours)."""
        out = {k.value: 0.0 for k in HardwareKind}
        for d, span in zip(self.allocated_units, self.spans, strict=True):
            for k, x in d.items():
                out[k] += x * span / 3600
        return out


def timeline_frame(queries: pd.DataFrame | Tally, sampler: TimelineSampler, duration_s: float) -> pd.DataFrame:
    """The per-second timeline: traffic from the query records (or their tally), state from
    the sampler."""
    t = queries if isinstance(queries, Tally) else Tally.of(queries)
    # Through the second of the last outcome, so that queries ending in the drain are counted.
    n = max(1, math.ceil(duration_s), math.floor(t.last_completion) + 1 if t.queries else 0)
    tl = pd.DataFrame({"t": np.arange(n)})
    tl["arrivals"] = t.seconds("arrivals", n)
    tl["completions"] = t.seconds("completions", n)
    late, rejections, failures = t.seconds("late", n), t.seconds("rejections", n), t.seconds("failures", n)
    tl["violations"] = late + rejections + failures
    tl["late"] = late
    tl["rejections"] = rejections
    tl["failures"] = failures
    samples = pd.DataFrame({"t": np.floor(np.asarray(sampler.times)).astype(np.int64)})
    for kind in HardwareKind:
        k = kind.value
        samples[f"workers_{k}"] = [d.get(k, 0) for d in sampler.workers]
        samples[f"allocated_{k}"] = [float(d.get(k, 0.0)) for d in sampler.allocated_units]
    samples["instances"] = [sum(d.values()) for d in sampler.instances]
    samples["queued_inputs"] = sampler.queued
    samples["cost_rate_per_hour"] = sampler.cost_rate
    samples = samples.drop_duplicates("t", keep="last")
    tl = tl.merge(samples, on="t", how="left").ffill().fillna(0)
    for kind in HardwareKind:
        k = kind.value
        busy = _fit(sampler.busy_by_second.get(k), n)
        cap = _fit(sampler.capacity_by_second.get(k), n)
        tl[f"util_{k}"] = np.divide(busy, cap, out=np.zeros(n), where=cap > 0)
    cols = ["t", "arrivals", "completions", "violations", "late", "rejections", "failures"]
    for kind in HardwareKind:
        cols += [f"workers_{kind.value}", f"util_{kind.value}", f"allocated_{kind.value}"]
    cols += ["instances", "queued_inputs", "cost_rate_per_hour"]
    return tl[cols]


def _fit(a: np.ndarray | None, n: int) -> np.ndarray:
    """``a`` cut or zero-padded to ``n`` entries."""
    out = np.zeros(n)
    if a is not None:
        m = min(n, len(a))
        out[:m] = a[:m]
    return out


def instances_frame(sampler: TimelineSampler) -> pd.DataFrame:
    """Loaded instances by variant over time (long format: t, variant, instances)."""
    rows = [(int(t), v, c) for t, d in zip(sampler.times, sampler.instances, strict=True) for v, c in d.items()]
    return pd.DataFrame(rows, columns=["t", "variant", "instances"])


def summarize(
    queries: pd.DataFrame | Tally,
    total_cost: float,
    duration_s: float,
    util: dict[str, float],
    wall_s: float,
    allocated_unit_hours: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The run's headline numbers, from the records (or their tally)."""
    t = queries if isinstance(queries, Tally) else Tally.of(queries)
    n = t.queries
    lat = t.latencies()
    acc = t.accuracies()
    met = t.met
    rejected = t.rejected
    failed = t.failed
    late = t.served - met
    # A violation is every query that did not get an answer within its SLO.
    violations = late + rejected + failed
    # One partition for the three (the same values as one call each, without three copies
    # of an hour's latencies).
    p50, p95, p99 = (float(x) for x in np.percentile(lat, [50, 95, 99])) if len(lat) else (math.nan,) * 3
    unit_hours = dict(allocated_unit_hours or {})
    served = t.served
    return {
        "queries": n,
        "served": served,
        "rejected": rejected,
        "failed": failed,
        "slo_met": met,
        "late": late,
        "slo_violations": violations,
        "slo_violation_rate": violations / n if n else 0.0,
        "throughput_qps": served / duration_s if duration_s > 0 else 0.0,
        "goodput_qps": met / duration_s if duration_s > 0 else 0.0,
        "latency_mean_ms": float(lat.mean()) if len(lat) else float("nan"),
        "latency_p50_ms": p50,
        "latency_p95_ms": p95,
        "latency_p99_ms": p99,
        "total_cost": total_cost,
        "cost_per_1k_queries": 1000 * total_cost / served if served else float("nan"),
        "core_hours": unit_hours.get(HardwareKind.CPU.value, 0.0),
        "allocated_unit_hours": unit_hours,
        "mean_accuracy": float(pd.Series(acc).mean()) if len(acc) else float("nan"),
        "utilisation": util,
        "duration_s": duration_s,
        "wall_s": wall_s,
    }
