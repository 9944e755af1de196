"""``hpa``: the Kubernetes Horizontal Pod Autoscaler's replica formula, its handling of
replicas that are not ready, its rate limit, and its 5-minute scale-down stabilisation."""

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
from infaas_sim.view import ClusterView
from policies.hpa import HpaPolicy, hpa_recommendation, scale_up_limit, stabilize

CPU = HardwareKind.CPU
SPEC = ClusterSpec(instance_types={"cpu": InstanceType("cpu", CPU, 8, 32768, 0.384, 20.0)}, type_by_kind={CPU: "cpu"})
CONF = Path(__file__).resolve().parents[2] / "experiments" / "conf" / "policy" / "hpa.yaml"

# 2 cores, no batching, 25 ms a query: a replica's utilisation is its rate x 25 ms.
V = Variant("v", "r50", "cls", "ds", "fw", CPU, "fp32", 2, 1, 0.76, 1000, 500, 25, 0)
APP = Application("a", Requirement(Level.TASK, "cls", "ds", slo_ms=200))


# --- the replica calculator ---------------------------------------------------------------
def test_desired_is_ceil_of_current_times_utilisation_over_target() -> None:
    assert hpa_recommendation(4, [0.9] * 4, 0, 0.7) == 6  # ceil(4 x 0.9 / 0.7) = ceil(5.14)
    assert hpa_recommendation(4, [0.2] * 4, 0, 0.7) == 2  # ceil(1.14)
    assert hpa_recommendation(3, [1.0, 0.4, 0.7], 0, 0.7) == 3  # the mean: 0.7
    assert hpa_recommendation(1, [0.05], 0, 0.7) == 1


def test_no_change_within_the_tolerance() -> None:
    assert hpa_recommendation(2, [0.75, 0.75], 0, 0.7) == 2  # ratio 1.07
    assert hpa_recommendation(10, [0.64] * 10, 0, 0.7) == 10  # ratio 0.91
    assert hpa_recommendation(10, [0.62] * 10, 0, 0.7) == 9  # ratio 0.886: outside
    assert hpa_recommendation(10, [0.62] * 10, 0, 0.7, tolerance=0.2) == 10


def test_replicas_not_ready_count_at_zero_when_scaling_up() -> None:
    # Two saturated replicas would call for 3, but with two more starting (at 0%) the
    # ratio is 0.71: keep the current count, do not scale up on top of them.
    assert hpa_recommendation(4, [1.0, 1.0], 2, 0.7) == 4
    # Four saturated + one starting: 4 / 5 / 0.7 = 1.14 -> ceil(5.7) = 6.
    assert hpa_recommendation(5, [1.0] * 4, 1, 0.7) == 6
    # Scaling down ignores them: ceil(0.2 / 0.7 x 2) = 1 (stabilisation holds it back).
    assert hpa_recommendation(4, [0.2, 0.2], 2, 0.7) == 1
    assert hpa_recommendation(3, [], 3, 0.7) == 3  # no sample at all: no change


def test_stabilisation_takes_the_highest_recommendation_of_the_window() -> None:
    history = [(0.0, 5), (100.0, 3), (200.0, 2)]
    assert stabilize(history, 250.0, 5, 1) == 5  # the 5 of t=0 is within 300 s
    assert stabilize(history, 300.0, 5, 1) == 3  # it is not at t=300; the 3 of t=100 is
    assert stabilize(history, 450.0, 3, 1) == 2
    assert stabilize(history, 600.0, 2, 1) == 1
    assert stabilize(history, 250.0, 5, 8) == 8  # scale-up is not stabilised (window 0)
    assert stabilize([(240.0, 2)], 250.0, 2, 8, up_window_s=60.0) == 2  # unless asked to be


def test_scale_up_adds_at_most_the_larger_of_100_percent_and_4_replicas() -> None:
    assert scale_up_limit(1) == 5 and scale_up_limit(3) == 7 and scale_up_limit(10) == 20
    assert scale_up_limit(10, percent=50, pods=2) == 15


