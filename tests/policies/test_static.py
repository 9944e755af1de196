"""``static``: fixed variants and replica counts, sized to the applications' peak or mean rate;
a variant from the hardware the cluster has (or one family of it); one deployment per
application on VMs of its own (``dedicated``) or shared ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from infaas_sim.errors import ConfigError
from infaas_sim.experiment import run_experiment
from infaas_sim.hardware import HardwareKind
from infaas_sim.policy import make_policy
from infaas_sim.simulation import RunResult

CONF = Path(__file__).resolve().parents[2] / "experiments" / "conf"


def run(arm: str, *extra: str) -> RunResult:
    overrides = ["+scenario=medium", f"+arm={arm}", "run.duration_s=120", "run.drain_s=30", "run.progress=false"]
    overrides += list(extra)
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = OmegaConf.to_container(compose("config", overrides=overrides), resolve=False)
    assert isinstance(cfg, dict)
    cfg.pop("hydra", None)
    return run_experiment({str(k): v for k, v in cfg.items()})


@pytest.fixture(scope="module")
def peak_and_mean() -> tuple[RunResult, RunResult]:
    # Shared deployments, so that replicas pack onto VMs and a replica more costs more; with
    # dedicated ones each application holds a whole VM, and the counts here fit in one each.
    shared = "policy.params.deployment=shared"
    return run("static_peak", shared), run("static_mean", shared)


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


@pytest.mark.parametrize(
    "params",
    [
        {"replicas": "lots"},
        {"replicas": 0},
        {"target_util": 1.5},
        {"dispatch": "random"},
        {"deployment": "pooled"},
        {"hardware": "tpu"},
    ],
)
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


# --- hardware -------------------------------------------------------------------------------------------
# Per replica: cpu-d10 and cpu-batch hold 2 of a cpu worker's 8 vCPUs ($0.384/h): $0.096/h; inf-a
# one of an inf worker's 4 NeuronCores ($0.362/h): $0.0905/h; a GPU variant a whole $3.06/h device.
# At a light load one replica of any serves, so inf-a is the cheapest, then the CPU pair, where the
# tie goes to the faster, cpu-batch (6 ms against 10 ms); gpu-a (2.5 ms) beats gpu-b (4 ms).
CPU_GPU = {"cpu": HardwareKind.CPU, "gpu": HardwareKind.GPU}


def _light_run(h: Any, spec: Any = None, apps: Any = None, **params: Any) -> RunResult:
    apps = apps or [h.task_app(100.0)]
    t = h.poisson_times(20, 5.0, seed=1)
    idx = np.arange(len(t)) % len(apps)
    return h.simulate(h.VARIANTS, h.workload(apps, t, idx), make_policy("static", **params), 5.0, spec=spec)


def _served_variants(res: RunResult) -> set[str]:
    q = res.queries
    assert (q["status"] == "served").all()
    return set(q["variant"].astype(str))


def test_a_cluster_without_inferentia_gets_the_cheapest_variant_it_can_run(h: Any) -> None:
    assert _served_variants(_light_run(h)) == {"inf-a"}  # with Inferentia workers
    types = {k: h.TYPES[k] for k in CPU_GPU}
    spec = h.spec(instance_types=types, type_by_kind={kind: name for name, kind in CPU_GPU.items()})
    res = _light_run(h, spec)
    assert _served_variants(res) == {"cpu-batch"}
    assert not any("inf" in a for _, a in res.actions)


@pytest.mark.parametrize(
    ("hardware", "variant"), [("any", "inf-a"), ("cpu", "cpu-batch"), ("gpu", "gpu-a"), ("inferentia", "inf-a")]
)
def test_the_hardware_family_bounds_the_choice(hardware: str, variant: str, h: Any) -> None:
    res = _light_run(h, hardware=hardware)
    assert _served_variants(res) == {variant}
    if hardware != "any":
        assert set(res.queries["hardware"].astype(str)) == {hardware}


def test_a_family_with_no_variant_that_meets_an_application_is_a_config_error(h: Any) -> None:
    # CPU variants reach accuracy 0.72 at most.
    accurate = h.task_app(100.0, name="accurate", min_accuracy=0.75)
    with pytest.raises(ConfigError) as err:
        _light_run(h, apps=[accurate], hardware="cpu")
    msg = str(err.value)
    assert "\n" not in msg and "'accurate'" in msg and "cpu" in msg
    assert _served_variants(_light_run(h, apps=[accurate], hardware="gpu")) == {"gpu-a"}
    # A family the cluster has no workers for.
    types = {k: h.TYPES[k] for k in CPU_GPU}
    spec = h.spec(instance_types=types, type_by_kind={kind: name for name, kind in CPU_GPU.items()})
    with pytest.raises(ConfigError, match="inferentia"):
        _light_run(h, spec, hardware="inferentia")
    # A named variant of another family.
    with pytest.raises(ConfigError, match="runs on gpu, not cpu"):
        _light_run(h, hardware="cpu", variants={"task-0": "gpu-a"})


# --- deployments ----------------------------------------------------------------------------------------
def _two_apps_one_variant(h: Any, deployment: str) -> RunResult:
    # Two applications with the same requirement pick the same variant (inf-a), two replicas each.
    apps = [h.task_app(100.0, index=0, name="a"), h.task_app(100.0, index=1, name="b")]
    ta, tb = h.poisson_times(300, 5.0, seed=2), h.poisson_times(300, 5.0, seed=3)
    t, idx = h.merge((ta, 0), (tb, 1))
    policy = make_policy("static", replicas=2, deployment=deployment)
    return h.simulate(h.VARIANTS, h.workload(apps, t, idx), policy, 5.0)


def test_dedicated_gives_each_application_its_own_replicas_on_its_own_workers(h: Any, conserved: Any) -> None:
    res = _two_apps_one_variant(h, "dedicated")
    q = res.queries
    conserved(res, len(q))
    assert (q["status"] == "served").all() and set(q["variant"].astype(str)) == {"inf-a"}
    inst = {app: set(g["instance"]) for app, g in q.groupby("app", observed=True)}
    workers = {app: set(g["worker"]) for app, g in q.groupby("app", observed=True)}
    assert len(inst["a"]) == len(inst["b"]) == 2 and not inst["a"] & inst["b"]
    assert len(workers["a"]) == len(workers["b"]) == 1 and not workers["a"] & workers["b"]
    assert sorted(a for t, a in res.actions if a.startswith("add worker")) == [
        "add worker 0 (inf, pool a#0)",
        "add worker 1 (inf, pool b#1)",
    ]


def test_shared_lets_applications_that_pick_one_variant_share_its_replicas_and_workers(h: Any) -> None:
    res = _two_apps_one_variant(h, "shared")
    q = res.queries
    assert (q["status"] == "served").all()
    inst = {app: set(g["instance"]) for app, g in q.groupby("app", observed=True)}
    assert inst["a"] == inst["b"] and len(inst["a"]) == 4  # both apps' replicas, for both
    assert q["worker"].nunique() == 1  # four NeuronCores: one inf worker holds them all
