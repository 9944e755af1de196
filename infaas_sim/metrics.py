"""Outcome records, the per-second timeline, and the run summary.

The recorder keeps one tuple per query on the hot path and builds columns once at the end.

Pipelines: a query's record is written once, when its last stage completes (or a stage is
rejected or fails). Its top-level latency components are sums over its stages, ``variant``,
``hardware``, ``worker``, ``instance`` and ``exec_batch`` are the last completed stage's,
``accuracy`` the mean of its stages' accuracies, and ``latency_ms`` / ``slo_ms`` /
``slo_met`` are end to end. The ``stage_*`` columns hold one list entry per completed stage
(None for a single-model application): ``stage_variants``, ``stage_latency_ms`` (submit to
completion of the stage) and the stage's ``queueing``/``loading``/``batching``/``execution``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from infaas_sim.catalog import Catalog
from infaas_sim.hardware import HardwareKind
from infaas_sim.query import Application, Query, Status

if TYPE_CHECKING:
    from infaas_sim.cluster import Instance

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
        #  queueing, loading, batching, execution, completion, stage log or None)
        self.rows: list[tuple[Any, ...]] = []
        # Called with (query, now) when a pipeline query's non-final stage completes: the
        # controller submits the next stage.
        self.on_stage_done: Callable[[Query, float], None] | None = None

    def arrival(self) -> None:
        self.arrived += 1

    def served_batch(
        self, batch: Sequence[Query], inst: Instance, start: float, end: float, inputs: int, due_at: float
    ) -> None:
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
            elif self.on_stage_done is not None:
                self.on_stage_done(q, end)
            else:
                raise AccountingError(f"query {q.qid} finished stage {q.stage} but nothing submits the next stage")

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
        return (q.qid, q.app.index, q.arrival, status, reason, vi, wid, iid, q.batch, inputs,
                qu, lo, ba, ex, now, tuple(log))  # fmt: skip

    def failed_batch(self, batch: Sequence[Query], fault: str, now: float) -> None:
        for q in batch:
            if q.stage_log is not None:
                self.rows.append(self._pipeline_row(q, _FAILED, fault, now))
                continue
            self.rows.append((q.qid, q.app.index, q.arrival, _FAILED, fault, -1, -1, -1, q.batch, 0,
                              0.0, 0.0, 0.0, 0.0, now, None))  # fmt: skip

    def rejected(self, q: Query, reason: str, now: float) -> None:
        if q.stage_log is not None:
            self.rows.append(self._pipeline_row(q, _REJECTED, reason, now))
            return
        self.rows.append((q.qid, q.app.index, q.arrival, _REJECTED, reason, -1, -1, -1, q.batch, 0,
                          0.0, 0.0, 0.0, 0.0, now, None))  # fmt: skip

    def check_conservation(self) -> None:
        """Every arrived query has exactly one outcome: arrivals = served + rejected + failed."""
        if len(self.rows) != self.arrived:
            raise AccountingError(f"{self.arrived} queries arrived but {len(self.rows)} outcomes were recorded")
        ids = np.fromiter((r[0] for r in self.rows), dtype=np.int64, count=len(self.rows))
        if np.unique(ids).size != ids.size:
            raise AccountingError("some query has more than one outcome")

    def frame(self) -> pd.DataFrame:
        """Per-query records, sorted by query id, with names rather than indexes."""
        cols = list(zip(*self.rows, strict=True)) if self.rows else [() for _ in range(16)]
        logs = cols.pop()  # stage logs: tuples of tuples, kept out of numpy
        qid, app, arrival, status, reason, vi, wid, iid, batch, exec_batch, qu, lo, ba, ex, comp = (
            np.asarray(c) for c in cols
        )
        n = len(self.rows)
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
        logs: Sequence[Any],
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
    """Per-second samples of the cluster's state (workers, instances, utilisation, cost)."""

    times: list[float] = field(default_factory=list)
    workers: list[dict[str, int]] = field(default_factory=list)
    instances: list[dict[str, int]] = field(default_factory=list)
    busy_units: list[dict[str, float]] = field(default_factory=list)
    capacity_units: list[dict[str, float]] = field(default_factory=list)
    cost_rate: list[float] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)


