"""``static``: fixed variants and replica counts, sized to the run's peak or mean rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from infaas_sim.errors import ConfigError
from infaas_sim.experiment import run_experiment
from infaas_sim.policy import make_policy
from infaas_sim.simulation import RunResult

CONF = Path(__file__).resolve().parents[2] / "experiments" / "conf"


def run(arm: str) -> RunResult:
    overrides = ["+scenario=medium", f"+arm={arm}", "run.duration_s=120", "run.drain_s=30", "run.progress=false"]
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = OmegaConf.to_container(compose("config", overrides=overrides), resolve=False)
    assert isinstance(cfg, dict)
    cfg.pop("hydra", None)
    return run_experiment({str(k): v for k, v in cfg.items()})


@pytest.fixture(scope="module")
def peak_and_mean() -> tuple[RunResult, RunResult]:
    return run("static_peak"), run("static_mean")


def test_replicas_are_provisioned_before_traffic_and_never_change(peak_and_mean: tuple[RunResult, ...]) -> None:
    for res in peak_and_mean:
        assert res.actions and all(t == 0.0 for t, _ in res.actions)  # setup only, no autoscaling
        inst = res.timeline["instances"]
        assert inst.min() == inst.max() > 0


def test_peak_sizing_holds_more_replicas_and_meets_more_slos(peak_and_mean: tuple[RunResult, ...]) -> None:
    peak, mean = peak_and_mean
    assert peak.timeline["instances"].iloc[0] > mean.timeline["instances"].iloc[0]
    assert peak.summary["total_cost"] >= mean.summary["total_cost"]
    assert peak.summary["queries"] == mean.summary["queries"]  # the same arrivals
    # the burst overruns the mean-sized replicas; the peak-sized ones absorb it
    assert peak.summary["slo_violation_rate"] < 0.01 < mean.summary["slo_violation_rate"]
    # the same variants: only the counts differ
    used = [set(r.queries.loc[r.queries["status"] == "served", "variant"].astype(str)) for r in peak_and_mean]
    assert used[0] == used[1]


@pytest.mark.parametrize("params", [{"replicas": "lots"}, {"replicas": 0}, {"target_util": 1.5}])
def test_bad_parameters_are_one_line_config_errors(params: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as exc:
        make_policy("static", **params)
    assert "\n" not in str(exc.value)


def test_a_pipeline_gets_a_variant_per_stage_and_every_stage_is_served(
    pipeline_catalog: Any, h: Any, conserved: Any
) -> None:
    app = h.pipeline_app(400.0)
    t = h.poisson_times(20, 20.0, seed=3)
    policy = make_policy("static", replicas=1)
    res = h.simulate(pipeline_catalog, h.workload([app], t), policy, 20.0)
    conserved(res, len(t))
    q = res.queries
    assert (q["status"] == "served").all()
    stage_variants = q["stage_variants"].map(tuple)
    assert {sv[0] for sv in stage_variants} <= {"det-cpu", "det-gpu"}
    assert {sv[1] for sv in stage_variants} <= {v.variant_id for v in h.VARIANTS}


def test_a_pipeline_with_one_named_variant_is_an_error(pipeline_catalog: Any, h: Any) -> None:
    app = h.pipeline_app(400.0)
    policy = make_policy("static", variants={"video": "det-cpu"})
    with pytest.raises(ConfigError, match="one per stage"):
        h.simulate(pipeline_catalog, h.workload([app], h.periodic_times(0.5, 2.0)), policy, 2.0)
