"""The INFaaS reproduction (issue 4): its configuration, its sweep and its report.

One short Hydra sweep (``+experiment=quick``: every arm on 60 s of a low Twitter-like load)
runs the real entry point; the rest checks the configuration files against the code and the
report on a sweep folder built by hand.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir

from experiments.comparison import (
    CI_COLUMNS,
    FIGURES,
    TABLE_COLUMNS,
    load_jobs,
    relative_to,
    to_markdown,
    write_report,
)
from infaas_sim.experiment import run_experiment
from infaas_sim.policy import make_policy
from policies.infaas import InfaasPolicy
from policies.infaas_ilp import InfaasIlpPolicy
from traces.paper_slices import PAPER_SLICES, real_trace_path

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "experiments" / "conf"


def sweep_params(name: str) -> dict[str, list[str]]:
    conf = yaml.safe_load((CONF / "experiment" / f"{name}.yaml").read_text())
    return {k: str(v).split(",") for k, v in conf["hydra"]["sweeper"]["params"].items()}


# arm/ and scenario/ hold other experiments' options too: the reproduction names its own.
ARMS = sorted(sweep_params("reproduce")["+arm"])
SCENARIOS = sorted(sweep_params("reproduce")["+scenario"])


def composed(*overrides: str) -> dict[str, object]:
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("config", overrides=list(overrides))
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(plain, dict)
    plain.pop("hydra", None)
    return {str(k): v for k, v in plain.items()}


# --- configuration -------------------------------------------------------------------------------


def test_the_reproduction_sweeps_every_arm_over_every_scenario() -> None:
    for arm in ARMS:
        assert (CONF / "arm" / f"{arm}.yaml").is_file(), arm
    for scenario in SCENARIOS:
        assert (CONF / "scenario" / f"{scenario}.yaml").is_file(), scenario
    # INFaaS against its own baselines (Clipper+, SageMaker+, static) on each hardware family; the
    # Kubernetes floors were not INFaaS's baselines.
    families = ("cpu", "gpu", "inferentia")
    baselines = {f"{b}_{hw}" for b in ("clipper_plus", "sagemaker_plus", "static") for hw in families}
    assert {"infaas", "infaas_ilp"} | baselines <= set(ARMS)
    assert not {"hpa", "vpa"} & set(ARMS)
    assert {"low", "medium", "high", "low_steady", "medium_steady", "high_steady"} <= set(SCENARIOS)
    assert any(s.startswith("real_") for s in SCENARIOS)
    assert sorted(sweep_params("quick")["+arm"]) == ARMS
    # Every cell runs at least 5 seeds; the quick sweep two, so that intervals are computed.
    assert len(sweep_params("reproduce")["run.seed"]) >= 5
    assert len(sweep_params("quick")["run.seed"]) == 2


@pytest.mark.parametrize(("level", "qps"), [("low", 20), ("medium", 200), ("high", 1000)])
def test_load_levels_span_infaas_range_on_the_same_trace(level: str, qps: int) -> None:
    cfg = composed(f"+scenario={level}", "+arm=infaas")
    trace = cfg["trace"]
    assert isinstance(trace, dict) and trace == {**trace, "name": "twitter", "mean_qps": qps, "peak_to_mean": 3}
    assert cfg["workload"] == composed()["workload"]  # the mix3 applications


@pytest.mark.parametrize(("scenario", "slice_name"), [("real_infadapter", "infadapter"), ("real_themis", "themis")])
def test_real_scenarios_replay_the_papers_slices(scenario: str, slice_name: str) -> None:
    trace = composed(f"+scenario={scenario}")["trace"]
    assert isinstance(trace, dict) and trace["name"] == "replay"
    for key, value in PAPER_SLICES[slice_name].items():
        assert trace[key] == pytest.approx(value), key
    run = composed(f"+scenario={scenario}")["run"]
    assert isinstance(run, dict) and run["duration_s"] == PAPER_SLICES[slice_name]["length_s"]


def test_arms_pick_their_policy_and_cluster() -> None:
    expect = {"static_peak": ("static", "aws"), "static_mean": ("static", "aws"), "hpa": ("hpa", "aws_cpu"),
              "vpa": ("vpa", "aws_cpu"), "infaas_ilp": ("infaas-ilp", "aws_small"),
              "infaas": ("infaas", "aws")}  # fmt: skip
    for arm, (policy, cluster) in expect.items():
        cfg = composed(f"+arm={arm}")
        assert cfg["policy"]["name"] == policy  # type: ignore[index]
        want = yaml.safe_load((CONF / "cluster" / f"{cluster}.yaml").read_text())
        assert cfg["cluster"] == want, arm
    assert composed("+arm=static_peak")["policy"]["params"]["replicas"] == "peak"  # type: ignore[index]
    assert composed("+arm=static_mean")["policy"]["params"]["replicas"] == "mean"  # type: ignore[index]
    assert composed("+arm=infaas_price")["policy"]["params"]["price_aware"] is True  # type: ignore[index]
    for base, policy in (("clipper_plus", "clipper+"), ("sagemaker_plus", "sagemaker+"), ("static", "static")):
        for hw in ("cpu", "gpu", "inferentia"):
            params = composed(f"+arm={base}_{hw}")["policy"]  # type: ignore[index]
            assert params["name"] == policy  # type: ignore[index]
            assert params["params"]["hardware"] == hw and params["params"]["deployment"] == "dedicated"  # type: ignore[index]


@pytest.mark.parametrize(("conf", "cls", "name"), [("infaas", InfaasPolicy, "infaas"),
                                                   ("infaas_ilp", InfaasIlpPolicy, "infaas-ilp")])  # fmt: skip
def test_policy_config_lists_every_parameter_with_its_default(conf: str, cls: type, name: str) -> None:
    data = yaml.safe_load((CONF / "policy" / f"{conf}.yaml").read_text())
    assert data["name"] == name
    defaults = {}
    for klass in cls.__mro__:
        if klass in (InfaasPolicy, InfaasIlpPolicy):
            for k, p in inspect.signature(klass.__init__).parameters.items():  # type: ignore[misc]
                if k != "self" and p.kind is p.POSITIONAL_OR_KEYWORD:
                    defaults.setdefault(k, p.default)
    assert data["params"] == defaults
    assert make_policy(name, **data["params"]).name == name


def test_a_real_slice_without_the_trace_file_is_a_one_line_input_error(tmp_path: Path) -> None:
    cfg = composed("+scenario=real_infadapter", "+arm=static_peak", "run.duration_s=10", "run.progress=false")
    cfg["trace"] = {**cfg["trace"], "path": str(tmp_path / "absent.txt.bz2")}  # type: ignore[dict-item]
    from infaas_sim.errors import InputError

    with pytest.raises(InputError, match=r"absent\.txt\.bz2"):
        run_experiment(cfg)


@pytest.mark.skipif(real_trace_path() is None, reason="the real Twitter trace (../shared/traces) is absent")
def test_a_real_slice_runs_every_query_to_an_outcome() -> None:
    cfg = composed("+scenario=real_infadapter", "+arm=sagemaker_plus", "run.duration_s=30", "run.progress=false",
                   "run.drain_s=10")  # fmt: skip
    result = run_experiment(cfg)
    s = result.summary
    assert 27 * 30 * 0.8 <= s["queries"] <= 274 * 30  # the slice's rates: 27..274 per second
    assert s["served"] + s["rejected"] + s["failed"] == s["queries"] == len(result.queries)


# --- the quick sweep through the real entry point ------------------------------------------------


@pytest.fixture(scope="module")
def quick_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sweep = tmp_path_factory.mktemp("quick") / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", "-m", "+experiment=quick", f"hydra.sweep.dir={sweep}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep


def test_quick_sweep_runs_every_arm_and_accounts_for_every_query(quick_sweep: Path) -> None:
    jobs = load_jobs(quick_sweep)
    assert sorted({j.arm for j in jobs}) == ARMS
    assert sorted(j.seed for j in jobs) == sorted([0, 1] * len(ARMS))
    assert all(j.scenario == "low" for j in jobs)
    for seed in (0, 1):
        # The same arrivals for every arm of a seed (seeds pair across arms), different ones across seeds.
        n = {j.summary["queries"] for j in jobs if j.summary and j.seed == seed}
        assert len(n) == 1 and n.pop() > 500
        assert all(j.summary["expected_rates"] == "declared" for j in jobs if j.summary)
    for j in jobs:
        s = j.summary
        assert s is not None and s["served"] + s["rejected"] + s["failed"] == s["queries"]
        q = pd.read_parquet(j.path / "queries.parquet", columns=["status"])
        assert len(q) == s["queries"]


def test_quick_sweep_writes_the_table_and_figures(quick_sweep: Path) -> None:
    table = pd.read_csv(quick_sweep / "table_low.csv", index_col="arm")
    ran = sorted({j.arm for j in load_jobs(quick_sweep) if j.ok})
    assert sorted(table.index) == ran and "infaas" in ran and "static_gpu" in ran
    assert list(table.columns) == [k for k, _ in TABLE_COLUMNS] + [f"{k}_ci" for k in CI_COLUMNS]
    summaries = [json.loads(p.read_text()) for p in quick_sweep.glob("*+arm=static_gpu,*/summary.json")]
    assert len(summaries) == 2 and table.loc["static_gpu", "seeds"] == 2
    costs = [s["total_cost"] for s in summaries]
    assert table.loc["static_gpu", "total_cost"] == pytest.approx(sum(costs) / 2)
    # The 95% t interval of two seeds: t(0.975, 1) = 12.706 times the standard error.
    half = 12.706 * abs(costs[0] - costs[1]) / 2
    assert table.loc["static_gpu", "total_cost_ci"] == pytest.approx(half, rel=1e-3)
    md = (quick_sweep / "table_low.md").read_text()
    assert md.count("\n| static_gpu |") == 2 and "throughput vs infaas" in md  # the table and the ratios
    assert " ± " in md
    for name in FIGURES:
        assert (quick_sweep / f"low_{name}.png").stat().st_size > 10_000, name
    report = (quick_sweep / "report.md").read_text()
    assert "## low" in report and "low_latency_cdf.png" in report
    # The report opens with INFaaS's claims, each with a verdict.
    claims = report.index("## INFaaS's claims")
    assert claims < report.index("## low")
    for text in ("1.3x higher throughput", "1.6x fewer SLO violations", "21.6x lower cost", "8.5x lower cost"):
        row = next(line for line in report.splitlines() if text in line and line.startswith("| INFaaS"))
        assert any(v in row for v in ("**holds**", "**holds in direction only**", "**does not hold**")), row


def test_the_report_entry_point_redraws_into_another_folder(quick_sweep: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.report", str(quick_sweep), "--out", str(tmp_path), "--no-figures"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "== low ==" in proc.stdout and (tmp_path / "table_low.csv").is_file()
    assert not list(tmp_path.glob("*.png"))
    bad = subprocess.run([sys.executable, "-m", "experiments.report", str(tmp_path / "nope")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: ") and len(bad.stderr.splitlines()) == 1


# --- the report on a hand-built sweep folder -----------------------------------------------------


def _job(root: Path, name: str, overrides: list[str], summary: dict[str, object] | None, error: str | None) -> None:
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if summary is not None:
        (d / "summary.json").write_text(json.dumps(summary))
    if error is not None:
        (d / "error.txt").write_text(error + "\n")


def test_jobs_that_did_not_run_are_reported_with_their_reason(tmp_path: Path) -> None:
    base = {"queries": 100, "served": 100, "rejected": 0, "failed": 0, "throughput_qps": 10.0, "goodput_qps": 9.0,
            "slo_violation_rate": 0.1, "total_cost": 2.0, "cost_per_1k_queries": 20.0, "mean_accuracy": 0.75,
            "utilisation": {"cpu": 0.5}}  # fmt: skip
    _job(tmp_path, "0", ["+scenario=low", "+arm=infaas"], {**base, "policy": "infaas"}, None)
    _job(tmp_path, "1", ["+scenario=low", "+arm=static_peak"],
         {**base, "policy": "static", "slo_violation_rate": 0.16, "total_cost": 3.0, "throughput_qps": 8.0,
          "goodput_qps": 6.3}, None)  # fmt: skip
    _job(tmp_path, "2", ["+scenario=real_themis", "+arm=infaas"], None, "error: trace file x not found")
    report = write_report(tmp_path, draw=False)
    assert list(report.tables) == ["low"]
    assert report.skipped == ["real_themis/infaas (seed 0): error: trace file x not found"]
    text = (tmp_path / "report.md").read_text()
    assert "## real_themis\n\nskipped: error: trace file x not found" in text
    rel = relative_to(report.tables["low"])
    assert rel.loc["static_peak"].tolist() == pytest.approx([0.8, 0.7, 1.6, 1.5])
    md = to_markdown(report.tables["low"])
    assert "| static_peak | static | 1 | 100 | 8.00 |" in md and "| 16.0% |" in md and "| 50% |" in md
    assert "| - |" in md  # no GPU used: no GPU utilisation, not 0%