def timeline_frame(queries: pd.DataFrame, sampler: TimelineSampler, duration_s: float) -> pd.DataFrame:
    """The per-second timeline: traffic from the query records, state from the sampler."""
    n = max(1, math.ceil(duration_s))
    sec = np.arange(n)

    def per_second(times: np.ndarray) -> np.ndarray:
        idx = np.floor(times).astype(np.int64)
        idx = idx[(idx >= 0) & (idx < n)]
        return np.bincount(idx, minlength=n)

    served = queries["status"] == "served"
    tl = pd.DataFrame({"t": sec})
    tl["arrivals"] = per_second(queries["arrival"].to_numpy())
    tl["completions"] = per_second(queries.loc[served, "completion"].to_numpy())
    tl["violations"] = per_second(queries.loc[served & ~queries["slo_met"], "completion"].to_numpy())
    tl["rejections"] = per_second(queries.loc[queries["status"] == "rejected", "arrival"].to_numpy())
    tl["failures"] = per_second(queries.loc[queries["status"] == "failed", "completion"].to_numpy())
    samples = pd.DataFrame({"t": np.floor(np.asarray(sampler.times)).astype(np.int64)})
    for kind in HardwareKind:
        k = kind.value
        samples[f"workers_{k}"] = [d.get(k, 0) for d in sampler.workers]
        busy = np.array([d.get(k, 0.0) for d in sampler.busy_units])
        cap = np.array([d.get(k, 0.0) for d in sampler.capacity_units])
        samples[f"util_{k}"] = np.divide(busy, cap, out=np.zeros_like(busy), where=cap > 0)
    samples["instances"] = [sum(d.values()) for d in sampler.instances]
    samples["queued_inputs"] = sampler.queued
    samples["cost_rate_per_hour"] = sampler.cost_rate
    samples = samples.drop_duplicates("t", keep="last")
    tl = tl.merge(samples, on="t", how="left").ffill().fillna(0)
    return tl


def instances_frame(sampler: TimelineSampler) -> pd.DataFrame:
    """Loaded instances by variant over time (long format: t, variant, instances)."""
    rows = [(int(t), v, c) for t, d in zip(sampler.times, sampler.instances, strict=True) for v, c in d.items()]
    return pd.DataFrame(rows, columns=["t", "variant", "instances"])


def summarize(
    queries: pd.DataFrame, total_cost: float, duration_s: float, util: dict[str, float], wall_s: float
) -> dict[str, Any]:
    """The run's headline numbers."""
    n = len(queries)
    served = queries[queries["status"] == "served"]
    lat = served["latency_ms"].to_numpy()
    met = int(served["slo_met"].sum())
    rejected = int((queries["status"] == "rejected").sum())
    failed = int((queries["status"] == "failed").sum())
    violations = len(served) - met
    pct = (lambda p: float(np.percentile(lat, p))) if len(lat) else (lambda p: float("nan"))
    return {
        "queries": n,
        "served": len(served),
        "rejected": rejected,
        "failed": failed,
        "slo_met": met,
        "slo_violations": violations,
        # Violations count every query that did not get an answer within its SLO.
        "slo_violation_rate": (violations + rejected + failed) / n if n else 0.0,
        "throughput_qps": len(served) / duration_s if duration_s > 0 else 0.0,
        "goodput_qps": met / duration_s if duration_s > 0 else 0.0,
        "latency_mean_ms": float(lat.mean()) if len(lat) else float("nan"),
        "latency_p50_ms": pct(50),
        "latency_p95_ms": pct(95),
        "latency_p99_ms": pct(99),
        "total_cost": total_cost,
        "cost_per_1k_queries": 1000 * total_cost / len(served) if len(served) else float("nan"),
        "mean_accuracy": float(served["accuracy"].mean()) if len(served) else float("nan"),
        "utilisation": util,
        "duration_s": duration_s,
        "wall_s": wall_s,
    }
