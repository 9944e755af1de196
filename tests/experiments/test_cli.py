"""The Hydra app as a user runs it: outputs in a run folder, sweeps, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
SHORT = ["trace=poisson", "trace.qps=50", "run.duration_s=20", "run.progress=false", "outputs.figures=false"]


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [a for a in args if a.startswith("-")]  # argparse wants flags before the overrides
    overrides = [a for a in args if not a.startswith("-")]
    return subprocess.run(
        [sys.executable, "-m", "experiments.run", *flags, f"hydra.run.dir={tmp_path}/run",
         f"hydra.sweep.dir={tmp_path}/sweep", *overrides],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_a_run_writes_records_timeline_summary_and_figures(tmp_path: Path) -> None:
    args = [a for a in SHORT if a != "outputs.figures=false"]
    proc = cli(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "run"
    summary = json.loads((out / "summary.json").read_text())
    queries = pd.read_parquet(out / "queries.parquet")
    timeline = pd.read_parquet(out / "timeline.parquet")
    assert summary["queries"] == len(queries) > 0
    assert summary["served"] + summary["rejected"] + summary["failed"] == summary["queries"]
    # Every second of the run, and of the drain up to the last outcome.
    assert timeline["t"].tolist() == list(range(max(20, int(queries["completion"].max()) + 1)))
    assert timeline["arrivals"].sum() == len(queries)
    assert (out / "figures" / "timeline.png").stat().st_size > 10_000
    assert (out / "figures" / "latency_cdf.png").stat().st_size > 5_000
    assert not (out / "error.txt").exists()


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("run.duration_s=-5", "duration_s"),
        ("trace.qps=-1", "qps"),
        ("workload.apps.0.target=speech-recognition", "unknown task"),
        ("workload.apps.0.slo_ms=0.01", "no variant meets"),
        ("policy.params.max_replicas=many", "max_replicas"),
        ("catalog.path=/nonexistent/catalog.csv", "not found"),
        ("run.seed=-1", "run.seed must be >= 0"),
        ("run.progress=maybe", "run.progress must be true or false"),
        ("cluster.min_workers.cpu=30", "exceeds cluster.max_workers.cpu"),
    ],
)
def test_bad_input_is_a_one_line_error_and_no_results(tmp_path: Path, override: str, needle: str) -> None:
    key = override.split("=")[0]
    proc = cli(tmp_path, *[a for a in SHORT if a.split("=")[0] != key], "workload=single", override)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
    out = tmp_path / "run"
    assert not (out / "summary.json").exists() and not (out / "queries.parquet").exists()
    assert (out / "error.txt").read_text().startswith("error: ")


def test_malformed_trace_file_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "counts.txt"
    bad.write_text("3 4 5\n6 x 7\n")
    proc = cli(
        tmp_path, *SHORT[2:], "trace=twitter_real", f"trace.path={bad}", "trace.start_s=0", "trace.length_s=null"
    )
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert str(bad) in line and "line 2" in line


def test_sweep_runs_each_job_in_its_folder_and_summarises(tmp_path: Path) -> None:
    proc = cli(tmp_path, "-m", *[a for a in SHORT if not a.startswith("trace.qps")], "trace.qps=20,60")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "sweep" / "sweep_summary.csv")
    assert len(table) == 2
    assert sorted(table["queries"]) == sorted(table["queries"]) and table["queries"].iloc[0] != table["queries"].iloc[1]
    assert all((tmp_path / "sweep" / job / "summary.json").is_file() for job in table["job"])


def test_a_sweep_that_loses_a_job_exits_non_zero_and_lists_it(tmp_path: Path) -> None:
    # One good job and one with an impossible SLO: the good one's outputs are complete, the
    # failed one is listed with its one-line error, and the sweep's exit status says so.
    proc = cli(tmp_path, "-m", *SHORT, "workload=single", "workload.apps.0.slo_ms=200,0.01")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("error: 1 of 2 jobs failed"))
    assert "no variant meets" in lines[head + 1] and "slo_ms=0.01" in lines[head + 1]
    table = pd.read_csv(tmp_path / "sweep" / "sweep_summary.csv")
    ok = table[table["error"].isna()]
    assert len(ok) == 1 and (tmp_path / "sweep" / ok["job"].iloc[0] / "summary.json").is_file()


def test_the_installed_command_finds_its_config_from_any_folder(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("infaas-sim")
    if not exe.exists():
        pytest.skip(f"the console script is not installed next to {sys.executable} (run pip install -e .)")
    proc = subprocess.run(
        [str(exe), f"hydra.run.dir={tmp_path}/run", *SHORT], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["queries"] > 0
