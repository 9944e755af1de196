"""The workload builder: pipeline keys (``stages`` under an application), and the expected rates
an operator declares before the run (what baselines are sized from)."""

from __future__ import annotations

import re

import pytest

from infaas_sim.errors import ConfigError
from infaas_sim.experiment import build_apps, build_cluster, build_run, build_workload, run_experiment
from infaas_sim.hardware import InstanceType
from infaas_sim.query import Level, Requirement
from infaas_sim.reprofile import ReprofileSpec
from infaas_sim.simulation import ClusterSpec, RunSpec


def test_an_app_with_stages_is_a_pipeline_with_an_end_to_end_slo() -> None:
    cfg = {
        "apps": [
            {"name": "single", "target": "cls", "dataset": "ds", "slo_ms": 50},
            {
                "name": "video",
                "slo_ms": 300,
                "share": 2,
                "stages": [
                    {"target": "det", "dataset": "coco"},
                    {"target": "cls", "dataset": "ds", "min_accuracy": 0.7, "slo_ms": 100},
                ],
            },
        ]
    }
    single, video = build_apps(cfg)
    assert single.pipeline is None and single.slo_ms == 50
    assert video.pipeline is not None and video.slo_ms == 300 and video.share == 2 and video.index == 1
    assert video.stages == (
        Requirement(Level.TASK, "det", "coco", slo_ms=300),  # a stage's own bound defaults to end to end
        Requirement(Level.TASK, "cls", "ds", slo_ms=100, min_accuracy=0.7),
    )
    assert video.requirement == video.stages[0]


@pytest.mark.parametrize(
    ("app", "fragment"),
    [
        ({"name": "p", "stages": [{"target": "det", "dataset": "coco"}]}, "needs an end-to-end slo_ms"),
        ({"name": "p", "slo_ms": 100, "stages": []}, "stages must list at least one stage"),
        ({"name": "p", "slo_ms": 100, "target": "x", "stages": [{"target": "det", "dataset": "c"}]}, "['target']"),
        ({"name": "p", "slo_ms": 100, "stages": [{"target": "det", "dataset": "c", "share": 1}]}, "stages[0]"),
        ({"name": "p", "slo_ms": 100, "stages": [{"dataset": "c"}]}, "stages[0] needs a target"),
    ],
)
def test_bad_pipeline_configs_are_one_line_errors(app: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        build_apps({"apps": [app]})
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


# --- expected rates: what an operator declares before the run -------------------------------
def _two_apps(**extra: object) -> dict[str, object]:
    a = {"name": "a", "level": "task", "target": "image-classification", "dataset": "imagenet", "slo_ms": 200,
         "share": 3.0}  # fmt: skip
    b = {**a, "name": "b", "share": 1.0, **extra}
    return {"apps": [a, b]}


def test_expected_rates_come_from_the_traces_declared_parameters_not_its_arrivals() -> None:
    wl = _two_apps()
    apps = build_apps(wl)
    trace = {"name": "twitter", "mean_qps": 100, "peak_to_mean": 3}
    w0 = build_workload(trace, apps, 120, seed=0, workload_cfg=wl)
    w1 = build_workload(trace, apps, 120, seed=1, workload_cfg=wl)
    assert w0.expected is not None
    # Shares 3:1 of the declared 100 mean / 300 peak, identical whatever the seed draws.
    assert w0.expected["a"].mean_qps == pytest.approx(75) and w0.expected["a"].peak_qps == pytest.approx(225)
    assert w0.expected["b"].mean_qps == pytest.approx(25) and w0.expected["b"].peak_qps == pytest.approx(75)
    assert w0.expected == w1.expected
    assert w0.hints(120) == w0.expected
    observed = w0.observed_hints(120)
    assert observed["a"] != w0.expected["a"]  # the drawn run differs from what was declared


def test_an_applications_own_expected_qps_overrides_its_share_and_keeps_the_traces_burstiness() -> None:
    wl = _two_apps(expected_qps=40)
    w = build_workload({"name": "poisson", "qps": 100}, build_apps(wl), 30, seed=0, workload_cfg=wl)
    assert w.expected is not None
    assert w.expected["b"].mean_qps == 40 and w.expected["b"].peak_qps == 40  # poisson: peak = mean
    wl = _two_apps(expected_qps=40, expected_peak_qps=90)
    w = build_workload({"name": "twitter", "mean_qps": 100, "peak_to_mean": 2}, build_apps(wl), 30, 0, wl)
    assert w.expected is not None and w.expected["b"].peak_qps == 90
    wl = _two_apps(expected_qps=40)
    w = build_workload({"name": "twitter", "mean_qps": 100, "peak_to_mean": 2}, build_apps(wl), 30, 0, wl)
    assert w.expected is not None and w.expected["b"].peak_qps == 80


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"expected_qps": "lots"}, "expected_qps must be a float"),
        ({"expected_qps": -1}, "expected_qps must be >= 0"),
        ({"expected_qps": 50, "expected_peak_qps": 10}, "below expected_qps"),
    ],
)
def test_bad_expected_rates_are_one_line_errors(extra: dict[str, object], fragment: str) -> None:
    wl = _two_apps(**extra)
    with pytest.raises(ConfigError, match=fragment):
        build_workload({"name": "poisson", "qps": 10}, build_apps(wl), 10, 0, wl)


