"""infaas-plan: a small plan meets its goal and its recommended.yaml reproduces its figures;
the same seed gives the same plan; an interrupted plan keeps what it evaluated; bad input is
one line and exit status 2; the choice logic (Pareto front, binding goal) on hand-made data."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from experiments import plan as plan_app
from experiments.planning.choose import choose, pareto_front
from experiments.planning.evaluate import Evaluation
from experiments.planning.settings import Goals, PlanSettings, parse_settings
from experiments.planning.space import Candidate

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "experiments" / "conf"
# Two applications on the default catalog, a 2-minute Poisson trace at a low rate.
APPS = (
    "workload.apps=[{name: interactive, target: image-classification, dataset: imagenet, slo_ms: 50,"
    " min_accuracy: 0.70, share: 0.5}, {name: standard, target: image-classification, dataset: imagenet,"
    " slo_ms: 200, min_accuracy: 0.76, share: 0.5}]"
)
SMALL = ["trace=poisson", "trace.qps=20", "run.duration_s=120", APPS]
# Three policies, a few knob values each, two CPU instance types: a grid of 10 candidates.
THREE = [
    "plan.space.policies=[infaas,static,sagemaker_plus]",
    "plan.space.knobs.infaas.slack=[1.05]",
    "plan.space.knobs.infaas.price_aware=[false]",
    "plan.space.knobs.infaas.cpu_high_util=[0.8]",
    "plan.space.knobs.infaas.vm_scale_out=[one]",
    "plan.space.knobs.static.hardware=[any]",
    "plan.space.knobs.static.target_util=[0.8]",
    "plan.space.knobs.sagemaker_plus.hardware=[any]",
    "plan.space.knobs.sagemaker_plus.safety_factor=[0.5]",
    "plan.space.instance_types.cpu=[m5.2xlarge,c5.2xlarge]",
]


def run_plan(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "experiments.plan", f"hydra.run.dir={tmp_path}/plan", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_plan_yaml_mirrors_the_settings_defaults() -> None:
    node = OmegaConf.to_container(OmegaConf.load(CONF / "plan.yaml"))
    assert isinstance(node, dict)
    assert parse_settings(node["plan"]) == PlanSettings()


def test_a_small_plan_meets_a_1pct_goal_and_its_yaml_reproduces_it(tmp_path: Path) -> None:
    proc = run_plan(tmp_path, *SMALL, *THREE, "plan.seeds=2", "plan.n_jobs=2", "plan.goals.max_violation_rate=0.01")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "plan"
    info = json.loads((out / "plan.json").read_text())
    assert info["status"] == "met" and not info["partial"] and info["search"] == "grid"
    assert info["evaluated"] == info["space_size"] == 10
    rec = info["recommended"]
    assert rec["violation_rate"] <= 0.01 and rec["meets_goals"] and rec["seeds"] == 2
    assert set(info["runners_up"]) | {rec["policy"]} == {"infaas", "static", "sagemaker+"}
    table = pd.read_csv(out / "candidates.csv")
    assert len(table) == 10 and set(table["policy"]) == {"infaas", "static", "sagemaker+"}
    meeting = table[table["meets_goals"]]
    assert rec["cost_per_hour"] == pytest.approx(meeting["cost_per_hour"].min())
    front = pd.read_csv(out / "pareto.csv")
    assert rec["candidate"] in set(front["candidate"])
    assert (out / "pareto.md").read_text().startswith("| candidate |")
    assert (out / "pareto.png").stat().st_size > 10_000
    assert "recommended:" in proc.stdout and "runner-up" in proc.stdout

    # The saved YAML through infaas-sim, from another folder (the conf comes from the package):
    # the plan's first seed, the same figures.
    rerun = subprocess.run(
        [sys.executable, "-m", "experiments.run", "--config-path", str(out), "--config-name", "recommended",
         f"hydra.run.dir={tmp_path}/rerun", "outputs.figures=false", "run.progress=false"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads((tmp_path / "rerun" / "summary.json").read_text())
    first = rec["runs"][0]
    assert summary["seed"] == first["seed"] == 0
    assert summary["policy"] == rec["policy"]
    for key in ("slo_violation_rate", "total_cost", "mean_accuracy", "queries"):
        assert summary[key] == pytest.approx(first[key], rel=1e-12), key


def compose_plan(*overrides: str) -> dict[str, Any]:
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("plan", overrides=list(overrides))
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    return {str(k): v for k, v in plain.items()}


CHOICES = {"trace": "poisson", "workload": "mix3", "catalog": "default", "cluster": "aws", "executor": "sim",
           "run": "default"}  # fmt: skip
OPTUNA = [
    "trace=poisson", "trace.qps=20", "run.duration_s=30", APPS,
    "plan.space.policies=[static,sagemaker_plus,clipper_plus]", "plan.seeds=1", "plan.trials=6",
    "plan.grid_max=0", "plan.batch=4", "plan.figures=false",
]  # fmt: skip


def test_the_same_seed_gives_the_same_plan_whatever_n_jobs(tmp_path: Path) -> None:
    one = compose_plan(*OPTUNA, "plan.n_jobs=1")
    two = compose_plan(*OPTUNA, "plan.n_jobs=2")
    assert plan_app.plan(one, tmp_path / "a", CHOICES) == 0
    assert plan_app.plan(two, tmp_path / "b", CHOICES) == 0
    a = pd.read_csv(tmp_path / "a" / "candidates.csv")
    b = pd.read_csv(tmp_path / "b" / "candidates.csv")
    assert len(a) == 6 and json.loads((tmp_path / "a" / "plan.json").read_text())["search"] == "optuna"
    pd.testing.assert_frame_equal(a, b)
    # Each policy's defaults are tried first, so each has a runner-up or is the recommendation.
    assert set(a["policy"]) == {"static", "sagemaker+", "clipper+"}


def test_candidates_run_on_ray_give_the_same_plan(tmp_path: Path) -> None:
    # plan.backend=ray runs the candidates' simulations through Ray's joblib backend (a local
    # Ray here; plan.ray_address joins a cluster): the same seed, the same candidates and figures.
    pytest.importorskip("ray", reason="the ray extra is not installed")
    local = compose_plan(*OPTUNA, "plan.n_jobs=2")
    on_ray = compose_plan(*OPTUNA, "plan.n_jobs=2", "plan.backend=ray")
    assert plan_app.plan(local, tmp_path / "a", CHOICES) == 0
    assert plan_app.plan(on_ray, tmp_path / "b", CHOICES) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / "candidates.csv"),
                                  pd.read_csv(tmp_path / "b" / "candidates.csv"))  # fmt: skip


def test_an_interrupted_plan_keeps_what_it_evaluated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = plan_app.evaluate
    done = []

    def stops_after_two(*args: Any, **kwargs: Any) -> Iterator[Evaluation]:
        for ev in real(*args, **kwargs):
            if len(done) == 2:
                raise KeyboardInterrupt  # what Ctrl-C does in the middle of a round
            done.append(ev)
            yield ev

    monkeypatch.setattr(plan_app, "evaluate", stops_after_two)
    cfg = compose_plan(*OPTUNA, "plan.n_jobs=1")
    assert plan_app.plan(cfg, tmp_path / "p", CHOICES) == 130
    info = json.loads((tmp_path / "p" / "plan.json").read_text())
    assert info["partial"] and info["evaluated"] == 2
    assert len(pd.read_csv(tmp_path / "p" / "candidates.csv")) == 2
    assert "Interrupted" in (tmp_path / "p" / "plan.md").read_text()
    assert (tmp_path / "p" / "recommended.yaml").is_file()


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("plan.space.policies=[infaas,nosuch]", "unknown policy 'nosuch' in plan.space (known: clipper+, hpa"),
        ("plan.goals.max_violation_rate=-0.01", "plan.goals.max_violation_rate must be >= 0"),
        ("plan.goals.budget_per_hour=-2", "plan.goals.budget_per_hour must be >= 0"),
        ("plan.space.knobs.static.nosuch=[1]", "static has no parameter(s) ['nosuch']"),
        ("plan.goals.max_violaton=0.1", "unknown plan option 'plan.goals.max_violaton'"),
        ("policy=infaas", "name them with plan.space.policies"),
        ("plan.backend=dask", "plan.backend must be 'loky' or 'ray', got 'dask'"),
    ],
)
def test_bad_input_is_a_one_line_error_and_exit_2(tmp_path: Path, override: str, needle: str) -> None:
    proc = run_plan(tmp_path, "trace=poisson", "run.duration_s=10", override)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
    assert not (tmp_path / "plan" / "plan.json").exists()


def _ev(policy: str, cost: float, viol: float, acc: float = 0.75) -> Evaluation:
    cand = Candidate(policy, (("k", cost),), (("cpu", "m5.2xlarge", 4),))
    runs = tuple({"cost_per_hour": cost, "slo_violation_rate": viol, "mean_accuracy": acc, "seed": s} for s in (0, 1))
    return Evaluation(cand, runs)


def test_pareto_front_recommendation_and_runners_up() -> None:
    evs = [_ev("a", 1.0, 0.05), _ev("a", 2.0, 0.005), _ev("b", 3.0, 0.001), _ev("b", 4.0, 0.002), _ev("c", 0.5, 0.5)]
    front = pareto_front(evs, Goals())
    assert [(e.candidate.policy, e.mean("cost_per_hour")) for e in front] == [("c", 0.5), ("a", 1.0), ("a", 2.0),
                                                                               ("b", 3.0)]  # fmt: skip
    choice = choose(evs, Goals(max_violation_rate=0.01))
    assert choice.recommended is not None and choice.recommended.mean("cost_per_hour") == 2.0
    assert choice.runners_up["b"].mean("cost_per_hour") == 3.0
    assert choice.runners_up["c"].mean("cost_per_hour") == 0.5  # meets nothing: its nearest


def test_when_nothing_meets_the_goals_it_names_the_binding_goal_and_the_nearest() -> None:
    evs = [_ev("a", 1.0, 0.05), _ev("a", 2.0, 0.005), _ev("b", 3.0, 0.001)]
    choice = choose(evs, Goals(max_violation_rate=0.01, budget_per_hour=1.5))
    assert choice.recommended is None and choice.binding
    assert choice.nearest is not None and choice.nearest.mean("cost_per_hour") == 2.0
    assert choice.binding == ("budget_per_hour",)
    assert "binding: budget_per_hour" in choice.message
    # Accuracy as the binding goal: every candidate is below the floor.
    acc = choose(evs, Goals(max_violation_rate=0.1, min_accuracy=0.9))
    assert acc.recommended is None and acc.binding == ("min_accuracy",)


def test_a_policy_that_cannot_serve_the_workload_is_skipped_with_its_reason() -> None:
    cfg = compose_plan(*OPTUNA, "plan.space.policies=[static,themis]", "plan.n_jobs=1")
    space = plan_app.build_space({k: cfg[k] for k in plan_app.SECTIONS}, parse_settings(cfg["plan"]))
    assert [p.name for p in space.policies] == ["static"]
    assert "serves exactly one application" in space.skipped["themis"]


def test_list_valued_knobs_are_candidates_and_policy_parameters() -> None:
    from experiments.planning.settings import parse_space
    from experiments.planning.space import policy_spaces

    pol = policy_spaces(["themis"], parse_space({"knobs": {"themis": {"horizontal_cores": [[1], [1, 2]]}}}))[0]
    cand = Candidate("themis", pol.default(), (("cpu", "m5.2xlarge", 4),))
    assert {cand: 1}[cand] == 1  # hashable
    assert cand.knob_dict()["horizontal_cores"] == [1] and "horizontal_cores=[1]" in cand.key


@pytest.fixture(scope="module")
def digits_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One profiled model (a few seconds): what real mode needs to replay a recommendation."""
    pytest.importorskip("onnxruntime", reason="the real-execution extra is not installed")
    pytest.importorskip("sklearn", reason="the real-execution extra is not installed")
    from infaas_sim.profiling.build import build_catalog
    from infaas_sim.profiling.zoo import builtin_family

    folder = tmp_path_factory.mktemp("digits")
    path, _ = build_catalog(builtin_family(["digits-linear"]), folder, cores=[1], max_batch=4,
                            ort_precisions=["fp32"], warmup=1, repeats=4)  # fmt: skip
    return path


