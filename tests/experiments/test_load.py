"""infaas-load: an open-loop replay against an in-process infaas-serve; the client's records
and the server's must account for the same requests. Nothing is timed."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("aiohttp", reason="the serve extra is not installed")
pytest.importorskip("fastapi", reason="the serve extra is not installed")

from experiments.outputs import write_run
from experiments.serving.client import LoadConfig, model_name, run_load
from experiments.serving.server import Serving
from infaas_sim.experiment import build_apps, build_workload
from infaas_sim.metrics import QUERY_COLUMNS
from infaas_sim.query import Level, Requirement

APPS = {
    "apps": [
        {"name": "digits", "level": "task", "target": "digit-classification", "dataset": "digits", "slo_ms": 100,
         "min_accuracy": 0.9, "share": 3.0, "batch": 2},
        # No variant is this accurate: every query of it is a 400 with the catalog's reason.
        {"name": "impossible", "level": "task", "target": "digit-classification", "dataset": "digits",
         "slo_ms": 100, "min_accuracy": 0.9999, "share": 1.0},
    ]
}  # fmt: skip


def test_model_names_follow_the_levels() -> None:
    assert model_name(Requirement(Level.TASK, "digit-classification", "digits", 50.0)) == "digit-classification-digits"
    assert model_name(Requirement(Level.ARCHITECTURE, "digits-linear", "", 50.0)) == "digits-linear"
    assert model_name(Requirement(Level.VARIANT, "digits-linear-ort-fp32-1c")) == "digits-linear-ort-fp32-1c"


def test_replay_is_accounted_for_on_both_sides(
    serve_catalog: Path, serve_config: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    serving = Serving(serve_config(serve_catalog), tmp_path / "server")
    url = serving.start()
    try:
        apps = build_apps(APPS)
        workload = build_workload({"name": "poisson", "qps": 40}, apps, 2.0, 0, APPS)
        result = run_load(workload, 2.0, LoadConfig(url=url))
    finally:
        server = serving.stop()
    client = result.queries
    write_run(result, tmp_path / "client", figures=False)
    assert list(pd.read_parquet(tmp_path / "client" / "queries.parquet").columns) == QUERY_COLUMNS
    n = len(workload.times)
    assert n > 0 and len(client) == n and sorted(client["qid"]) == list(range(n))
    # Every request answered, and the same counts on both sides.
    assert server.summary["requests"]["total"] == n == server.summary["queries"]
    for status in ("served", "rejected", "failed"):
        assert int((client["status"] == status).sum()) == server.summary[status], status
    impossible = client[client["app"] == "impossible"]
    assert (impossible["status"] == "rejected").all()
    assert impossible["reason"].str.startswith("no variant meets task digit-classification/digits").all()
    served = client[client["status"] == "served"]
    assert len(served) > 0 and (served["exec_batch"] >= 2).all() and (served["accuracy"] >= 0.9).all()
    assert set(served["variant"]) <= set(server.queries["variant"].dropna())
    summary = json.loads((tmp_path / "client" / "summary.json").read_text())
    assert summary["client"]["requests"] == n


def test_cli_unreachable_server_is_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [sys.executable, "-c", "from experiments.load import cli; cli()", f"load.url=http://127.0.0.1:{port}",
            "run.duration_s=1", f"hydra.run.dir={tmp_path}"]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: server http://127.0.0.1:{port}: ") and len(done.stderr.splitlines()) == 1
    assert (tmp_path / "error.txt").is_file()


def test_load_config_yaml_matches_the_dataclass() -> None:
    from omegaconf import OmegaConf

    from experiments.load import load_config

    yaml = OmegaConf.to_container(OmegaConf.load(Path("experiments/conf/load/default.yaml")))
    assert isinstance(yaml, dict)
    assert load_config(yaml) == LoadConfig()
