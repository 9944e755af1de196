"""Figures of one run: the timeline and the latency CDF (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

from pathlib import Path

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
    ax.plot(t, timeline["violations"] + timeline["rejections"] + timeline["failures"], label="SLO misses/s", lw=1)
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


def plot_latency_cdf(queries: pd.DataFrame, path: Path, title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    served = queries[queries["status"] == "served"]
    for app, grp in served.groupby("app", observed=True):
        lat = np.sort(grp["latency_ms"].to_numpy())
        if len(lat):
            ax.plot(lat, np.arange(1, len(lat) + 1) / len(lat), label=str(app))
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
