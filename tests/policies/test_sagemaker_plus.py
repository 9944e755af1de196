"""``sagemaker+``: target tracking on invocations per instance: scale out after three
1-minute datapoints above the target, each new instance paying a VM start-up and the model
load; scale in after fifteen datapoints below 90% of it, and not again within the 300 s
scale-in cool-down."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import yaml

from infaas_sim.catalog import Catalog
from infaas_sim.errors import ConfigError
from infaas_sim.executor import make_executor
from infaas_sim.hardware import HardwareKind, InstanceType
from infaas_sim.policy import make_policy
from infaas_sim.query import Application, Level, Requirement
from infaas_sim.simulation import ClusterSpec, RunResult, RunSpec, Workload, run_simulation
from infaas_sim.variant import Variant
from policies.sagemaker_plus import SageMakerPlusPolicy

CPU = HardwareKind.CPU
STARTUP_S = 20.0
SPEC = ClusterSpec(
    instance_types={"cpu": InstanceType("cpu", CPU, 8, 32768, 0.384, STARTUP_S)}, type_by_kind={CPU: "cpu"}
)
CONF = Path(__file__).resolve().parents[2] / "experiments" / "conf" / "policy" / "sagemaker_plus.yaml"

# 4 cores (two instances per 8-vCPU worker), 5 s to load, 50 + 10b ms. With a 400 ms SLO an
# instance runs batches of 15 (200 ms): MAX_RPS 75, so the default target is
# 75 x 0.5 x 60 = 2250 invocations per instance per minute (37.5/s).
V = Variant("v", "r50", "cls", "ds", "fw", CPU, "fp32", 4, 32, 0.76, 5000, 500, 50, 10)
APP = Application("a", Requirement(Level.TASK, "cls", "ds", slo_ms=400))


def poisson(segments: Sequence[tuple[float, float, float]], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([np.sort(rng.uniform(a, b, rng.poisson(r * (b - a)))) for a, b, r in segments])


def run(times: np.ndarray, duration: float, **params: object) -> RunResult:
    wl = Workload([APP], times, np.zeros(len(times), dtype=np.int64))
    policy = make_policy("sagemaker+", **params)
    return run_simulation(Catalog([V]), wl, policy, make_executor("sim"), SPEC, RunSpec(duration_s=duration))


def times_of(actions: list[tuple[float, str]], prefix: str) -> list[float]:
    return sorted({t for t, a in actions if a.startswith(prefix)})


@pytest.fixture(scope="module")
def step_up_then_down() -> RunResult:
    # One instance at 30/s; a step to 180/s at t=300 (4.8 instances' worth); down to 40/s
    # at t=600; 5/s from t=1560.
    t = poisson([(0, 300, 30), (300, 600, 180), (600, 1560, 40), (1560, 1900, 5)])
    return run(t, 1900, initial_instances=1)


def test_the_default_target_follows_aws_formula() -> None:
    policy = SageMakerPlusPolicy()
    t = poisson([(0, 10, 30)])
    run_simulation(Catalog([V]), Workload([APP], t, np.zeros(len(t), dtype=np.int64)), policy,
                   make_executor("sim"), SPEC, RunSpec(10))  # fmt: skip
    assert policy.target == {0: pytest.approx(2250.0)}
    assert policy.desired == {0: 1}  # 30/s = 1800 per minute: one instance


def test_a_step_up_scales_out_after_three_datapoints_above_the_target(step_up_then_down: RunResult) -> None:
    acts, q = step_up_then_down.actions, step_up_then_down.queries
    t_out = times_of(acts, "load")[1]  # [0] is the pre-provisioned instance
    assert t_out == 480  # datapoints at 360, 420 and 480 are above the target
    new = [a for t, a in acts if t == t_out and a.startswith("load")]
    assert len(new) == 4  # ceil(180 x 60 / 2250) = 5 instances, proportional to the metric
    # ... on new VMs (the first worker has room for one more 4-core instance)
    assert len([a for t, a in acts if t == t_out and a.startswith("add worker")]) == 2
    stuck = q[(q["arrival"] >= 360) & (q["arrival"] < 480)]
    after = q[(q["arrival"] >= t_out + 60) & (q["arrival"] < 600)]  # once the backlog is cleared
    assert stuck["slo_met"].mean() < 0.2 and after["slo_met"].mean() > 0.99
    # Instances serve only after the VM start-up and the model load.
    served_by_new = q[(q["status"] == "served") & (q["instance"] >= 2)]
    assert served_by_new["completion"].min() >= t_out + STARTUP_S + V.load_latency_ms / 1000


def test_scale_in_waits_for_the_low_alarm_and_then_the_cool_down(step_up_then_down: RunResult) -> None:
    acts, tl = step_up_then_down.actions, step_up_then_down.timeline
    unloads = times_of(acts, "unload")
    assert len(unloads) == 2
    # The low alarm needs 15 datapoints below 90% of the target: those of t=660..1500.
    assert unloads[0] == 1500
    # At t=1620 the alarm asks again (5/s needs 1 instance), but the scale-in cool-down holds
    # until 300 s after the previous scale-in.
    assert unloads[1] == unloads[0] + 300
    n = tl.set_index("t")["instances"]
    assert n[1400] == 5 and n[1700] == 2 and n[1899] == 1
    # Workers left empty go back at once, as SageMaker terminates an instance.
    assert tl.set_index("t")["workers_cpu"][1899] == 1
    assert step_up_then_down.queries.loc[lambda q: q["arrival"] >= 700, "slo_met"].all()


@pytest.mark.parametrize(
    "params",
    [
        {"sizing": "p99"},
        {"safety_factor": 0},
        {"safety_factor": 1.5},
        {"target_invocations": -5},
        {"initial_instances": 0},
        {"min_instances": 0},
        {"max_instances": 2, "min_instances": 3},
        {"metric_period_s": 0},
        {"scale_out_periods": 0},
        {"scale_in_periods": 1.5},
        {"scale_in_ratio": 0},
        {"scale_in_cooldown_s": -1},
        {"idle_worker_s": -1},
        {"cooldown": 60},
    ],
)
def test_bad_parameters_are_one_line_config_errors(params: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as err:
        make_policy("sagemaker+", **params)
    assert "\n" not in str(err.value) and "sagemaker+" in str(err.value)


def test_config_file_lists_every_parameter_with_its_default() -> None:
    conf = yaml.safe_load(CONF.read_text())
    assert conf["name"] == "sagemaker+"
    sig = inspect.signature(SageMakerPlusPolicy.__init__).parameters
    defaults = {k: p.default for k, p in sig.items() if k != "self"}
    assert conf["params"] == {**defaults, "variants": {}}
    make_policy(conf["name"], **conf["params"])
