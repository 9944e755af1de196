"""A run's output folder: the files it writes and that each reads back as written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments.outputs import write_run
from infaas_sim.simulation import RunResult


def test_actions_round_trip_whatever_the_variant_ids_hold(tmp_path: Path) -> None:
    # Actions name variant ids, which a user's catalog may spell with commas and quotes.
    actions = [(0.0, 'load a,b "quoted" as instance 0 on worker 0'), (1.5, "unload instance 0 (x)")]
    empty = pd.DataFrame()
    result = RunResult(empty, empty, empty, {"queries": 0}, actions)
    write_run(result, tmp_path, figures=False)
    back = pd.read_csv(tmp_path / "actions.csv")
    assert list(back.columns) == ["t", "action"]
    assert back["action"].tolist() == [a for _, a in actions]
    assert back["t"].tolist() == [0.0, 1.5]
    assert (tmp_path / "summary.json").is_file()


def _result(policy: str) -> RunResult:
    empty = pd.DataFrame()
    return RunResult(empty, empty, empty, {"queries": 0, "policy": policy}, [])


def test_an_earlier_runs_results_move_aside_never_deleted(tmp_path: Path) -> None:
    import json

    write_run(_result("first"), tmp_path, figures=False)
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "mine.png").write_bytes(b"a user's file")
    write_run(_result("second"), tmp_path, figures=False)
    assert json.loads((tmp_path / "summary.json").read_text())["policy"] == "second"
    old = tmp_path / ".previous" / "1"
    assert json.loads((old / "summary.json").read_text())["policy"] == "first"
    assert (old / "figures" / "mine.png").read_bytes() == b"a user's file"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging")]


def test_a_failed_run_leaves_only_its_error_beside_no_earlier_summary(tmp_path: Path) -> None:
    from experiments.outputs import write_error

    write_run(_result("earlier"), tmp_path, figures=False)
    write_error(tmp_path, "error: something")
    assert not (tmp_path / "summary.json").exists() and not (tmp_path / "queries.parquet").exists()
    assert (tmp_path / "error.txt").read_text() == "error: something\n"
    assert (tmp_path / ".previous" / "1" / "summary.json").is_file()


def test_a_write_that_fails_leaves_no_partial_results(tmp_path: Path, monkeypatch: object) -> None:
    import pytest

    class Broken(pd.DataFrame):
        def to_parquet(self, *a: object, **k: object) -> None:  # type: ignore[override]
            raise OSError("disk full")

    result = RunResult(Broken(), pd.DataFrame(), pd.DataFrame(), {"queries": 0}, [])
    with pytest.raises(OSError, match="disk full"):
        write_run(result, tmp_path, figures=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