def test_a_run_says_whether_its_policy_was_told_declared_or_observed_rates() -> None:
    cfg = {
        "trace": {"name": "poisson", "qps": 20},
        "workload": _two_apps(),
        "catalog": {"path": "default"},
        "cluster": {"workers": {"cpu": "m5.2xlarge", "gpu": "p3.2xlarge", "inferentia": "inf1.2xlarge"}},
        "policy": {"name": "static", "params": {"replicas": "mean"}},
        "executor": {"name": "sim"},
        "run": {"duration_s": 10, "drain_s": 5},
    }
    assert run_experiment(cfg).summary["expected_rates"] == "declared"


def test_a_key_the_config_leaves_out_takes_the_dataclass_default_stated_only_there() -> None:
    run = build_run({"seed": 3})
    assert (run.seed, run.duration_s, run.drain_s, run.reprofile) == (3, RunSpec().duration_s, RunSpec().drain_s,
                                                                       ReprofileSpec())  # fmt: skip
    cluster = build_cluster({"workers": {"cpu": "m5.2xlarge"}, "instance_types": {
        "mine": {"kind": "cpu", "vcpus": 4, "memory_mb": 8192, "price_per_hour": 0.2}}})
    assert (cluster.max_queue_s, cluster.resize_delay_s) == (ClusterSpec().max_queue_s, ClusterSpec().resize_delay_s)
    mine = cluster.instance_types["mine"]
    assert (mine.startup_s, mine.accelerators, mine.source) == (InstanceType("x", mine.kind, 1, 1, 0.0).startup_s, 0,
                                                                "config")  # fmt: skip
    (app,) = build_apps({"apps": [{"target": "image-classification", "dataset": "imagenet", "slo_ms": 100}]})
    assert (app.share, app.batch, app.requirement.min_accuracy) == (1.0, 1, 0.0)


@pytest.mark.parametrize(
    ("section", "cfg", "message"),
    [
        ("run", {"drain_s": "long"}, "run.drain_s must be a float, got 'long'"),
        ("run", {"progress": "yes"}, "run.progress must be true or false"),
        ("cluster", {"workers": {"cpu": "m5.2xlarge"}, "max_queue_s": [1]}, "cluster.max_queue_s must be a float"),
    ],
)
def test_a_value_of_the_wrong_type_names_its_key(section: str, cfg: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        (build_run if section == "run" else build_cluster)(cfg)
