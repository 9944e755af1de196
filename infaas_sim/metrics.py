"""Outcome records, the per-second timeline, and the run summary.

The recorder keeps one tuple per query on the hot path and builds columns once at the end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
]

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
        #  queueing, loading, batching, execution, completion)
        self.rows: list[tuple[Any, ...]] = []

    def arrival(self) -> None:
        self.arrived += 1

    def served_batch(
        self, batch: Sequence[Query], inst: Instance, start: float, end: float, inputs: int, due_at: float
    ) -> None:
        ready = inst.ready_at
        idle_since = inst.idle_since
        vi = inst.vi
        wid = inst.worker.wid
        iid = inst.iid
        execution = end - start
        append = self.rows.append
        for q in batch:
            enq = q.enqueued
            loading = ready - enq if ready > enq else 0.0
            avail = enq + loading
            idle = avail if avail > idle_since else idle_since
            batching = due_at - idle if due_at > idle else 0.0
            queueing = start - q.arrival - loading - batching
            append(
                (q.qid, q.app.index, q.arrival, _SERVED, None, vi, wid, iid, q.batch, inputs,
                 queueing if queueing > 0 else 0.0, loading, batching, execution, end)
            )  # fmt: skip

    def failed_batch(self, batch: Sequence[Query], fault: str, now: float) -> None:
        for q in batch:
            self.rows.append((q.qid, q.app.index, q.arrival, _FAILED, fault, -1, -1, -1, q.batch, 0,
                              0.0, 0.0, 0.0, 0.0, now))  # fmt: skip

    def rejected(self, q: Query, reason: str, now: float) -> None:
        self.rows.append((q.qid, q.app.index, q.arrival, _REJECTED, reason, -1, -1, -1, q.batch, 0,
                          0.0, 0.0, 0.0, 0.0, now))  # fmt: skip

    def check_conservation(self) -> None:
        """Every arrived query has exactly one outcome: arrivals = served + rejected + failed."""
        if len(self.rows) != self.arrived:
            raise AccountingError(f"{self.arrived} queries arrived but {len(self.rows)} outcomes were recorded")
        ids = np.fromiter((r[0] for r in self.rows), dtype=np.int64, count=len(self.rows))
        if np.unique(ids).size != ids.size:
            raise AccountingError("some query has more than one outcome")

    def frame(self) -> pd.DataFrame:
        """Per-query records, sorted by query id, with names rather than indexes."""
        cols = list(zip(*self.rows, strict=True)) if self.rows else [() for _ in range(15)]
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
        slos = np.array([a.requirement.slo_ms if a.requirement.slo_ms is not None else np.inf for a in self.apps])
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
        frame = pd.DataFrame(f, columns=QUERY_COLUMNS)
        frame["reason"] = frame["reason"].astype(object).where(frame["reason"].notna(), None)
        return frame


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
