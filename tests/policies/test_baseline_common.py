"""What the baselines share (``policies.baseline_common``): one deployment per application on
workers of its own (``deployment: dedicated``) or one per variant on shared workers
(``shared``); the offline choice bounded by ``hardware``; replicas added and workers released
within a deployment's worker pool."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from infaas_sim.catalog import Catalog
from infaas_sim.errors import ConfigError
from infaas_sim.hardware import HardwareKind
from infaas_sim.placement import Room
from infaas_sim.policy import make_policy
from infaas_sim.simulation import RunResult
from infaas_sim.variant import Variant
from policies.baseline_common import BaselinePolicy

CPU, GPU = HardwareKind.CPU, HardwareKind.GPU
BASELINES = ["clipper+", "sagemaker+", "hpa", "vpa"]


def _cpu_spec(h: Any) -> Any:
    return h.spec(instance_types={"cpu": h.TYPES["cpu"]}, type_by_kind={CPU: "cpu"})


def _two_apps(h: Any, policy: BaselinePolicy, rates: tuple[float, float] = (150, 150), duration: float = 10.0,
              spec: Any = None, variants: Any = None) -> RunResult:  # fmt: skip
    """Two applications with the same requirement (so the same variant), Poisson arrivals."""
    apps = [h.task_app(100.0, index=0, name="a"), h.task_app(100.0, index=1, name="b")]
    t, idx = h.merge((h.poisson_times(rates[0], duration, seed=4), 0), (h.poisson_times(rates[1], duration, seed=5), 1))
    return h.simulate(variants or h.VARIANTS, h.workload(apps, t, idx), policy, duration,
                      spec=spec if spec is not None else _cpu_spec(h))  # fmt: skip


def _by_app(res: RunResult, column: str) -> dict[str, set[int]]:
    q = res.queries[res.queries["status"] == "served"]
    return {str(app): set(g[column]) for app, g in q.groupby("app", observed=True)}


@pytest.mark.parametrize("name", BASELINES)
def test_dedicated_deployments_keep_each_application_on_its_replicas_and_workers(name: str, h: Any,
                                                                                 conserved: Any) -> None:  # fmt: skip
    policy = make_policy(name, deployment="dedicated")
    assert isinstance(policy, BaselinePolicy)
    res = _two_apps(h, policy)
    conserved(res, len(res.queries))
    deps = list(policy.deployments.values())
    assert len(deps) == 2 and deps[0].vi == deps[1].vi  # one variant, two deployments
    assert deps[0].pool != deps[1].pool and None not in (deps[0].pool, deps[1].pool)
    assert [[a.name for a in d.apps] for d in deps] == [["a"], ["b"]]
    inst, workers = _by_app(res, "instance"), _by_app(res, "worker")
    assert inst["a"] and inst["b"] and not inst["a"] & inst["b"]
    assert not workers["a"] & workers["b"]
    assert res.queries["status"].eq("served").mean() > 0.99


@pytest.mark.parametrize("name", BASELINES)
def test_shared_serves_applications_that_pick_one_variant_from_one_deployment(name: str, h: Any) -> None:
    policy = make_policy(name, deployment="shared")
    assert isinstance(policy, BaselinePolicy)
    res = _two_apps(h, policy)
    (dep,) = policy.deployments.values()
    assert dep.pool is None and [a.name for a in dep.apps] == ["a", "b"]
    inst = _by_app(res, "instance")
    assert inst["a"] == inst["b"]  # the same replicas serve both


def test_dedicated_gpu_replicas_are_added_on_workers_of_their_deployments_pool(h: Any) -> None:
    # A GPU variant, one replica per one-GPU worker. Application a bursts from 50/s to 800/s
    # at t = 30 and clipper+ replicates it; b stays at 50/s. Every GPU worker belongs to one
    # deployment's pool, and each application's queries run only on its own workers.
    g = Variant("g", "r50", "cls", "ds", "fw", GPU, "fp32", 1, 8, 0.76, 1000, 500, 10, 2)
    spec = h.spec(instance_types={"gpu": h.TYPES["gpu"]}, type_by_kind={GPU: "gpu"})
    apps = [h.task_app(50.0, index=0, name="a"), h.task_app(50.0, index=1, name="b")]
    ta = np.concatenate([h.poisson_times(50, 30.0, seed=6), h.poisson_times(800, 30.0, seed=7, start=30.0)])
    t, idx = h.merge((ta, 0), (h.poisson_times(50, 60.0, seed=8), 1))
    policy = make_policy("clipper+")  # dedicated by default
    res = h.simulate(Catalog([g]), h.workload(apps, t, idx), policy, 60.0, spec=spec)
    added = [a for t_, a in res.actions if a.startswith("add worker")]
    pools = [a.split("pool ")[1].rstrip(")") for a in added]
    assert set(pools) == {"a#0", "b#1"} and pools.count("a#0") >= 3 and pools.count("b#1") == 1
    workers = _by_app(res, "worker")
    assert not workers["a"] & workers["b"] and len(workers["b"]) == 1
    loads = [a for t_, a in res.actions if a.startswith("load g")]
    on = [int(a.split(" on worker ")[1]) for a in loads]
    assert len(on) == len(set(on))  # one replica per worker (device)
    late = res.queries[res.queries["arrival"] >= 45]
    assert late["slo_met"].mean() > 0.99


@dataclass(frozen=True)
class _Worker:
    kind: HardwareKind
    pool: str | None


def test_a_tick_that_adds_replicas_keeps_the_idle_workers_of_that_kind_and_pool_only(h: Any) -> None:
    room = Room(view=None)  # type: ignore[arg-type]  # grow / grows read no view
    room.grow(CPU, "a")
    room.grow(GPU)
    assert room.grows(_Worker(CPU, "a")) and room.grows(_Worker(GPU, None))  # type: ignore[arg-type]
    assert not room.grows(_Worker(CPU, "b")) and not room.grows(_Worker(CPU, None))  # type: ignore[arg-type]
    assert not room.grows(_Worker(GPU, "a"))  # type: ignore[arg-type]


@pytest.mark.parametrize(("hardware", "variant"), [("any", "inf-a"), ("cpu", "cpu-batch"), ("gpu", "gpu-a")])
def test_the_hardware_family_bounds_the_offline_choice(hardware: str, variant: str, h: Any) -> None:
    policy = make_policy("sagemaker+", hardware=hardware)
    assert isinstance(policy, BaselinePolicy)
    res = _two_apps(h, policy, rates=(20, 20), duration=5.0, spec=h.spec())
    assert set(res.queries["variant"].astype(str)) == {variant}


def test_no_variant_of_the_family_meeting_an_application_is_a_one_line_config_error(h: Any) -> None:
    # The CPU variants reach accuracy 0.72 at most.
    apps = [h.task_app(100.0, name="accurate", min_accuracy=0.75)]
    t = h.poisson_times(10, 2.0, seed=1)
    with pytest.raises(ConfigError) as err:
        h.simulate(h.VARIANTS, h.workload(apps, t), make_policy("clipper+", hardware="cpu"), 2.0)
    msg = str(err.value)
    assert "\n" not in msg and "clipper+" in msg and "'accurate'" in msg and "cpu" in msg


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("params", [{"deployment": "pooled"}, {"hardware": "tpu"}, {"dispatch": "fastest"}])
def test_bad_deployment_hardware_or_dispatch_is_a_one_line_config_error(name: str, params: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as err:
        make_policy(name, **params)
    msg = str(err.value)
    assert "\n" not in msg and name in msg and next(iter(params)) in msg