def test_verify_replays_the_recommendation_real_and_simulated(tmp_path: Path, digits_catalog: Path) -> None:
    proc = run_plan(
        tmp_path, "--verify", f"catalog.path={digits_catalog}", "workload=digits", "cluster=local", "trace=poisson",
        "trace.qps=20", "run.duration_s=20", "plan.space.policies=[sagemaker_plus]", "plan.seeds=1", "plan.n_jobs=1",
        "plan.space.knobs.sagemaker_plus.hardware=[cpu]", "plan.space.knobs.sagemaker_plus.sizing=[mean]",
        "plan.verify_s=3", "plan.figures=false",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads((tmp_path / "plan" / "verify.json").read_text())
    assert set(out) == {"simulated", "real"}
    # The same arrivals in both arms (the same seed and window); every one accounted for.
    assert out["real"]["queries"] == out["simulated"]["queries"] > 0
    assert out["real"]["served"] + out["real"]["rejected"] <= out["real"]["queries"]
    assert "| slo_violation_rate |" in proc.stdout


def test_verify_on_a_catalog_without_artifacts_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = run_plan(
        tmp_path, "--verify", "trace=poisson", "trace.qps=20", "run.duration_s=20",
        "plan.space.policies=[sagemaker_plus]", "plan.space.knobs.sagemaker_plus.hardware=[cpu]",
        "plan.space.knobs.sagemaker_plus.sizing=[mean]", "plan.space.instance_types.cpu=[m5.2xlarge]",
        "plan.seeds=1", "plan.n_jobs=1", "plan.figures=false",
    )  # fmt: skip
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error")]
    assert lines == [lines[0]] and lines[0].startswith("error: verify: ") and "profiled catalog" in lines[0]
    assert (tmp_path / "plan" / "plan.json").is_file()  # the plan itself stands
