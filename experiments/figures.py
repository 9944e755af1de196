"""Figures (PNG, matplotlib's Agg backend): of one run (timeline, latency CDF), and of a sweep's
arms side by side (experiments/comparison.py: SLO misses, cost, workers, variant mix, latency CDFs)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from infaas_sim.hardware import HardwareKind


def plot_timeline(timeline: pd.DataFrame, path: Path, title: str = "") -> None:
    fig, axes = plt.subplots(4, 1, figsize=(9, 9), sharex=True)
    t = timeline["t"]
    ax = axes[0]
    ax.plot(t, timeline["arrivals"], label="arrivals/s", lw=1)
    ax.plot(t, timeline["completions"], label="completions/s", lw=1)
    # "violations" counts every miss once (late, rejected or failed), in the second it ended.
    ax.plot(t, timeline["violations"], label="SLO misses/s", lw=1)
    ax.set_ylabel("queries/s")
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[1]
    for kind in HardwareKind:
        col = f"workers_{kind.value}"
        if timeline[col].any():
            ax.step(t, timeline[col], where="post", label=kind.value)
    ax.set_ylabel("workers")
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[2]
    for kind in HardwareKind:
        col = f"util_{kind.value}"
        if timeline[f"workers_{kind.value}"].any():
            ax.plot(t, timeline[col], label=kind.value, lw=1)
    ax.set_ylabel("utilisation")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[3]
    ax.plot(t, timeline["cost_rate_per_hour"], lw=1)
    ax.set_ylabel("$/hour")
    ax.set_xlabel("time (s)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


_CDF_POINTS = 4096  # points of a latency CDF drawn (evenly spaced in rank)


def plot_latency_cdf(queries: pd.DataFrame, path: Path, title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    served = queries[queries["status"] == "served"]
    for app, grp in served.groupby("app", observed=True):
        lat = np.sort(grp["latency_ms"].to_numpy())
        if len(lat):
            y = np.arange(1, len(lat) + 1) / len(lat)
            if len(lat) > _CDF_POINTS:  # millions of points draw as the same line, slowly
                keep = np.unique(np.linspace(0, len(lat) - 1, _CDF_POINTS).astype(np.int64))
                lat, y = lat[keep], y[keep]
            ax.plot(lat, y, label=str(app))
            slo = grp["slo_ms"].iloc[0]
            if np.isfinite(slo):
                ax.axvline(slo, ls=":", lw=0.8, color=ax.lines[-1].get_color())
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log)")
    ax.set_ylabel("CDF")
    ax.set_ylim(0, 1.01)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- side-by-side figures of a sweep (experiments/comparison.py): one line per arm ---------------------


def _arm_colors(arms: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {a: cmap(i % 10) for i, a in enumerate(arms)}


def _save(fig: Any, path: Path, title: str) -> None:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _window_sums(times: np.ndarray, n_windows: int, window_s: float) -> np.ndarray:
    idx = np.floor(times / window_s).astype(np.int64)
    idx = idx[(idx >= 0) & (idx < n_windows)]
    return np.bincount(idx, minlength=n_windows).astype(float)


def plot_violations_over_time(
    queries: Mapping[str, pd.DataFrame], timelines: Mapping[str, pd.DataFrame], path: Path, title: str = "",
    window_s: float = 10.0,
) -> None:  # fmt: skip
    """Top: the offered load. Bottom: per arm, the share of the queries arriving in each window
    that missed their SLO (served late, rejected or failed), by arrival time, so that a miss is
    charged to the load that caused it."""
    arms = list(queries)
    colors = _arm_colors(arms)
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=[1, 2])
    duration = max((len(t) for t in timelines.values()), default=1)
    n = max(1, math.ceil(duration / window_s))
    x = np.arange(n) * window_s
    first = next(iter(timelines.values()), None)
    if first is not None:
        axes[0].plot(first["t"], first["arrivals"], lw=0.8, color="grey")
    axes[0].set_ylabel("arrivals/s")
    for arm in arms:
        q = queries[arm]
        arr = q["arrival"].to_numpy()
        total = _window_sums(arr, n, window_s)
        missed = _window_sums(arr[~q["slo_met"].to_numpy(dtype=bool)], n, window_s)
        share = np.divide(missed, total, out=np.full(n, np.nan), where=total > 0)
        axes[1].plot(x, share, lw=1, label=arm, color=colors[arm])
    axes[1].set_ylabel(f"SLO misses ({window_s:g} s windows)")
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_xlabel("time (s)")
    axes[1].legend(fontsize=7, ncol=4, loc="upper left")
    _save(fig, path, title)


def plot_cost_over_time(timelines: Mapping[str, pd.DataFrame], path: Path, title: str = "") -> None:
    """Per arm: the cost rate of the workers held ($/hour) and the cumulative cost ($)."""
    arms = list(timelines)
    colors = _arm_colors(arms)
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for arm in arms:
        tl = timelines[arm]
        rate = tl["cost_rate_per_hour"].to_numpy(dtype=float)
        axes[0].step(tl["t"], rate, where="post", lw=1, label=arm, color=colors[arm])
        axes[1].plot(tl["t"], np.cumsum(rate) / 3600.0, lw=1, label=arm, color=colors[arm])
    axes[0].set_ylabel("$/hour")
    axes[1].set_ylabel("cumulative $")
    axes[1].set_xlabel("time (s)")
    axes[0].legend(fontsize=7, ncol=4, loc="upper left")
    _save(fig, path, title)


def plot_workers_by_hardware(timelines: Mapping[str, pd.DataFrame], path: Path, title: str = "") -> None:
    """One panel per arm: workers (VMs) of each hardware kind over time."""
    arms = list(timelines)
    cols = 2
    rows = max(1, math.ceil(len(arms) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(10, 2.2 * rows), sharex=True, squeeze=False)
    top = max((int(tl[[f"workers_{k.value}" for k in HardwareKind]].to_numpy().max()) for tl in timelines.values()),
              default=1)  # fmt: skip
    kind_colors = {HardwareKind.CPU: "tab:blue", HardwareKind.GPU: "tab:green", HardwareKind.INFERENTIA: "tab:orange"}
    for ax, arm in zip(axes.flat, arms, strict=False):
        tl = timelines[arm]
        for kind in HardwareKind:
            ax.step(tl["t"], tl[f"workers_{kind.value}"], where="post", lw=1, label=kind.value,
                    color=kind_colors[kind])  # fmt: skip
        ax.set_title(arm, fontsize=9)
        ax.set_ylim(-0.2, top + 0.5)
        ax.set_ylabel("workers", fontsize=8)
    for ax in axes.flat[len(arms) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7, loc="upper left")
    _save(fig, path, title)


def plot_variant_mix(
    instances: pd.DataFrame, queries: pd.DataFrame, path: Path, title: str = "", top: int = 8, window_s: float = 10.0
) -> None:
    """Top: loaded instances of each variant over time. Bottom: the share of served queries
    each variant answered, per window. The ``top`` variants by queries served, the rest as
    'other'."""
    served = queries[queries["status"] == "served"]
    counts = served["variant"].astype(str).value_counts()
    keep = list(counts.index[:top])
    fig, axes = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    cmap = plt.get_cmap("tab10")
    colors: dict[str, Any] = {v: cmap(i % 10) for i, v in enumerate(keep)}
    colors["other"] = "lightgrey"
    if len(instances):
        inst = instances.assign(variant=instances["variant"].where(instances["variant"].isin(keep), "other"))
        wide = inst.pivot_table(index="t", columns="variant", values="instances", aggfunc="sum", fill_value=0)
        order = [v for v in [*keep, "other"] if v in wide.columns]
        axes[0].stackplot(wide.index, *(wide[v].to_numpy() for v in order), labels=order, step="post",
                          colors=[colors[v] for v in order])  # fmt: skip
    axes[0].set_ylabel("loaded instances")
    if len(served):
        n = max(1, math.ceil(float(served["arrival"].max() + 1e-9) / window_s))
        x = np.arange(n) * window_s
        names = served["variant"].astype(str).to_numpy()
        arr = served["arrival"].to_numpy()
        total = _window_sums(arr, n, window_s)
        shares = []
        labels = [*keep, "other"]
        for v in labels:
            mask = ~np.isin(names, keep) if v == "other" else names == v
            shares.append(np.divide(_window_sums(arr[mask], n, window_s), total, out=np.zeros(n), where=total > 0))
        axes[1].stackplot(x, *shares, labels=labels, colors=[colors[v] for v in labels], step="post")
    axes[1].set_ylabel(f"share of served queries ({window_s:g} s)")
    axes[1].set_ylim(0, 1)
    axes[1].set_xlabel("time (s)")
    axes[1].legend(fontsize=7, ncol=3, loc="lower left")
    _save(fig, path, title)


def plot_latency_cdfs(queries: Mapping[str, pd.DataFrame], path: Path, title: str = "") -> None:
    """One panel per application: the CDF of end-to-end latency per arm, over all its queries
    (rejected and failed ones count as never answered, so a curve tops out at the share
    served), with the SLO as a dotted line."""
    arms = list(queries)
    colors = _arm_colors(arms)
    apps = list(dict.fromkeys(a for q in queries.values() for a in q["app"].astype(str).unique()))
    fig, axes = plt.subplots(1, max(1, len(apps)), figsize=(4.2 * max(1, len(apps)), 4), squeeze=False)
    for ax, app in zip(axes.flat, apps, strict=False):
        slo = math.nan
        for arm in arms:
            q = queries[arm]
            grp = q[q["app"].astype(str) == app]
            if not len(grp):
                continue
            lat = np.sort(grp["latency_ms"].to_numpy(dtype=float))  # NaN (not served) sorts last
            lat = lat[np.isfinite(lat)]
            if len(lat):
                ax.plot(lat, np.arange(1, len(lat) + 1) / len(grp), lw=1, label=arm, color=colors[arm])
            slo = float(grp["slo_ms"].iloc[0])
        if np.isfinite(slo):
            ax.axvline(slo, ls=":", color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(f"{app} (SLO {slo:g} ms)", fontsize=9)
        ax.set_xlabel("latency (ms, log)")
        ax.set_ylim(0, 1.01)
    axes.flat[0].set_ylabel("CDF over all queries")
    axes.flat[0].legend(fontsize=7, loc="upper left")
    _save(fig, path, title)


def plot_seed_spread(values: Mapping[str, Mapping[str, Mapping[int, float]]], path: Path, title: str = "") -> None:
    """The spread over seeds: per arm (``values[arm][metric][seed]``), the SLO violation rate
    and the cost of every seed as dots, their mean as a bar (seeds pair across arms: the same
    seed draws the same arrivals)."""
    arms = list(values)
    colors = _arm_colors(arms)
    panels = (("slo_violation_rate", "SLO violation rate"), ("total_cost", "cost ($)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(max(8, 0.9 * len(arms) + 4), 4))
    rng = np.random.default_rng(0)  # jitter only: the figure is the same on every draw
    for ax, (key, label) in zip(axes, panels, strict=True):
        for i, arm in enumerate(arms):
            ys = np.array([v for v in values[arm].get(key, {}).values() if not math.isnan(v)], dtype=float)
            if not len(ys):
                continue
            ax.bar(i, ys.mean(), color=colors[arm], alpha=0.35, width=0.7)
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(ys)), ys, color=colors[arm], s=14, zorder=3)
        ax.set_xticks(range(len(arms)))
        ax.set_xticklabels(arms, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel(label)
    _save(fig, path, title + " (each dot a seed)")
