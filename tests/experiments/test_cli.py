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
    # The records were streamed into the folder as the run went, and renamed once whole.
    assert not (out / ".queries.parquet.partial").exists()
    assert queries["qid"].tolist() == list(range(len(queries)))


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
        ("+cluster.instance_types.mine={kind: cpu, vcpus: abc, memory_mb: 1024, price_per_hour: 0.1}",
         "cluster.instance_types.mine.vcpus must be a int, got 'abc'"),
        ("trace.qps=1e12", "arrivals in the run; the limit is 2e+08"),
        ("run.faults=[{at_s: soon}]", "fault at_s must be a finite number, got 'soon'"),
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
    assert not (out / ".queries.parquet.partial").exists()
    assert (out / "error.txt").read_text().startswith("error: ")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["policy=nosuch"], "unknown policy 'nosuch' for 'policy=nosuch' (known: clipper_plus, hpa, infaas"),
        (["polcy=static"], "unknown option 'polcy' in 'polcy=static' (known: "),
        (["catalog=nonexistent"], "unknown catalog 'nonexistent'"),
        (["-m", "policy=static,nosuch"], "unknown policy 'nosuch'"),
        (["trace.qps=[1,"], "bad command-line override"),
        # a _target_ instantiates code: only the project's sweep callbacks, from the command line
        (["+hydra.callbacks.evil={_target_: shutil.rmtree, path: /tmp/x}"], "_target_ 'shutil.rmtree' is not allowed"),
        (["+x._target_=os.remove"], "_target_ 'os.remove' is not allowed"),
    ],
)
def test_a_mistyped_group_option_or_key_is_one_line_naming_the_known_ones(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    proc = cli(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr


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


@pytest.mark.parametrize(("sig", "code"), [(2, 130), (15, 143)])
def test_an_interrupted_run_keeps_what_it_has_and_says_it_is_incomplete(tmp_path: Path, sig: int, code: int) -> None:
    import signal
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.run", f"hydra.run.dir={out}", "trace=poisson", "trace.qps=50",
         "workload=single", "run.duration_s=20000", "run.progress=false", "outputs.figures=false"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    log = out / "run.log"
    while time.monotonic() < deadline and "infaas-sim" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.2)
    time.sleep(3.0)  # into the run loop
    t0 = time.monotonic()
    proc.send_signal(signal.Signals(sig))
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 30
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"error: interrupted by {signal.Signals(sig).name} at t = ")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and "interrupted by" in summary["interrupted"]
    queries = pd.read_parquet(out / "queries.parquet")
    assert len(queries) == summary["queries"] > 0
    assert summary["served"] + summary["rejected"] + summary["failed"] == summary["queries"]
    assert "interrupted by" in (out / "run.log").read_text()
    assert not (out / ".queries.parquet.partial").exists()


def test_the_run_log_holds_the_runs_lines(tmp_path: Path) -> None:
    proc = cli(tmp_path, *SHORT, "workload=single")
    assert proc.returncode == 0, proc.stderr
    log = (tmp_path / "run" / "run.log").read_text()
    assert "infaas-sim " in log and "queries, served" in log


def test_faults_that_cannot_happen_are_warned_about_in_the_log_and_summary(tmp_path: Path) -> None:
    proc = cli(tmp_path, *SHORT, "workload=single", "run.faults=[{at_s: 5, worker: 999}, {at_s: 5000}]")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert any("no worker 999" in w for w in summary["warnings"])
    assert any("at 5000 s is after the run's end" in w for w in summary["warnings"])
    assert "no worker 999" in (tmp_path / "run" / "run.log").read_text()
    assert "warning: fault crash at 5000 s" in proc.stderr


def test_a_fractional_replica_count_is_refused_not_rounded(tmp_path: Path) -> None:
    proc = cli(tmp_path, *SHORT, "workload=single", "policy=static", "policy.params.replicas=2.5")
    assert proc.returncode == 2, proc.stderr
    assert "replicas must be a whole number, 'peak' or 'mean', got 2.5" in proc.stderr.strip().splitlines()[-1]
