"""``clipper+``: a fixed variant per application, Clipper's AIMD adaptive batching, and
replication when the queue grows, each shown on a small in-code catalog."""

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
from infaas_sim.policy import Action, make_policy
from infaas_sim.query import Application, Level, Requirement
from infaas_sim.simulation import ClusterSpec, RunResult, RunSpec, Workload, run_simulation
from infaas_sim.variant import Variant
from infaas_sim.view import ClusterView
from policies.clipper_plus import ClipperPlusPolicy, aimd_step

CPU, GPU = HardwareKind.CPU, HardwareKind.GPU
TYPES = {
    "cpu": InstanceType("cpu", CPU, 8, 32768, 0.384, 20.0),
    "gpu": InstanceType("gpu", GPU, 8, 62464, 3.06, 20.0, 1, 16384),
}
SPEC = ClusterSpec(instance_types=TYPES, type_by_kind={CPU: "cpu", GPU: "gpu"})
CONF = Path(__file__).resolve().parents[2] / "experiments" / "conf" / "policy" / "clipper_plus.yaml"


def variant(vid: str, hw: HardwareKind, cores: float, max_batch: int, icpt: float, slope: float) -> Variant:
    return Variant(vid, "r50", "cls", "ds", "fw", hw, "fp32", cores, max_batch, 0.76, 1000, 500, icpt, slope)


# latency(b) = 20 + 5b ms: with a 200 ms SLO the AIMD target is 100 ms, met up to batch 16.
CPU_V = variant("c", CPU, 2, 32, 20, 5)
GPU_V = variant("g", GPU, 1, 32, 3, 1)
APP = Application("a", Requirement(Level.TASK, "cls", "ds", slo_ms=200))


