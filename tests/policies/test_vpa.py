"""``vpa``: the Kubernetes Vertical Pod Autoscaler's recommendation (90th percentile of usage
x 1.15) and its updates: in place after the cluster's resize delay, or by eviction and
re-creation when the worker lacks the cores (or in ``recreate`` mode)."""

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
from infaas_sim.variant import Variant, cpu_latency_factor
from policies.vpa import UsageHistogram, VpaPolicy, vpa_target

CPU = HardwareKind.CPU
RESIZE_DELAY_S = 5.0
SPEC = ClusterSpec(
    instance_types={"cpu": InstanceType("cpu", CPU, 8, 32768, 0.384, 20.0)},
    type_by_kind={CPU: "cpu"},
    resize_delay_s=RESIZE_DELAY_S,
)
CONF = Path(__file__).resolve().parents[2] / "experiments" / "conf" / "policy" / "vpa.yaml"
APP = Application("a", Requirement(Level.TASK, "cls", "ds", slo_ms=200))


def variant(vid: str, cores: float, ms: float) -> Variant:
    """A CPU variant profiled on ``cores`` that does not batch: ``ms`` per query."""
    return Variant(vid, "r50", "cls", "ds", "fw", CPU, "fp32", cores, 1, 0.76, 1000, 500, ms, 0)


