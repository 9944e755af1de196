"""Outcome records, the per-second timeline, and the run summary.

The recorder appends one tuple per outcome on the hot path (the cheapest append Python has)
and, every ``CHUNK`` outcomes, packs them into typed NumPy columns (``_Columns``: about 130
bytes an outcome, against about 1 KB as tuples), so in-loop memory stays bounded by the chunk
plus the packed columns whatever the run's length; ``frame`` joins the chunks once at the end.

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
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from infaas_sim.catalog import Catalog
from infaas_sim.hardware import HardwareKind
from infaas_sim.query import Application, Query, Status

if TYPE_CHECKING:
    from infaas_sim.cluster import Instance, Worker

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
_STAGE_LISTS = ("stage_queueing_ms", "stage_loading_ms", "stage_batching_ms", "stage_execution_ms")

_SERVED, _REJECTED, _FAILED = 0, 1, 2

#: Outcomes kept as tuples before they are packed into columns.
CHUNK = 65_536
# The record tuple's fields and the dtype each is packed as (the last, the stage log, as objects).
_ROW_DTYPES = (np.int64, np.int64, np.float64, np.int64, object, np.int64, np.int64, np.int64, np.int64, np.int64,
               np.float64, np.float64, np.float64, np.float64, np.float64, object)  # fmt: skip
_STATUS_NAMES = [Status.SERVED.value, Status.REJECTED.value, Status.FAILED.value]


class AccountingError(AssertionError):
    """Some query that arrived has no outcome, or more than one."""


class Recorder:
    """Collects exactly one outcome per query."""

    def __init__(self, catalog: Catalog, apps: Sequence[Application]) -> None:
        self.catalog = catalog
        self.apps = list(apps)
        self.arrived = 0
        # (qid, app, arrival, status, reason, vi, worker, iid, batch, exec_batch,
        #  queueing, loading, batching, execution, completion, stage log or None):
        # the outcomes since the last pack; never packed while an outcome is being recorded
        # (only at an arrival), so a caller may read back what it just appended
        self.rows: list[tuple[Any, ...]] = []
        self._packed: list[list[np.ndarray]] = []  # per chunk, one array per field
        self._n_packed = 0
        # One string object per distinct reason: a rejection costs a reference, not a string.
        # Reasons format their numbers to a few digits (wait 2.31 s, 2014 ms), so the distinct
        # texts are bounded whatever the run's length, even under sustained overload.
        self._reasons: dict[str, str] = {}

    def arrival(self) -> None:
        self.arrived += 1
        if len(self.rows) >= CHUNK:
            self._pack()

    @property
    def outcomes(self) -> int:
        """Outcomes recorded so far."""
        return self._n_packed + len(self.rows)

    def _pack(self) -> None:
        if not self.rows:
            return
        cols = list(zip(*self.rows, strict=True))
        packed = []
        for col, dtype in zip(cols, _ROW_DTYPES, strict=True):
            if dtype is object:
                arr = np.empty(len(col), dtype=object)
                arr[:] = col
            else:
                arr = np.array(col, dtype=dtype)
            packed.append(arr)
        self._packed.append(packed)
        self._n_packed += len(self.rows)
        self.rows = []

    def _columns(self) -> list[np.ndarray]:
        """Every outcome so far, one array per record field."""
        self._pack()
        if not self._packed:
            return [np.array([], dtype=d) for d in _ROW_DTYPES]
        if len(self._packed) > 1:
            self._packed = [[np.concatenate(parts) for parts in zip(*self._packed, strict=True)]]
        return self._packed[0]

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
                append((q.qid, q.app.index, q.arrival, _SERVED, None, vi, wid, iid, q.batch, inputs,
                        queueing, loading, batching, execution, end, None))  # fmt: skip
                continue
            log.append((vi, wid, iid, inputs, queueing, loading, batching, execution, q.submitted, end))
            if q.last_stage:
                append(self._pipeline_row(q, _SERVED, None, end))
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
        if status != _SERVED:
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
                self.rows.append(self._pipeline_row(q, _FAILED, fault, now))
                continue
            self.rows.append((q.qid, q.app.index, q.arrival, _FAILED, fault, -1, -1, -1, q.batch, 0,
                              0.0, 0.0, 0.0, 0.0, now, None))  # fmt: skip

    def rejected(self, q: Query, reason: str, now: float) -> None:
        reason = self._reasons.setdefault(reason, reason)
        if q.stage_log is not None:
            self.rows.append(self._pipeline_row(q, _REJECTED, reason, now))
            return
        self.rows.append((q.qid, q.app.index, q.arrival, _REJECTED, reason, -1, -1, -1, q.batch, 0,
                          0.0, 0.0, 0.0, 0.0, now, None))  # fmt: skip

    def check_conservation(self) -> None:
        """Every arrived query has exactly one outcome: arrivals = served + rejected + failed."""
        if self.outcomes != self.arrived:
            raise AccountingError(f"{self.arrived} queries arrived but {self.outcomes} outcomes were recorded")
        ids = self._columns()[0]
        if np.unique(ids).size != ids.size:
            raise AccountingError("some query has more than one outcome")

    def frame(self) -> pd.DataFrame:
        """Per-query records, sorted by query id, with names rather than indexes."""
        cols = list(self._columns())
        logs = cols.pop()  # stage logs: tuples of tuples, as objects
        qid, app, arrival, status, reason, vi, wid, iid, batch, exec_batch, qu, lo, ba, ex, comp = cols
        n = len(qid)
        order = np.argsort(qid.astype(np.int64), kind="stable") if n else np.array([], dtype=np.int64)
        app_i = app.astype(np.int64)[order] if n else np.array([], dtype=np.int64)
        vi_i = vi.astype(np.int64)[order] if n else np.array([], dtype=np.int64)
        variants = self.catalog.variants
        var_names = np.array([v.variant_id for v in variants] + [""], dtype=object)
        hw_names = np.array([v.hardware.value for v in variants] + [""], dtype=object)
        accs = np.array([v.accuracy for v in variants] + [np.nan])
        app_names = np.array([a.name for a in self.apps], dtype=object)
        slos = np.array([a.slo_ms if a.slo_ms is not None else np.inf for a in self.apps])
        status_i = status.astype(np.int64)[order] if n else np.array([], dtype=np.int64)
        f = {
            "qid": qid.astype(np.int64)[order] if n else np.array([], dtype=np.int64),
            "app": pd.Categorical(app_names[app_i] if n else [], categories=[a.name for a in self.apps]),
            "arrival": arrival.astype(float)[order] if n else np.array([]),
            "status": pd.Categorical(np.array(_STATUS_NAMES, dtype=object)[status_i] if n else [],
                                     categories=_STATUS_NAMES),
            "reason": reason[order] if n else np.array([], dtype=object),
        }  # fmt: skip
        f["variant"] = pd.Categorical(var_names[vi_i] if n else [])
        f["hardware"] = pd.Categorical(hw_names[vi_i] if n else [])
        for name, arr, typ in (("worker", wid, np.int64), ("instance", iid, np.int64), ("batch", batch, np.int64),
                               ("exec_batch", exec_batch, np.int64)):  # fmt: skip
            f[name] = arr.astype(typ)[order] if n else np.array([], dtype=typ)
        for name, arr in (("queueing_ms", qu), ("loading_ms", lo), ("batching_ms", ba), ("execution_ms", ex)):
            f[name] = arr.astype(float)[order] * 1000 if n else np.array([])
        completion = comp.astype(float)[order] if n else np.array([])
        served = status_i == _SERVED
        f["latency_ms"] = np.where(served, (completion - f["arrival"]) * 1000, np.nan)
        f["completion"] = completion
        f["slo_ms"] = slos[app_i] if n else np.array([])
        f["slo_met"] = served & (np.asarray(f["latency_ms"]) <= np.asarray(f["slo_ms"]) + 1e-9)
        f["accuracy"] = np.where(served, accs[vi_i], np.nan) if n else np.array([])
        self._stage_columns(f, logs, order, served, accs, var_names)
        frame = pd.DataFrame(f, columns=QUERY_COLUMNS)
        frame["reason"] = frame["reason"].astype(object).where(frame["reason"].notna(), None)
        return frame

    def _stage_columns(
        self,
        f: dict[str, Any],
        logs: np.ndarray,
        order: np.ndarray,
        served: np.ndarray,
        accs: np.ndarray,
        var_names: np.ndarray,
    ) -> None:
        """The per-stage list columns (None for single-model rows) and pipeline accuracy."""
        n = len(order)
        n_stages = np.array([len(a.stages) for a in self.apps], dtype=np.int64)
        f["stages"] = n_stages[np.asarray(f["app"].codes, dtype=np.int64)] if n else np.array([], dtype=np.int64)
        lists: dict[str, np.ndarray] = {
            name: np.full(n, None, dtype=object) for name in ("stage_variants", "stage_latency_ms", *_STAGE_LISTS)
        }
        f.update(lists)
        if not any(a.pipeline is not None for a in self.apps):
            return  # no stage logs to read: skip the per-row loop
        acc = np.asarray(f["accuracy"], dtype=float)
        for pos, row in enumerate(order.tolist() if n else []):
            log = logs[row]
            if log is None:
                continue
            lists["stage_variants"][pos] = [str(var_names[r[0]]) for r in log]
            lists["stage_latency_ms"][pos] = [(r[9] - r[8]) * 1000 for r in log]
            for k, name in enumerate(_STAGE_LISTS):
                lists[name][pos] = [r[4 + k] * 1000 for r in log]
            if served[pos]:
                acc[pos] = float(np.mean([accs[r[0]] for r in log]))
        f["accuracy"] = acc


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


def timeline_frame(queries: pd.DataFrame, sampler: TimelineSampler, duration_s: float) -> pd.DataFrame:
    """The per-second timeline: traffic from the query records, state from the sampler."""
    # Through the second of the last outcome, so that queries ending in the drain are counted.
    last = float(queries["completion"].max()) if len(queries) else 0.0
    n = max(1, math.ceil(duration_s), math.floor(last) + 1 if len(queries) else 0)
    sec = np.arange(n)

    def per_second(times: np.ndarray) -> np.ndarray:
        idx = np.floor(times).astype(np.int64)
        idx = idx[(idx >= 0) & (idx < n)]
        return np.bincount(idx, minlength=n)

    status = queries["status"]
    served = (status == "served").to_numpy()
    ended = queries["completion"].to_numpy()  # when the query got its outcome, whatever it was
    late = served & ~queries["slo_met"].to_numpy(dtype=bool)
    rejected = (status == "rejected").to_numpy()
    failed = (status == "failed").to_numpy()
    tl = pd.DataFrame({"t": sec})
    tl["arrivals"] = per_second(queries["arrival"].to_numpy())
    tl["completions"] = per_second(ended[served])
    tl["violations"] = per_second(ended[late | rejected | failed])
    tl["late"] = per_second(ended[late])
    tl["rejections"] = per_second(ended[rejected])
    tl["failures"] = per_second(ended[failed])
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
    queries: pd.DataFrame,
    total_cost: float,
    duration_s: float,
    util: dict[str, float],
    wall_s: float,
    allocated_unit_hours: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The run's headline numbers."""
    n = len(queries)
    served = queries[queries["status"] == "served"]
    lat = served["latency_ms"].to_numpy()
    met = int(served["slo_met"].sum())
    rejected = int((queries["status"] == "rejected").sum())
    failed = int((queries["status"] == "failed").sum())
    late = len(served) - met
    # A violation is every query that did not get an answer within its SLO.
    violations = late + rejected + failed
    pct = (lambda p: float(np.percentile(lat, p))) if len(lat) else (lambda p: float("nan"))
    unit_hours = dict(allocated_unit_hours or {})
    return {
        "queries": n,
        "served": len(served),
        "rejected": rejected,
        "failed": failed,
        "slo_met": met,
        "late": late,
        "slo_violations": violations,
        "slo_violation_rate": violations / n if n else 0.0,
        "throughput_qps": len(served) / duration_s if duration_s > 0 else 0.0,
        "goodput_qps": met / duration_s if duration_s > 0 else 0.0,
        "latency_mean_ms": float(lat.mean()) if len(lat) else float("nan"),
        "latency_p50_ms": pct(50),
        "latency_p95_ms": pct(95),
        "latency_p99_ms": pct(99),
        "total_cost": total_cost,
        "cost_per_1k_queries": 1000 * total_cost / len(served) if len(served) else float("nan"),
        "core_hours": unit_hours.get(HardwareKind.CPU.value, 0.0),
        "allocated_unit_hours": unit_hours,
        "mean_accuracy": float(served["accuracy"].mean()) if len(served) else float("nan"),
        "utilisation": util,
        "duration_s": duration_s,
        "wall_s": wall_s,
    }
