"""Hydra callback: after a multirun, gather every job's summary.json into one table; after a
reproduction sweep (jobs labelled ``+arm=...``, experiment=reproduce / quick), also write the
comparison tables and figures per scenario (experiments/comparison.py). Jobs that failed are listed
on stderr with their one-line errors and kept in :data:`FAILED`, so that the command exits
non-zero (``experiments.run.cli``): a sweep that lost jobs is never mistaken for a complete one."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

SUMMARY_COLUMNS = [
    "policy",
    "queries",
    "throughput_qps",
    "slo_violation_rate",
    "latency_p50_ms",
    "latency_p99_ms",
    "total_cost",
    "cost_per_1k_queries",
    "mean_accuracy",
    "rejected",
    "failed",
]


def collect(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per finished job under ``sweep_dir`` (jobs that failed show their error)."""
    rows = []
    root = Path(sweep_dir)
    for job in sorted(p for p in root.iterdir() if p.is_dir()):
        row: dict[str, Any] = {"job": job.name}
        if (job / "summary.json").is_file():
            s = json.loads((job / "summary.json").read_text())
            row.update({k: s.get(k) for k in SUMMARY_COLUMNS})
            for k, v in (s.get("utilisation") or {}).items():
                row[f"util_{k}"] = v
        elif (job / "error.txt").is_file():
            row["error"] = (job / "error.txt").read_text().strip()
        else:
            continue
        rows.append(row)
    return pd.DataFrame(rows)


# "<job folder>: <error>" for each job of the last multirun in this process that failed.
FAILED: list[str] = []


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        table = collect(sweep_dir)
        table.to_csv(sweep_dir / "sweep_summary.csv", index=False)
        with pd.option_context("display.width", 200, "display.max_columns", 30):
            text = table.to_string(index=False)
        (sweep_dir / "sweep_summary.txt").write_text(text + "\n")
        print(f"\nsweep summary ({sweep_dir / 'sweep_summary.csv'}):\n{text}")
        from experiments.comparison import load_jobs, write_report  # lazily: matplotlib, only for a sweep

        jobs = load_jobs(sweep_dir)
        if any(j.labelled for j in jobs):  # +scenario / +arm: a side-by-side comparison
            from experiments.claims import claims_for
            from experiments.report import print_report

            print_report(write_report(sweep_dir, claims=claims_for), sweep_dir)
        failed = [f"{row['job']}: {row['error']}" for _, row in table.iterrows()
                  if isinstance(row.get("error"), str)] if "error" in table else []  # fmt: skip
        FAILED[:] = failed
        if failed:
            print(f"error: {len(failed)} of {len(table)} jobs failed:", file=sys.stderr)
            for line in failed:
                print(f"  {line}", file=sys.stderr)
