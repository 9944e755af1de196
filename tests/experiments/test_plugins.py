"""A policy from a separate installed package, found through its entry point, runs with
``policy=<its name>``: nothing in this repository names it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

PLUGIN = '''
from infaas_sim.policy import register_policy
from policies.static import StaticPolicy


@register_policy("tenfold")
class TenfoldPolicy(StaticPolicy):
    """static with ten replicas per application: a user's policy in a package of its own."""

    def __init__(self, **params):
        params.setdefault("replicas", 10)
        super().__init__(**params)
'''


def _install(site: Path) -> None:
    """An installed distribution as importlib.metadata sees one: the package and its
    .dist-info folder (METADATA, entry_points.txt) on the path."""
    (site / "tenfold_plugin").mkdir(parents=True)
    (site / "tenfold_plugin" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "tenfold_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tenfold-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[infaas_sim.policies]\ntenfold = tenfold_plugin:TenfoldPolicy\n")


def test_a_policy_from_another_installed_package_runs_by_its_name(tmp_path: Path) -> None:
    _install(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "experiments.run", "policy=tenfold", "trace=poisson", "trace.qps=20",
         "workload=single", "run.duration_s=20", "outputs.figures=false", f"hydra.run.dir={out}"],
        capture_output=True, text=True, env=env, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policy"] == "tenfold" and summary["served"] > 300
    # Without the package the name is unknown: one line naming the known policies, exit 2.
    bad = subprocess.run(
        [sys.executable, "-m", "experiments.run", "policy=tenfold", f"hydra.run.dir={tmp_path / 'bad'}"],
        capture_output=True, text=True, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert bad.returncode != 0