# --- in a run -----------------------------------------------------------------------------
class Recording(HpaPolicy):
    """``hpa`` that keeps each sync's raw recommendation and desired count."""

    def __init__(self, **params: object) -> None:
        super().__init__(**params)  # type: ignore[arg-type]
        self.syncs: list[tuple[float, int, int]] = []

    def _sync(self, view: ClusterView) -> None:
        super()._sync(view)
        self.syncs.append((view.now, self.history[0][-1][1], self.desired[0]))


def poisson(segments: Sequence[tuple[float, float, float]], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([np.sort(rng.uniform(a, b, rng.poisson(r * (b - a)))) for a, b, r in segments])


@pytest.fixture(scope="module")
def rise_and_drop() -> tuple[Recording, RunResult]:
    # Two replicas; 20/s, 70/s from t=60 (utilisation 0.875 on two), 10/s from t=300.
    t = poisson([(0, 60, 20), (60, 300, 70), (300, 700, 10)])
    policy = Recording(min_replicas=1)
    wl = Workload([APP], t, np.zeros(len(t), dtype=np.int64))
    return policy, run_simulation(Catalog([V]), wl, policy, make_executor("sim"), SPEC, RunSpec(duration_s=700))


def test_a_rise_scales_up_at_the_next_sync(rise_and_drop: tuple[Recording, RunResult]) -> None:
    policy, res = rise_and_drop
    loads = [t for t, a in res.actions if a.startswith("load") and t > 0]
    assert loads == [75.0]  # the sync period covering the rise: ceil(2 x 0.875 / 0.7) = 3
    assert all(d == 3 for t, _, d in policy.syncs if 75 <= t <= 300)
    q = res.queries
    assert q.loc[(q["arrival"] >= 90) & (q["arrival"] < 300), "slo_met"].mean() > 0.99


def test_no_scale_down_until_five_minutes_after_the_last_high_recommendation(
    rise_and_drop: tuple[Recording, RunResult],
) -> None:
    policy, res = rise_and_drop
    # Before t=60 the low recommendations (1) are held back by the provisioned 2 (t=0).
    assert all(rec == 1 and d == 2 for t, rec, d in policy.syncs if 15 <= t <= 60)
    # After the drop every recommendation is 1, but the sync of t=300 (which covered 285-300)
    # recommended 3: the 3 replicas stay until t=600, then go to 1 in one step.
    assert all(rec == 1 for t, rec, _ in policy.syncs if t >= 315)
    assert all(d == 3 for t, _, d in policy.syncs if 300 <= t < 600)
    unloads = [t for t, a in res.actions if a.startswith("unload")]
    assert unloads == [600.0, 600.0]


# --- configuration ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params",
    [
        {"sizing": "max"},
        {"target_utilization": 0},
        {"target_utilization": 1.2},
        {"tolerance": -0.1},
        {"sync_period_s": 0},
        {"scale_down_stabilization_s": -1},
        {"scale_down_stabilization_s": 7200},
        {"scale_up_stabilization_s": -1},
        {"scale_up_percent": -10},
        {"scale_up_pods": 1.5},
        {"scale_up_percent": 0, "scale_up_pods": 0},
        {"min_replicas": 0},
        {"max_replicas": 1, "min_replicas": 2},
        {"node_idle_s": -1},
        {"target": 0.7},
    ],
)
def test_bad_parameters_are_one_line_config_errors(params: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as err:
        make_policy("hpa", **params)
    assert "\n" not in str(err.value) and "hpa" in str(err.value)


def test_config_file_lists_every_parameter_with_its_default() -> None:
    conf = yaml.safe_load(CONF.read_text())
    assert conf["name"] == "hpa"
    sig = inspect.signature(HpaPolicy.__init__).parameters
    defaults = {k: p.default for k, p in sig.items() if k != "self"}
    assert conf["params"] == {**defaults, "variants": {}}
    make_policy(conf["name"], **conf["params"])
