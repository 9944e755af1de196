"""Writing a run's outputs: Parquet records, JSON summary, PNG figures.

Nothing a run writes can be mistaken for another run's: an earlier run's results in the same
folder are first moved into ``.previous/<n>/`` (never deleted: a file this run did not write is
not this run's to delete). Files are written into a fresh staging folder and moved into place;
``summary.json`` goes last, so a folder with a summary holds one run's outputs, whole; an
interrupted run's summary says ``"complete": false``; a failed run leaves only ``error.txt``.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from infaas_sim.simulation import RunResult

# The records a run streams into its folder as it goes; renamed queries.parquet when whole.
STREAM_NAME = ".queries.parquet.partial"
OUTPUT_FILES = ("queries.parquet", "timeline.parquet", "instances.parquet", "actions.csv")
# Everything a run may leave in its folder (besides Hydra's own .hydra/ and run.log).
RESULT_NAMES = (*OUTPUT_FILES, "summary.json", "figures", "error.txt")


def retire_previous(out_dir: str | Path) -> Path | None:
    """Move an earlier run's results out of ``out_dir`` into ``.previous/<n>/``; the folder
    they went to, or None when there were none."""
    out = Path(out_dir)
    found = [out / n for n in RESULT_NAMES if (out / n).exists()]
    if not found:
        return None
    n = 1
    while (out / ".previous" / str(n)).exists():
        n += 1
    dest = out / ".previous" / str(n)
    dest.mkdir(parents=True)
    for p in found:
        p.replace(dest / p.name)
    return dest


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    return obj


def write_run(result: RunResult, out_dir: str | Path, figures: bool = True) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    retire_previous(out)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        _write_files(result, stage, figures)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)  # our own staging folder only
        raise
    for p in stage.iterdir():
        p.replace(out / p.name)
    stage.rmdir()
    if isinstance(result.records, Path):
        result.records = out / "queries.parquet"
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(_clean(result.summary), indent=2, sort_keys=True))
    tmp.replace(out / "summary.json")
    return out


def _write_files(result: RunResult, stage: Path, figures: bool) -> None:
    if isinstance(result.records, Path):  # streamed as the run went: moved, not rewritten
        result.records = result.records.replace(stage / "queries.parquet")
    else:
        result.records.to_parquet(stage / "queries.parquet", index=False)
    result.timeline.to_parquet(stage / "timeline.parquet", index=False)
    result.instances.to_parquet(stage / "instances.parquet", index=False)
    # The csv module quotes what needs it, so any variant id (a comma, a quote) round-trips.
    with open(stage / "actions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("t", "action"))
        writer.writerows((f"{t:.6f}", a) for t, a in result.actions)
    if figures:
        from experiments.figures import plot_latency_cdf, plot_timeline  # matplotlib only when drawing

        (stage / "figures").mkdir()
        title = f"{result.summary.get('policy', '')}"
        plot_timeline(result.timeline, stage / "figures" / "timeline.png", title)
        # Only the columns it draws: a streamed hour's records are not read back whole.
        cdf = result.query_columns(["app", "status", "latency_ms", "slo_ms"])
        plot_latency_cdf(cdf, stage / "figures" / "latency_cdf.png", title)


def write_error(out_dir: str | Path, message: str) -> None:
    """A failed run: nothing that looks like results (an earlier run's go to ``.previous/``),
    only the error."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    retire_previous(out)
    (out / "summary.json.tmp").unlink(missing_ok=True)  # a write this run began
    (out / STREAM_NAME).unlink(missing_ok=True)  # records it streamed
    (out / "error.txt").write_text(message + "\n")
