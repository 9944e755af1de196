"""A run's output folder: the files it writes and that each reads back as written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from infaas_sim.outputs import write_run
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
