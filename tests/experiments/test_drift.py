"""experiment=drift (issue 17): the same policy with and without online re-profiling, on a run
whose CPU workers drift 2x slower than their profile at 60 s, and on the same run without it.

Configuration only: the sweep itself is run by hand (docs/serving.md, "Online re-profiling").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from infaas_sim.experiment import build_run
from infaas_sim.reprofile import ReprofileSpec
from infaas_sim.simulation import Fault

CONF = Path(__file__).resolve().parents[2] / "experiments" / "conf"


def composed(*overrides: str) -> dict[str, Any]:
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("config", overrides=list(overrides))
    plain = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(plain, dict)
    return {str(k): v for k, v in plain.items()}


def test_the_sweep_pairs_both_arms_on_both_scenarios_over_three_seeds() -> None:
    exp = yaml.safe_load((CONF / "experiment" / "drift.yaml").read_text())
    params = {k: str(v).split(",") for k, v in exp["hydra"]["sweeper"]["params"].items()}
    assert params == {"+scenario": ["drift", "drift_control"], "+arm": ["infaas_cpu", "infaas_cpu_reprofile"],
                      "run.seed": ["0", "1", "2"]}  # fmt: skip
    assert exp["hydra"]["launcher"]["n_jobs"] == 2 and exp["hydra"]["sweep"]["dir"].startswith("multirun/drift/")


def test_the_arms_differ_only_in_reprofiling_and_the_scenarios_only_in_the_drift() -> None:
    runs = {}
    for scenario in ("drift", "drift_control"):
        for arm in ("infaas_cpu", "infaas_cpu_reprofile"):
            cfg = composed("+experiment=drift", f"+scenario={scenario}", f"+arm={arm}")
            assert cfg["policy"]["name"] == "infaas" and cfg["cluster"]["workers"] == {"cpu": "m5.2xlarge"}
            runs[scenario, arm] = build_run(cfg["run"])
    drifted = runs["drift", "infaas_cpu"]
    assert drifted.duration_s == 300
    assert drifted.faults == (Fault(at_s=60, kind="drift", factor=2.0, hardware="cpu"),)
    assert drifted.reprofile == ReprofileSpec()  # off
    assert runs["drift", "infaas_cpu_reprofile"].reprofile == ReprofileSpec(enabled=True)
    assert runs["drift_control", "infaas_cpu"].faults == ()
    for arm in ("infaas_cpu", "infaas_cpu_reprofile"):
        a, b = runs["drift", arm], runs["drift_control", arm]
        assert (a.duration_s, a.seed, a.reprofile) == (b.duration_s, b.seed, b.reprofile)