def poisson(segments: Sequence[tuple[float, float, float]], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([np.sort(rng.uniform(a, b, rng.poisson(r * (b - a)))) for a, b, r in segments])


def run(variants: Sequence[Variant], times: np.ndarray, duration: float, policy: ClipperPlusPolicy) -> RunResult:
    wl = Workload([APP], times, np.zeros(len(times), dtype=np.int64))
    return run_simulation(Catalog(variants), wl, policy, make_executor("sim"), SPEC, RunSpec(duration_s=duration))


class Recording(ClipperPlusPolicy):
    """``clipper+`` that keeps every replica's batch limit after each tick."""

    def __init__(self, **params: object) -> None:
        super().__init__(**params)  # type: ignore[arg-type]
        self.limits: list[tuple[float, int]] = []

    def autoscale(self, view: ClusterView) -> list[Action]:
        actions = super().autoscale(view)
        self.limits += [(view.now, i.max_batch) for i in view.all_instances()]
        return actions


def test_aimd_adds_one_under_the_target_and_cuts_ten_percent_over_it() -> None:
    assert aimd_step(10, 90.0, 100.0, 32) == 11
    assert aimd_step(20, 110.0, 100.0, 32) == 18  # floor(20 x 0.9)
    assert aimd_step(5, 110.0, 100.0, 32) == 4  # a cut is at least one
    assert aimd_step(1, 500.0, 100.0, 32) == 1  # never below 1 ...
    assert aimd_step(32, 50.0, 100.0, 32) == 32  # ... nor above the variant's max batch
    assert aimd_step(10, 90.0, 100.0, 32, step=4) == 14


@pytest.mark.parametrize("initial_batch", [1, 32])
def test_batch_limit_converges_to_the_same_band_under_a_fixed_load(initial_batch: int) -> None:
    # 100 queries/s on one replica (replication off): from a limit of 1 (too small: the queue
    # grows) or 32 (batches of 180 ms), AIMD settles in a sawtooth around 16, the largest
    # batch within the 100 ms target: up by one per tick to 17 (105 ms), cut to 15.
    policy = Recording(initial_batch=initial_batch, max_replicas=1, target_util=1.0)
    res = run([CPU_V], poisson([(0, 150, 100)]), 150, policy)
    late = [b for t, b in policy.limits if t >= 40]
    assert set(late) == {15, 16, 17}
    assert [b for t, b in policy.limits if t <= 2] == [initial_batch] * 2  # no batch ran at first
    q = res.queries
    assert q.loc[q["arrival"] >= 40, "slo_met"].all()
    assert (q["status"] == "served").all()


def test_the_limit_is_cut_as_soon_as_batches_at_it_overrun_the_target() -> None:
    policy = Recording(initial_batch=32, max_replicas=1)
    run([CPU_V], poisson([(0, 30, 150)]), 30, policy)
    first = [b for _, b in policy.limits[:12]]
    falling = first[: first.index(17) + 1]
    assert falling == sorted(falling, reverse=True) and len(falling) <= 8  # 32 28 25 22 19 17 (x0.9 per tick)


def test_a_growing_queue_adds_replicas_of_the_same_variant_which_stay() -> None:
    # 100/s, then 400/s from t=60: one replica at batch 16 serves 160/s. The queue grows,
    # replicas of the same (CPU) variant are added within seconds, never a GPU one, and the
    # SLO is met again once they are loaded (1 s). The replicas stay after the load falls.
    t = poisson([(0, 60, 100), (60, 180, 400), (180, 240, 50)])
    res = run([CPU_V, GPU_V], t, 240, ClipperPlusPolicy())
    loads = [(t, a) for t, a in res.actions if a.startswith("load")]
    before = [a for t, a in loads if t < 60]
    added = [t for t, a in loads if t >= 60]
    assert all(a.startswith("load c ") for _, a in loads)
    assert len(added) >= 2 and 60 < min(added) <= 64 and max(added) < 75
    assert not any(a.startswith("unload") for _, a in res.actions)
    q = res.queries
    assert (q["variant"] == "c").all()
    burst = q[(q["arrival"] >= 75) & (q["arrival"] < 180)]
    assert burst["slo_met"].mean() > 0.99
    tl = res.timeline
    assert (tl.loc[tl["t"] >= 200, "instances"] == len(before) + len(added)).all()


def test_gpu_replicas_each_get_their_own_device() -> None:
    # The cluster time-shares a GPU worker's device between its instances: a replica that
    # is to add throughput needs a worker (device) of its own: one is asked for, and the
    # replica is loaded onto it on the next tick (it starts serving after the start-up).
    fast = variant("g", GPU, 1, 8, 10, 2)  # 10 + 2b ms: batch 7 fits the 25 ms target, 290/s
    app = Application("a", Requirement(Level.TASK, "cls", "ds", slo_ms=50))
    t = poisson([(0, 60, 50), (60, 120, 800)])
    wl = Workload([app], t, np.zeros(len(t), dtype=np.int64))
    res = run_simulation(Catalog([fast]), wl, ClipperPlusPolicy(), make_executor("sim"), SPEC, RunSpec(120))
    acts = res.actions
    placed = [a.split(" on worker ")[1] for _, a in acts if a.startswith("load g")]
    assert len(set(placed)) == len(placed)  # one replica per worker
    asked = [(t, a.split()[2]) for t, a in acts if a.startswith("add worker") and t > 0]
    assert len(asked) >= 2
    for t_add, wid in asked:
        assert any(t == t_add + 1 and a.endswith(f"on worker {wid}") for t, a in acts)
    tl = res.timeline
    assert (tl.loc[tl["t"] >= 100, "workers_gpu"] == tl.loc[tl["t"] >= 100, "instances"]).all()
    assert res.queries.loc[res.queries["arrival"] >= 100, "slo_met"].mean() > 0.99


@pytest.mark.parametrize(
    "params",
    [
        {"sizing": "median"},
        {"target_util": 0},
        {"slo_share": 1.5},
        {"initial_batch": 0},
        {"initial_batch": 2.5},
        {"additive_step": 0},
        {"decrease_factor": 1.0},
        {"decrease_factor": 0},
        {"queue_slo_share": -1},
        {"scale_out_ticks": 0},
        {"rate_window_s": 0.5},
        {"max_replicas": 0},
        {"tick_s": 0},
        {"variants": ["a"]},
        {"warp": 9},
    ],
)
def test_bad_parameters_are_one_line_config_errors(params: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as err:
        make_policy("clipper+", **params)
    assert "\n" not in str(err.value) and "clipper+" in str(err.value)


def test_unknown_application_or_unfit_variant_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown application"):
        run([CPU_V], poisson([(0, 5, 10)]), 5, ClipperPlusPolicy(variants={"nope": "c"}))
    slow = variant("slow", CPU, 2, 4, 300, 10)  # 310 ms: misses the 200 ms SLO
    with pytest.raises(ConfigError, match="does not meet application"):
        run([CPU_V, slow], poisson([(0, 5, 10)]), 5, ClipperPlusPolicy(variants={"a": "slow"}))


def test_config_file_lists_every_parameter_with_its_default() -> None:
    conf = yaml.safe_load(CONF.read_text())
    assert conf["name"] == "clipper+"
    sig = inspect.signature(ClipperPlusPolicy.__init__).parameters
    defaults = {k: p.default for k, p in sig.items() if k != "self"}
    assert conf["params"] == {**defaults, "variants": {}}
    make_policy(conf["name"], **conf["params"])
