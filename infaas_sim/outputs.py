"""Writing a run's outputs: Parquet records, JSON summary, PNG figures.

Files are written into a staging folder and moved into place; ``summary.json`` goes last, so
a folder with a summary is complete, and a failed run leaves only ``error.txt``.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from typing import Any

from infaas_sim.figures import plot_latency_cdf, plot_timeline
from infaas_sim.simulation import RunResult

OUTPUT_FILES = ("queries.parquet", "timeline.parquet", "instances.parquet", "actions.csv")


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    return obj


def write_run(result: RunResult, out_dir: str | Path, figures: bool = True) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stage = out / ".staging"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    result.queries.to_parquet(stage / "queries.parquet", index=False)
    result.timeline.to_parquet(stage / "timeline.parquet", index=False)
    result.instances.to_parquet(stage / "instances.parquet", index=False)
    # The csv module quotes what needs it, so any variant id (a comma, a quote) round-trips.
    with open(stage / "actions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("t", "action"))
        writer.writerows((f"{t:.6f}", a) for t, a in result.actions)
    if figures:
        (stage / "figures").mkdir()
        title = f"{result.summary.get('policy', '')}"
        plot_timeline(result.timeline, stage / "figures" / "timeline.png", title)
        plot_latency_cdf(result.queries, stage / "figures" / "latency_cdf.png", title)
    for p in stage.iterdir():
        target = out / p.name
        if target.is_dir():
            shutil.rmtree(target)
        p.replace(target)
    stage.rmdir()
    (out / "error.txt").unlink(missing_ok=True)
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(_clean(result.summary), indent=2, sort_keys=True))
    tmp.replace(out / "summary.json")
    return out


def write_error(out_dir: str | Path, message: str) -> None:
    """A failed run: remove anything that would look like results, leave the error."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in (*OUTPUT_FILES, "summary.json", "summary.json.tmp"):
        (out / name).unlink(missing_ok=True)
    for name in ("figures", ".staging"):
        shutil.rmtree(out / name, ignore_errors=True)
    (out / "error.txt").write_text(message + "\n")