def poisson(segments: Sequence[tuple[float, float, float]], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([np.sort(rng.uniform(a, b, rng.poisson(r * (b - a)))) for a, b, r in segments])


def run(v: Variant, times: np.ndarray, duration: float, **params: object) -> RunResult:
    wl = Workload([APP], times, np.zeros(len(times), dtype=np.int64))
    policy = make_policy("vpa", **params)
    return run_simulation(Catalog([v]), wl, policy, make_executor("sim"), SPEC, RunSpec(duration_s=duration))


def resizes(res: RunResult) -> list[tuple[float, float]]:
    return [(t, float(a.split(" to ")[1].split()[0])) for t, a in res.actions if a.startswith("resize")]


# --- the recommender ----------------------------------------------------------------------
def test_target_is_the_90th_percentile_plus_15_percent_within_bounds() -> None:
    h = UsageHistogram(half_life_s=86400)
    for u in [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2.0]:
        h.add(10.0, u)
    p90 = h.percentile(0.9, 10.0)  # 90% of the weight is at or below 1.0
    assert p90 is not None and p90 == pytest.approx(1.0)
    assert vpa_target(p90, 0.15, 0.5, 8.0) == pytest.approx(1.15)
    assert vpa_target(0.1, 0.15, 0.5, 8.0) == 0.5  # minAllowed
    assert vpa_target(9.0, 0.15, 0.5, 8.0) == 8.0  # maxAllowed
    assert vpa_target(1.0001, 0.15, 0.5, 8.0) == pytest.approx(1.151)  # millicores, rounded up


def test_old_samples_weigh_less_with_the_half_life() -> None:
    h = UsageHistogram(half_life_s=60)
    for t in range(10):
        h.add(float(t), 4.0)  # a burst long ago
    for t in range(600, 605):
        h.add(float(t), 1.0)
    assert h.percentile(0.9, 605.0) == 1.0  # ten samples ~10 half-lives old barely count
    assert UsageHistogram(86400).percentile(0.9, 0.0) is None


# --- updates in a run ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def overloaded() -> RunResult:
    # One replica on 1 core at 20 ms a query (50/s) receives 60/s: saturated.
    return run(variant("v1", 1, 20), poisson([(0, 400, 60)]), 400, replicas=1)


def test_a_saturated_replica_grows_by_the_margin_each_interval(overloaded: RunResult) -> None:
    steps = resizes(overloaded)
    times = [t for t, _ in steps]
    cores = [c for _, c in steps]
    assert times[:3] == [60.0, 120.0, 180.0]  # every recommender interval while saturated
    assert cores[0] == pytest.approx(1.15)  # usage = the whole core: 1 x 1.15
    assert cores == sorted(cores) and cores[1] == pytest.approx(1.15 * 1.15, abs=0.002)
    assert cores[-1] < 2.0  # it stops once the replica keeps up (a change under 10%)
    assert not any(a.startswith(("load", "unload")) for t, a in overloaded.actions if t > 0)  # in place


def test_latency_drops_once_the_resize_delay_has_passed(overloaded: RunResult) -> None:
    q = overloaded.queries
    q = q[q["status"] == "served"]
    start = q["completion"] - q["execution_ms"] / 1000
    (t0, c0), (t1, _) = resizes(overloaded)[:2]
    old = q.loc[(start >= t0) & (start < t0 + RESIZE_DELAY_S), "execution_ms"]
    new = q.loc[(start >= t0 + RESIZE_DELAY_S + 0.1) & (start < t1), "execution_ms"]
    assert len(old) > 100 and old.to_numpy() == pytest.approx(20.0)  # the old size until the delay ends
    assert new.to_numpy() == pytest.approx(20.0 * cpu_latency_factor(1, c0))
    final = resizes(overloaded)[-1][1]
    last = q[q["arrival"] >= 340]
    assert last["execution_ms"].to_numpy() == pytest.approx(20.0 * cpu_latency_factor(1, final))
    assert last["slo_met"].all()  # grown past the load, the backlog is gone


def test_an_idle_replica_shrinks_to_min_cores() -> None:
    res = run(variant("v2", 2, 10), poisson([(0, 130, 10)]), 130, replicas=1, min_cores=0.5)
    assert resizes(res) == [(60.0, 0.5)]  # usage 10/s x 10 ms = 0.2 cores: 0.23, raised to minAllowed


def test_without_room_on_its_worker_a_replica_is_recreated_half_at_a_time() -> None:
    # Two 4-core replicas fill an 8-core worker; both saturated, the recommendation (4.6
    # cores) cannot be met in place: the updater evicts one (at most half of the replicas),
    # re-created with the new request on a new worker, paying the VM start-up and the load.
    v = variant("v4", 4, 20)
    res = run(v, poisson([(0, 200, 120)]), 200, replicas=2)
    at60 = [a for t, a in res.actions if t == 60.0]
    assert len([a for a in at60 if a.startswith("unload")]) == 1
    assert any(a.startswith("add worker") for a in at60) and any(a.startswith("load v4") for a in at60)
    assert not any(a.startswith("resize") for _, a in res.actions if _ == 60.0)
    # With one replica, the updater never evicts (a Deployment needs 2 replicas for that).
    alone = run(v, poisson([(0, 130, 60)]), 130, replicas=1, max_cores=4.0, min_cores=4.0, update_mode="recreate")
    assert not any(t > 0 for t, _ in alone.actions)


def test_recreate_mode_evicts_instead_of_resizing() -> None:
    res = run(variant("v1", 1, 20), poisson([(0, 70, 120)]), 70, replicas=2, update_mode="recreate")
    at60 = sorted(a.split(" as ")[0].split(" instance ")[0] for t, a in res.actions if t == 60.0)
    assert at60 == ["load v1", "unload"]
    assert not resizes(res)


# --- configuration ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params",
    [
        {"sizing": "low"},
        {"target_util": 2},
        {"replicas": 0},
        {"percentile": 0},
        {"percentile": 1.5},
        {"safety_margin": -0.1},
        {"min_cores": 0},
        {"max_cores": 0.5, "min_cores": 1.0},
        {"recommender_interval_s": 0},
        {"half_life_s": 0},
        {"min_change": -1},
        {"update_mode": "auto"},
        {"node_idle_s": -5},
        {"margin": 0.1},
    ],
)
def test_bad_parameters_are_one_line_config_errors(params: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as err:
        make_policy("vpa", **params)
    assert "\n" not in str(err.value) and "vpa" in str(err.value)


def test_config_file_lists_every_parameter_with_its_default() -> None:
    conf = yaml.safe_load(CONF.read_text())
    assert conf["name"] == "vpa"
    sig = inspect.signature(VpaPolicy.__init__).parameters
    defaults = {k: p.default for k, p in sig.items() if k != "self"}
    assert conf["params"] == {**defaults, "variants": {}}
    make_policy(conf["name"], **conf["params"])
