"""The ``infaas`` policy: per-query selection, model-level and VM-level autoscaling, each shown
on a small in-code catalog by what the run records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
import simpy

from infaas_sim.catalog import Catalog
from infaas_sim.clock import Clock
from infaas_sim.cluster import Cluster
from infaas_sim.errors import ConfigError
from infaas_sim.executor import make_executor
from infaas_sim.hardware import HardwareKind, InstanceType
from infaas_sim.metrics import Recorder
from infaas_sim.policy import AddWorker, Load, LoadThenServe, Reject, Serve, Unload, make_policy
from infaas_sim.query import Application, Level, Query, Requirement
from infaas_sim.simulation import ClusterSpec, RunResult, RunSpec, Workload, run_simulation
from infaas_sim.snapshot import InstanceData, Rates, WorkerData, view_from
from infaas_sim.variant import Variant
from infaas_sim.view import ClusterView
from policies.infaas import InfaasPolicy
from policies.infaas_common import Option, ScalePlan, downgrade_due, plan_scale_up

CPU, GPU = HardwareKind.CPU, HardwareKind.GPU
TYPES = {  # the INFaaS instances' prices, with short start-ups to keep runs short
    "cpu": InstanceType("cpu", CPU, 8, 32768, 0.384, 5.0),
    "gpu": InstanceType("gpu", GPU, 8, 62464, 3.06, 5.0, 1, 16384),
}
SPEC = ClusterSpec(instance_types=TYPES, type_by_kind={CPU: "cpu", GPU: "gpu"})


def variant(vid: str, hw: HardwareKind, cores: float, max_batch: int, load_ms: float, mem: float, icpt: float,
            slope: float, acc: float = 0.76, arch: str = "r50", task: str = "cls") -> Variant:  # fmt: skip
    return Variant(vid, arch, task, "ds", "fw", hw, "fp32", cores, max_batch, acc, load_ms, mem, icpt, slope)


# ResNet-50-like: CPU (2 cores) 30 ms at batch 1, 60 ms at batch 4; TensorRT 3.9 ms, 21.9 ms at 16.
R50_CPU = variant("r50-cpu", CPU, 2, 4, 1500, 500, 20, 10)
R50_GPU = variant("r50-gpu", GPU, 1, 16, 1100, 300, 2.7, 1.2)


def task_app(name: str, slo_ms: float, index: int, acc: float = 0.0, task: str = "cls") -> Application:
    return Application(name, Requirement(Level.TASK, task, "ds", slo_ms=slo_ms, min_accuracy=acc), index=index)


def poisson(rng: np.random.Generator, segments: Sequence[tuple[float, float, float]]) -> np.ndarray:
    """Arrival times of piecewise-constant Poisson traffic: (start, end, rate) segments."""
    parts = [np.sort(rng.uniform(a, b, rng.poisson(rate * (b - a)))) for a, b, rate in segments]
    return np.concatenate(parts)


def run(variants: Sequence[Variant], apps: Sequence[Application], times: np.ndarray, apps_of: np.ndarray,
        duration: float, spec: ClusterSpec = SPEC, batches: np.ndarray | None = None,
        **params: object) -> RunResult:  # fmt: skip
    wl = Workload(list(apps), times, apps_of, batches)
    policy = make_policy("infaas", **params)
    return run_simulation(
        Catalog(variants), wl, policy, make_executor("sim"), spec, RunSpec(duration_s=duration, seed=1)
    )


def violation_rate(q: pd.DataFrame, start: float, end: float) -> float:
    sub = q[(q["arrival"] >= start) & (q["arrival"] < end)]
    assert len(sub) > 0
    return float(1 - sub["slo_met"].mean())


def action_time(actions: list[tuple[float, str]], text: str, after: float = 0.0) -> float:
    return min(t for t, a in actions if text in a and t >= after)


# --- the burst, and the quiet that follows ------------------------------------------------------
@pytest.fixture(scope="module")
def burst_then_quiet() -> RunResult:
    # 20/s, then 400/s for 60 s (one CPU replica carries 67/s within 200 ms), then 5/s.
    rng = np.random.default_rng(0)
    t = poisson(rng, [(0, 20, 20), (20, 80, 400), (80, 200, 5)])
    return run([R50_CPU, R50_GPU], [task_app("a", 200, 0)], t, np.zeros(len(t), dtype=np.int64), 200)


def test_burst_upgrades_to_gpu_and_recovers_the_slo(burst_then_quiet: RunResult) -> None:
    q, acts = burst_then_quiet.queries, burst_then_quiet.actions
    assert (q.loc[q["arrival"] < 20, "hardware"] == "cpu").all()  # loose SLO: CPU first
    # The burst saturates the CPU replica: the autoscaler replicates it into the worker's
    # free cores and upgrades to the TensorRT variant (7 CPU replicas' 10.5 s of loading
    # exceeds 1.5x the GPU's 1.1 s), asking the VM autoscaler for a GPU worker.
    assert action_time(acts, "load r50-cpu", after=20) < 23
    assert action_time(acts, "(gpu)", after=20) < 25  # "add worker N (gpu)"
    t_load = action_time(acts, "load r50-gpu")
    t_drop = action_time(acts, "unload", after=t_load)
    assert t_load < t_drop < 35  # make-before-break: CPU replicas go once the GPU is ready
    early = violation_rate(q, 20, 25)
    late = violation_rate(q, 40, 80)
    assert early > 0.3 and late < 0.01
    during = q[(q["arrival"] >= 40) & (q["arrival"] < 80)]
    assert (during["hardware"] == "gpu").mean() > 0.99
    # Queries turned away while the queue was over the SLO say so, naming the variant.
    reasons = q.loc[q["status"] == "rejected", "reason"]
    assert len(reasons) > 0 and reasons.str.contains("in time now: the closest, r50-").all()
    assert reasons.str.contains("the closest, r50-cpu (cpu), would take 2", regex=False).mean() > 0.9


def test_quiet_downgrades_gpu_to_cpu_and_releases_the_gpu_worker(burst_then_quiet: RunResult) -> None:
    q, acts, tl = burst_then_quiet.queries, burst_then_quiet.actions, burst_then_quiet.timeline
    # At 5/s the GPU runs < 3% of its capacity for an SLO > 10x its latency: after the
    # hold-down, load the CPU variant, and only once it is ready unload the GPU one.
    t_cpu = action_time(acts, "load r50-cpu", after=80)
    t_unload_gpu = action_time(acts, "(r50-gpu)", after=80)
    t_release = max(t for t, a in acts if "remove worker" in a)
    assert 80 < t_cpu < t_unload_gpu < t_release < 170
    assert t_unload_gpu - t_cpu >= R50_CPU.load_latency_ms / 1000
    end = tl[tl["t"] >= 180]
    assert (end["workers_gpu"] == 0).all() and (end["workers_cpu"] == 1).all()
    tail = q[q["arrival"] >= 170]
    assert (tail["hardware"] == "cpu").all() and tail["slo_met"].all()
    assert violation_rate(q, 80, 200) < 0.01  # the switch itself costs no violations


def test_downgrade_considers_the_requirements_that_use_the_variant_not_all_that_may() -> None:
    # "b" accepts only the GPU variant (accuracy 0.77 > the CPU's 0.76) and sends nothing; "a"
    # bursts onto the GPU and goes quiet. After the downgrade hold-down (10 s at 5/s from 80 s)
    # the GPU variant's load goes to the CPU variant and the GPU worker is released. Were the
    # target required to suit every requirement that *may* use the variant (b too), nothing
    # would qualify and the GPU would stay until idle for ``idle_s`` (60 s: about 142 s).
    gpu = variant("r50-gpu", GPU, 1, 16, 1100, 300, 2.7, 1.2, acc=0.77)
    rng = np.random.default_rng(0)
    t = poisson(rng, [(0, 20, 20), (20, 80, 400), (80, 200, 5)])
    res = run([R50_CPU, gpu], [task_app("a", 200, 0), task_app("b", 200, 1, acc=0.77)], t,
              np.zeros(len(t), dtype=np.int64), 200)  # fmt: skip
    q, acts, tl = res.queries, res.actions, res.timeline
    assert (q.loc[(q["arrival"] >= 40) & (q["arrival"] < 80), "hardware"] == "gpu").mean() > 0.95
    assert 88 < action_time(acts, "(r50-gpu)", after=80) < 100
    assert (tl.loc[tl["t"] >= 130, "workers_gpu"] == 0).all()
    assert (q.loc[q["arrival"] >= 100, "hardware"] == "cpu").all()
    assert violation_rate(q, 80, 200) < 0.01


def test_burst_on_a_cpu_only_catalog_replicates_then_scales_down() -> None:
    rng = np.random.default_rng(1)
    t = poisson(rng, [(0, 10, 20), (10, 50, 250), (50, 120, 20)])
    res = run([R50_CPU], [task_app("a", 200, 0)], t, np.zeros(len(t), dtype=np.int64), 120)
    q, acts, tl = res.queries, res.actions, res.timeline
    # 250/s needs ceil(1.05 x 250 / 66.7) = 4 replicas; with no faster variant to upgrade
    # to, they replicate, 2 per worker (the released code's CPU limit), the VM autoscaler
    # adding a worker at a time for the rest.
    peak = tl.loc[(tl["t"] >= 30) & (tl["t"] < 50), "instances"].max()
    assert peak >= 4 and res.summary["peak_workers"]["cpu"] >= 2
    assert violation_rate(q, 10, 12) > 0.3 and violation_rate(q, 20, 50) < 0.02
    # Afterwards one replica at a time, each after the hold-down of 10 quiet checks.
    unloads = [t for t, a in acts if "unload" in a and t > 50]
    assert len(unloads) >= 3 and min(np.diff(unloads)) >= 10
    assert tl.loc[tl["t"] >= 110, "instances"].max() == 1
    assert action_time(acts, "remove worker") > 50  # and the emptied workers go


# --- per-query selection in runs -------------------------------------------------------------------
def test_a_query_whose_only_fitting_variant_is_unloaded_pays_the_load() -> None:
    fast = variant("r18-cpu", CPU, 2, 4, 900, 300, 10, 5, acc=0.70, arch="r18")
    accurate = variant("r152-cpu", CPU, 2, 4, 2500, 900, 40, 20, acc=0.78, arch="r152")
    apps = [task_app("any", 1000, 0), task_app("accurate", 5000, 1, acc=0.75)]
    t = np.array([1.0, 1.5, 2.0, 10.0, 10.5, 20.0])
    who = np.array([0, 0, 0, 1, 0, 1])
    spec = ClusterSpec(instance_types=TYPES, type_by_kind={CPU: "cpu"}, min_workers={CPU: 1})
    res = run([fast, accurate], apps, t, who, 30, spec=spec, preload=False)
    q = res.queries.set_index("qid")
    assert (q["status"] == "served").all() and q["slo_met"].all()
    # The first query of each application loads its variant on the existing worker and its
    # record carries the load; later queries find it loaded.
    assert q.loc[0, "variant"] == "r18-cpu" and q.loc[0, "loading_ms"] == pytest.approx(900)
    assert q.loc[3, "variant"] == "r152-cpu" and q.loc[3, "loading_ms"] == pytest.approx(2500)
    assert q.loc[4, "variant"] == "r18-cpu" and q.loc[4, "loading_ms"] == 0
    assert q.loc[5, "loading_ms"] == 0
    assert q.loc[3, "latency_ms"] == pytest.approx(2500 + accurate.latency_ms(1))


def test_tight_slo_goes_to_gpu_and_loose_slo_to_cpu() -> None:
    rng = np.random.default_rng(2)
    apps = [task_app("tight", 20, 0), task_app("medium", 50, 1), task_app("loose", 500, 2)]
    t = poisson(rng, [(0, 30, 9)])
    who = rng.integers(0, 3, len(t))
    res = run([R50_CPU, R50_GPU], apps, t, who, 30)
    q = res.queries
    assert (q["status"] == "served").all() and q["slo_met"].all()
    on_cpu = (q["hardware"] == "cpu").groupby(q["app"], observed=True).mean()
    # 20 ms: only TensorRT fits. 500 ms: loose, CPU first, even with the GPU loaded and
    # idle. 50 ms: both fit; the CPU variant has the least slack, unless a query in service
    # leaves too little of the 50 ms for another 30 ms.
    assert on_cpu["tight"] == 0 and on_cpu["loose"] == 1 and on_cpu["medium"] > 0.9


def test_impossible_queries_are_rejected_with_their_reason() -> None:
    apps = [task_app("tight", 10, 0)]
    t = np.array([0.5, 0.6, 9.0, 9.1])
    batches = np.array([1, 64, 1, 1])
    res = run([R50_CPU, R50_GPU], apps, t, np.zeros(4, dtype=np.int64), 10, batches=batches, preload=False)
    q = res.queries.set_index("qid")
    reason = [str(q.loc[i, "reason"]) for i in range(4)]
    # Nothing is loaded and loading the only fitting variant takes 1.1 s > 10 ms: rejected,
    # naming the variant that came closest; the tick after, the variant is loaded for the
    # queries that follow.
    assert q.loc[0, "status"] == "rejected"
    assert "r50-gpu" in reason[0] and "1100 ms to load" in reason[0]
    # 64 inputs: no variant takes such a batch (the catalog's reason).
    assert q.loc[1, "status"] == "rejected" and "batch of 64" in reason[1]
    assert q.loc[2, "status"] == "served" and q.loc[2, "variant"] == "r50-gpu" and q.loc[2, "slo_met"]


def test_memory_short_evicts_the_least_recently_used_idle_instance() -> None:
    small = {"cpu": InstanceType("cpu", CPU, 8, 1000, 0.384, 5.0)}
    spec = ClusterSpec(instance_types=small, type_by_kind={CPU: "cpu"}, max_workers={CPU: 1})
    a = variant("a-cpu", CPU, 2, 4, 500, 600, 10, 5, task="t1", arch="a")
    b = variant("b-cpu", CPU, 2, 4, 500, 600, 10, 5, task="t2", arch="b")
    apps = [task_app("one", 100, 0, task="t1"), task_app("two", 100, 1, task="t2")]
    rng = np.random.default_rng(3)
    t1, t2 = poisson(rng, [(0, 20, 10)]), poisson(rng, [(40, 60, 10)])
    t = np.concatenate([t1, t2])
    who = np.array([0] * len(t1) + [1] * len(t2))
    res = run([a, b], apps, t, who, 60, spec=spec)
    q, acts = res.queries, res.actions
    # One 1000 MB worker holds one 600 MB variant: "two"'s first query finds nothing, and
    # the tick after, "one"'s idle instance is evicted to make room.
    t_unload = action_time(acts, "(a-cpu)", after=40)
    assert t_unload == action_time(acts, "load b-cpu")
    assert not any("add worker" in x for t, x in acts if t > 0)
    two = q[q["app"] == "two"]
    assert two["status"].iloc[0] == "rejected"
    assert (two.loc[two["arrival"] >= t_unload + b.load_latency_ms / 1000, "status"] == "served").all()


def test_parameters_are_validated() -> None:
    with pytest.raises(ConfigError, match="slack"):
        make_policy("infaas", slack=0.5)
    with pytest.raises(ConfigError, match="vm_low_util"):
        make_policy("infaas", vm_low_util=2)
    with pytest.raises(ConfigError, match="unexpected keyword"):
        make_policy("infaas", no_such_knob=1)
    p = make_policy("infaas", tick_s=0.5, scale_down_holddown=20)
    assert isinstance(p, InfaasPolicy) and p.tick_s == 0.5 and p.scale_down_holddown == 20


# --- route on a hand-built cluster -------------------------------------------------------------------
class Bench:
    """A cluster with instances loaded by hand, to ask the policy where a query goes."""

    def __init__(self, variants: Sequence[Variant], apps: Sequence[Application],
                 types: dict[str, InstanceType] | None = None, **params: object) -> None:  # fmt: skip
        self.catalog = Catalog(variants)
        self.apps = list(apps)
        self.env = simpy.Environment()
        ex = make_executor("sim")
        ex.bind(Clock(self.env), 0)
        self.cluster = Cluster(self.env, self.catalog, ex, Recorder(self.catalog, apps), types or TYPES,
                               {CPU: "cpu", GPU: "gpu"})  # fmt: skip
        self.view = ClusterView(self.cluster)
        policy = make_policy("infaas", **params)
        assert isinstance(policy, InfaasPolicy)
        self.policy = policy
        self.qid = 0

    def load(self, vid: str, worker: int | None = None) -> int:
        inst = self.cluster.load(vid, worker, instant=True)
        assert inst is not None
        return inst.iid

    def fill(self, iid: int, n: int) -> None:
        for _ in range(n):
            self.cluster.enqueue(self.cluster.instances[iid], self.query(0))

    def query(self, app: int, batch: int = 1) -> Query:
        self.qid += 1
        return Query(self.qid, self.env.now, self.apps[app], batch)

    def route(self, app: int, batch: int = 1) -> object:
        self.policy._sync_running(self.view)  # what the tick does
        q = self.query(app, batch)
        return self.policy.route(q, self.catalog.candidates(q.app.requirement, batch), self.view)


def served_by(d: object) -> int:
    assert isinstance(d, Serve), d
    return d.instance.iid


def test_route_takes_the_tightest_fit_and_avoids_overloaded_variants() -> None:
    a = variant("a", CPU, 1, 1, 1000, 100, 30, 0, arch="a")  # 30 ms
    b = variant("b", CPU, 1, 1, 1000, 100, 50, 0, arch="b")  # 50 ms
    bench = Bench([a, b], [task_app("x", 200, 0)])
    ia, ib = bench.load("a"), bench.load("b")
    assert served_by(bench.route(0)) == ib  # least slack: 150 ms < 170 ms
    bench.fill(ib, 2)  # 50 ms running + 1 queued: 100 + 50 = 150 ms, still fits
    assert served_by(bench.route(0)) == ib
    bench.fill(ib, 3)  # a 250 ms wait > 200 ms: overloaded, marked for 2 s
    assert served_by(bench.route(0)) == ia
    bench.env.run(until=0.5)  # b's queue drains, but the mark holds
    assert served_by(bench.route(0)) == ia
    bench.fill(ia, 8)  # a is over the SLO too: the marked variant that fits is the fallback
    assert served_by(bench.route(0)) == ib
    bench.fill(ib, 8)
    d = bench.route(0)
    assert isinstance(d, Reject) and "the closest, a (cpu)" in d.reason
    bench.env.run(until=3.0)  # everything drained and the marks expired
    assert served_by(bench.route(0)) == ib


def test_route_loads_an_unloaded_variant_on_the_worker_with_most_room() -> None:
    a = variant("a", CPU, 4, 1, 800, 100, 30, 0, arch="a")
    b = variant("b", CPU, 2, 1, 800, 100, 60, 0, arch="b")
    bench = Bench([a, b], [task_app("x", 1000, 0)])
    bench.load("a")  # worker 0: 4 of 8 cores taken
    w1 = bench.cluster.add_worker("cpu", instant=True)
    assert w1 is not None
    bench.fill(0, 40)  # a's queue is 1.2 s > 1 s
    d = bench.route(0)
    # b is not loaded: 800 ms load + 60 ms fits 1000 ms; worker 1 has 8 free cores.
    assert isinstance(d, LoadThenServe) and d.variant_id == "b" and d.worker_id == w1.wid


def test_autoscale_replicates_with_explicit_placement() -> None:
    bench = Bench([R50_CPU], [task_app("x", 200, 0)])
    bench.policy.setup(bench.view, bench.apps, {})
    iid = bench.load("r50-cpu")
    for s in range(3):  # 300 inputs/s over the last seconds
        for k in range(300):
            bench.cluster.variant_input_meter.add(bench.cluster.instances[iid].vi, s + k / 300)
    bench.env.run(until=3.0)
    actions = bench.policy.autoscale(bench.view)
    loads = [x for x in actions if isinstance(x, Load)]
    # ceil(1.05 x 300 / 66.7) = 5 replicas: 4 more; the worker takes 2 replicas of a CPU
    # variant (the released code's limit), the rest ask for a worker.
    assert len(loads) == 1 and all(x.worker_id == 0 and x.max_batch == 4 for x in loads)
    assert not any(isinstance(x, Unload) for x in actions)
    assert any(type(x).__name__ == "AddWorker" for x in actions)


def test_a_policy_decides_from_plain_data_without_a_cluster() -> None:
    # The two tests above, on a view built from data (infaas_sim.snapshot): worker 0 holds a
    # (4 of 8 cores) with a 1.2 s queue, worker 1 is empty; b is not loaded.
    a = variant("a", CPU, 4, 1, 800, 100, 30, 0, arch="a")
    b = variant("b", CPU, 2, 1, 800, 100, 60, 0, arch="b")
    cat = Catalog([a, b])
    view = view_from(cat, [WorkerData("cpu"), WorkerData("cpu")], [InstanceData("a", 0, queries=40)], spec=SPEC)
    policy = make_policy("infaas")
    q = Query(0, 0.0, task_app("x", 1000, 0), 1)
    d = policy.route(q, cat.candidates(q.app.requirement, 1), view)
    assert isinstance(d, LoadThenServe) and d.variant_id == "b" and d.worker_id == 1
    # 300 inputs/s on one r50-cpu replica: one more on its worker (two per worker), a worker for the rest.
    cat = Catalog([R50_CPU])
    view = view_from(cat, [WorkerData("cpu")], [InstanceData("r50-cpu", 0)], now=3.0,
                     rates=Rates(variants={"r50-cpu": 300.0}), spec=SPEC)  # fmt: skip
    policy = make_policy("infaas")
    policy.setup(view, [task_app("x", 200, 0)], {})
    actions = policy.autoscale(view)
    assert [(x.variant_id, x.worker_id, x.max_batch) for x in actions if isinstance(x, Load)] == [("r50-cpu", 0, 4)]
    assert any(isinstance(x, AddWorker) for x in actions) and not any(isinstance(x, Unload) for x in actions)


def test_overloaded_variant_replicates_while_its_upgrade_waits_for_a_slow_vm() -> None:
    # The worker is full (one 8-core replica) and 100/s needs a second replica: the room limit
    # forces the upgrade, whose GPU VM boots for 90 s. A CPU VM boots in 60 s, so the source
    # asks for one as a stop-gap (its replica serves 30 s before the target), rather than
    # stay overloaded until the GPU worker is up.
    slow = {
        "cpu": InstanceType("cpu", CPU, 8, 32768, 0.384, 60.0),
        "gpu": InstanceType("gpu", GPU, 8, 62464, 3.06, 90.0, 1, 16384),
    }
    cpu8 = variant("r50-cpu8", CPU, 8, 4, 1500, 500, 20, 10)

    def tick(gpu_up: bool) -> tuple[Bench, list[object]]:
        bench = Bench([cpu8, R50_GPU], [task_app("x", 200, 0)], types=slow)
        bench.policy.setup(bench.view, bench.apps, {})
        iid = bench.load("r50-cpu8")
        if gpu_up:
            assert bench.cluster.add_worker("gpu", instant=True) is not None
        for s in range(3):
            for k in range(100):
                bench.cluster.variant_input_meter.add(bench.cluster.instances[iid].vi, s + k / 100)
        bench.env.run(until=3.0)
        return bench, list(bench.policy.autoscale(bench.view))

    bench, actions = tick(gpu_up=False)
    assert bench.policy._trans  # the upgrade is pending
    assert sorted(x.instance_type for x in actions if isinstance(x, AddWorker)) == ["cpu", "gpu"]
    # With the GPU worker up, the upgrade loads at once and no CPU worker is asked for.
    bench, actions = tick(gpu_up=True)
    assert any(isinstance(x, Load) and x.variant_id == "r50-gpu" for x in actions)
    assert [x.instance_type for x in actions if isinstance(x, AddWorker)] == []


def test_downgrade_target_keeps_its_capacity_within_the_slo() -> None:
    # A 50 ms application idles on the GPU: the cheapest CPU variant (31 ms) exceeds half the
    # SLO, so a replica could not carry its counted 32/s within it; the 4-core one (18 ms) can.
    slow2 = variant("m-cpu2", CPU, 2, 4, 900, 160, 3, 28, acc=0.71, arch="m")
    fast4 = variant("m-cpu4", CPU, 4, 4, 900, 160, 2, 16, acc=0.71, arch="m")
    gpu = variant("m-gpu", GPU, 1, 16, 600, 10, 0.55, 0.05, acc=0.71, arch="m")
    bench = Bench([slow2, fast4, gpu], [task_app("i", 50, 0)], downgrade_holddown=1)
    bench.policy.setup(bench.view, bench.apps, {})
    target = bench.policy._downgrade_target(2, 50.0, 0.0, 1, 0.0)
    assert target is not None and bench.catalog.variants[target[0]].variant_id == "m-cpu4"


# --- the shared decision rules -----------------------------------------------------------------------
def test_scale_up_replicates_or_upgrades_by_the_load_time_rule() -> None:
    cpu = Option(0, throughput=66.7, load_s=1.5, price_per_hour=0.096, latency_ms=30)
    gpu = Option(1, throughput=730.6, load_s=1.1, price_per_hour=3.06, latency_ms=3.9)
    # 100/s on 1 replica: 2 replicas needed, 1 more: 1.5 s <= 1.5 x 1.1 s: replicate.
    assert plan_scale_up(cpu, 1, 100.0, [gpu], 1.05) == ScalePlan("replicate", 0, 2)
    # 150/s: 2 more replicas, 3 s > 1.65 s: upgrade to one GPU.
    assert plan_scale_up(cpu, 1, 150.0, [gpu], 1.05) == ScalePlan("upgrade", 1, 1)
    # No faster variant of the architecture: replicate, up to the replica limit.
    assert plan_scale_up(cpu, 1, 150.0, [], 1.05, max_replicas=2) == ScalePlan("replicate", 0, 2)
    # Memory forces the upgrade even when replication loads faster.
    assert plan_scale_up(cpu, 1, 100.0, [gpu], 1.05, room_for=0) == ScalePlan("upgrade", 1, 1)
    # price_aware: the 3 CPU replicas ($0.29/h) beat the GPU ($3.06/h).
    assert plan_scale_up(cpu, 1, 150.0, [gpu], 1.05, price_aware=True) == ScalePlan("replicate", 0, 3)
    assert plan_scale_up(cpu, 3, 150.0, [gpu], 1.05) == ScalePlan("keep", 0, 3)


def test_downgrade_rule_thresholds() -> None:
    # GPU: SLO > 10x latency and load < 3% of capacity; Inferentia: 5x and 20%.
    assert downgrade_due(GPU, 200, 3.9, 20, 730.6)
    assert not downgrade_due(GPU, 200, 3.9, 30, 730.6)
    assert not downgrade_due(GPU, 35, 3.9, 1, 730.6)
    inf = HardwareKind.INFERENTIA
    assert downgrade_due(inf, 200, 22, 100, 700) and not downgrade_due(inf, 100, 22, 100, 700)
    assert not downgrade_due(CPU, 1000, 1, 0, 100)


def test_price_aware_starts_the_cheapest_replicas() -> None:
    # Nothing loaded, 2 s SLO: INFaaS loads the CPU variant with the least load + inference
    # latency (r18); price_aware the cheapest to run (one r50 core beats r18's two cores).
    r18 = variant("r18-cpu", CPU, 2, 4, 500, 300, 10, 5, arch="r18")
    r50 = variant("r50-cpu1", CPU, 1, 4, 900, 300, 40, 20, arch="r50")
    for price_aware, want in ((False, "r18-cpu"), (True, "r50-cpu1")):
        bench = Bench([r18, r50], [task_app("x", 2000, 0)], preload=False, price_aware=price_aware)
        bench.cluster.add_worker("cpu", instant=True)
        d = bench.route(0)
        assert isinstance(d, LoadThenServe) and d.variant_id == want


@pytest.fixture(scope="module")
def gpu_left_behind() -> dict[bool, RunResult]:
    # "tight" (10 ms: only the GPU fits) starts first and stops at 30 s; "loose" (2 s) joins
    # at 10 s, finds the GPU running (nothing else) and uses it. At 40/s the GPU runs 5% of its capacity:
    # above INFaaS's 3% downgrade threshold, so INFaaS keeps a $3.06/h GPU for load one
    # $0.096/h CPU replica carries.
    rng = np.random.default_rng(3)
    ta = poisson(rng, [(0, 30, 20)])
    tb = poisson(rng, [(10, 150, 40)])
    t = np.concatenate([ta, tb])
    order = np.argsort(t, kind="stable")
    apps_of = np.concatenate([np.zeros(len(ta), dtype=np.int64), np.ones(len(tb), dtype=np.int64)])[order]
    apps = [task_app("tight", 10, 0), task_app("loose", 2000, 1)]
    return {pa: run([R50_CPU, R50_GPU], apps, t[order], apps_of, 150, preload=False, idle_s=20, price_aware=pa)
            for pa in (False, True)}  # fmt: skip


def test_price_aware_rightsizes_a_variant_its_remaining_users_can_leave(
    gpu_left_behind: dict[bool, RunResult],
) -> None:
    infaas, priced = gpu_left_behind[False], gpu_left_behind[True]
    for res in (infaas, priced):
        q = res.queries
        loose = q[q["app"] == "loose"]
        assert (loose.loc[loose["arrival"] < 30, "hardware"] == "gpu").all()  # it joined the running GPU
    # As released: the loose application stays on the GPU to the end.
    q = infaas.queries
    assert (q.loc[q["arrival"] > 120, "hardware"] == "gpu").all()
    assert not any("(r50-gpu)" in a and "unload" in a for _, a in infaas.actions)
    # price_aware: not while "tight" may still come back (idle_s = 20 s after its last query,
    # its 10 ms SLO rules the CPU out); after that, a CPU replica is loaded first, then the
    # GPU dropped, then its worker released, without violations.
    acts, tl, q = priced.actions, priced.timeline, priced.queries
    t_cpu = action_time(acts, "load r50-cpu", after=30)
    t_unload_gpu = action_time(acts, "(r50-gpu)", after=30)
    assert 50 < t_cpu < t_unload_gpu < 90
    assert t_unload_gpu - t_cpu >= R50_CPU.load_latency_ms / 1000
    tail = q[q["arrival"] > 120]
    assert (tail["hardware"] == "cpu").all() and tail["slo_met"].all()
    assert (tl.loc[tl["t"] >= 140, "workers_gpu"] == 0).all()
    assert violation_rate(q[q["app"] == "loose"], 30, 150) < 0.01
    assert priced.summary["total_cost"] < 0.8 * infaas.summary["total_cost"]


def test_rightsize_margin_must_be_a_fraction() -> None:
    with pytest.raises(ConfigError, match=r"rightsize_margin must be in \[0, 1\), got 1\.5"):
        make_policy("infaas", price_aware=True, rightsize_margin=1.5)


def test_each_pipeline_stage_is_routed_on_its_own_requirement(
    pipeline_catalog: Catalog, h: Any, conserved: Any
) -> None:
    app = h.pipeline_app(400.0, min_accuracy=(0.55, 0.75))  # det-gpu, and gpu-a / gpu-b
    t = h.poisson_times(20, 30.0, seed=4)
    res = h.simulate(pipeline_catalog, h.workload([app], t), make_policy("infaas"), 30.0)
    conserved(res, len(t))
    served = res.queries[res.queries["status"] == "served"]
    assert len(served) > 0.9 * len(t)
    stage_variants = served["stage_variants"].map(tuple)
    assert {sv[0] for sv in stage_variants} == {"det-gpu"}  # the only detector that meets 0.55
    assert {sv[1] for sv in stage_variants} <= {"gpu-a", "gpu-b"}  # the classifiers that meet 0.75


# --- batch limit and capacity: sized for the SLOs a variant serves -------------------------------------
INF = HardwareKind.INFERENTIA


def _inf_spec(h: Any) -> ClusterSpec:
    return h.spec(type_by_kind={CPU: "cpu", INF: "inf"})  # no GPU workers: loose goes to inf-a


def test_a_variant_is_batched_for_the_slos_it_serves_not_every_slo_that_may_use_it(h: Any, conserved: Any) -> None:
    # inf-a: 3 + 0.8 b ms. "tight" (8 ms) may use it, but its queries (every 0.5 s) always find
    # cpu-batch idle, the tighter fit (6 ms), and never go to inf-a. "loose" (200 ms, accuracy
    # 0.73: inf-a is the only variant with a worker kind) sends 400/s there. At 200 ms inf-a may
    # run batch 8 (9.4 ms <= 100 ms), 851/s per replica: one replica. Sized for tight's 8 ms it
    # would run batch 1 (263/s), and need two.
    tight = h.task_app(8.0, index=0, name="tight")
    loose = h.task_app(200.0, index=1, name="loose", min_accuracy=0.73)
    t, who = h.merge((h.periodic_times(0.5, 30.0, start=0.25), 0), (h.poisson_times(400, 30.0, seed=5), 1))
    res = h.simulate(h.VARIANTS, h.workload([tight, loose], t, who), make_policy("infaas"), 30.0, spec=_inf_spec(h))
    conserved(res, len(t))
    q = res.queries
    on_tight, on_loose = q[q["app"] == "tight"], q[q["app"] == "loose"]
    assert (on_loose["variant"] == "inf-a").all() and on_loose["slo_met"].mean() > 0.99
    # Under 400/s the batcher fills batches beyond 1, up to the limit the 200 ms SLO allows.
    assert on_loose["exec_batch"].mean() > 1.5
    assert 4 <= on_loose["exec_batch"].max() <= 8
    # And capacity is counted at that batch: no second replica.
    assert sum(1 for _, a in res.actions if a.startswith("load inf-a")) == 1
    # Tight never routes to inf-a: a query waiting there would run in a batch of up to 8
    # (9.4 ms > 8 ms). (Held at batch 1, inf-a would take some of tight's queries when its
    # current batch is about to end, and tight would pin it at batch 1 for good.)
    assert (on_tight["variant"] == "cpu-batch").all() and on_tight["slo_met"].all()


def test_the_batch_limit_tightens_only_for_a_tighter_slo_served_throughout_a_hold_down(h: Any) -> None:
    # Both applications (accuracy 0.73: inf-a is the only one with a worker kind) start inf-a
    # at set-up, so it is loaded for the tighter, "tight" (8 ms: batch 1, as 3.8 ms fits half
    # of 8 ms and 4.6 ms does not). "loose" (200 ms) uses it throughout at 50/s, and the first
    # tick sets batch 8. Tight's queries fit only while inf-a is idle (it runs them alone, at
    # batch 1, whatever the limit; queued, they would run in a batch of up to 8: 9.4 ms).
    # A 5 s visit (4-9 s) is shorter than the Inferentia hold-down (15 ticks): the limit stays
    # 8. From 20 s to 45 s tight keeps coming: 15 ticks after its first, the limit drops to 1,
    # and once tight has sent nothing for the rate window (2 s), it returns to 8.
    loose = h.task_app(200.0, index=0, name="loose", min_accuracy=0.73)
    tight = h.task_app(8.0, index=1, name="tight", min_accuracy=0.73)
    t, who = h.merge(
        (h.poisson_times(50, 60.0, seed=6), 0),
        (h.periodic_times(0.2, 5.0, start=4.05), 1),
        (h.periodic_times(0.2, 25.0, start=20.05), 1),
    )
    res = h.simulate(h.VARIANTS, h.workload([loose, tight], t, who), make_policy("infaas"), 60.0, spec=_inf_spec(h))
    q = res.queries
    served = q[q["status"] == "served"]
    assert (served["variant"] == "inf-a").all() and served["slo_met"].all()
    served_tight = served[served["app"] == "tight"]
    assert ((served_tight["arrival"] > 4) & (served_tight["arrival"] < 9.1)).sum() > 10
    limits = [(t, int(a.split(" to ")[1].split(",")[0])) for t, a in res.actions if a.startswith("set batch")]
    assert [b for _, b in limits] == [8, 1, 8]
    (t_first, _), (t_down, _), (t_up, _) = limits
    assert t_first <= 1.0
    assert 20.05 + 14 <= t_down <= 20.05 + 16
    last_tight = served_tight["arrival"].max()
    assert last_tight > 44 and last_tight + 2.0 <= t_up <= last_tight + 3.0 + 1e-9
    # Before the hold-down, tight ran alone on an idle inf-a; sized for it, inf-a ran batch 1.
    assert (served_tight["exec_batch"] == 1).all()
    during = served[(served["arrival"] > t_down + 0.1) & (served["arrival"] < last_tight)]
    assert (during["exec_batch"] == 1).all()
    assert served.loc[(served["arrival"] > 4) & (served["arrival"] < t_down - 0.5), "exec_batch"].max() > 1


# --- moves (upgrades) onto a target, and VM scale-out ------------------------------------------
SLOW = {  # the AWS start-ups: a CPU VM boots in 60 s, a GPU VM in 90 s
    "cpu": InstanceType("cpu", CPU, 8, 32768, 0.384, 60.0),
    "gpu": InstanceType("gpu", GPU, 8, 62464, 3.06, 90.0, 1, 16384),
}
CPU8 = variant("r50-cpu8", CPU, 8, 4, 1500, 500, 20, 10)  # one per worker, 67/s within 200 ms


def feed(bench: Bench, rates: dict[int, float], seconds: int = 3) -> None:
    """Inputs per second into each instance's variant meter for ``seconds`` seconds."""
    for iid, rate in rates.items():
        vi = bench.cluster.instances[iid].vi
        for s in range(seconds):
            n = int(rate)
            for k in range(n):
                bench.cluster.variant_input_meter.add(vi, s + k / n)


def test_an_upgrade_onto_a_target_that_serves_waits_for_replicas_for_both_loads() -> None:
    # The GPU target already carries 600/s on one replica (730/s within 200 ms); the CPU
    # source's 100/s must move there. One replica cannot carry 700/s with the 5% slack, so the
    # move waits for a second one and the source keeps serving. (Counting the target's
    # existing replica as the move's made it complete at once: the source was unloaded the
    # next tick, and its load went nowhere.)
    bench = Bench([CPU8, R50_GPU], [task_app("x", 200, 0)], types=SLOW)
    bench.policy.setup(bench.view, bench.apps, {})
    src = bench.load("r50-cpu8")
    assert bench.cluster.add_worker("gpu", instant=True) is not None
    dst = bench.load("r50-gpu")
    feed(bench, {src: 100, dst: 600})
    bench.env.run(until=3.0)
    actions = bench.policy.autoscale(bench.view)
    src_vi = bench.cluster.instances[src].vi
    tr = bench.policy._trans[src_vi]
    assert tr.replicas == 2
    assert [x.instance_type for x in actions if isinstance(x, AddWorker)] == ["gpu"]
    bench.env.run(until=4.0)
    later = bench.policy.autoscale(bench.view)
    assert not any(isinstance(x, Unload) and x.instance_id == src for x in actions + later)


def test_an_upgrade_in_flight_follows_its_source_demand() -> None:
    # The upgrade starts at 100/s (one GPU replica) while the GPU VM boots; the source's demand
    # grows to 1,500/s: the move now waits for three replicas, and asks for room for them.
    bench = Bench([CPU8, R50_GPU], [task_app("x", 200, 0)], types=SLOW)
    bench.policy.setup(bench.view, bench.apps, {})
    src = bench.load("r50-cpu8")
    feed(bench, {src: 100})
    bench.env.run(until=3.0)
    bench.policy.autoscale(bench.view)
    src_vi = bench.cluster.instances[src].vi
    assert bench.policy._trans[src_vi].replicas == 1
    feed(bench, {src: 1500}, seconds=5)
    bench.env.run(until=5.0)
    bench.policy.autoscale(bench.view)
    assert bench.policy._trans[src_vi].replicas == 3


def test_vm_scale_out_one_worker_per_back_off_or_what_the_demand_needs() -> None:
    # 400/s on a CPU-only catalog: seven 8-core replicas (one per worker) where one runs.
    def first_tick(**params: object) -> tuple[Bench, list[object]]:
        bench = Bench([CPU8], [task_app("x", 200, 0)], types=SLOW, **params)
        bench.policy.setup(bench.view, bench.apps, {})
        src = bench.load("r50-cpu8")
        feed(bench, {src: 400}, seconds=36)
        bench.env.run(until=3.0)
        return bench, list(bench.policy.autoscale(bench.view))

    bench, actions = first_tick()
    assert [x.instance_type for x in actions if isinstance(x, AddWorker)] == ["cpu"]  # the released rule
    assert bench.cluster.add_worker("cpu") is not None  # it boots for 60 s
    for t in range(4, 36):  # the next worker after the 30 s back-off, while that one still boots
        bench.env.run(until=float(t))
        added = [x for x in bench.policy.autoscale(bench.view) if isinstance(x, AddWorker)]
        assert len(added) == (1 if t == 33 else 0), t
    _, actions = first_tick(vm_scale_out="demand")
    assert len([x for x in actions if isinstance(x, AddWorker)]) == 6  # the six missing replicas' workers
    with pytest.raises(ConfigError, match="vm_scale_out"):
        make_policy("infaas", vm_scale_out="fast")


def test_a_pinned_query_without_an_slo_is_served_by_its_loaded_variant() -> None:
    # No SLO: infinite slack on every instance. (A strict "less slack" test against an
    # infinite start rejected it: "none is loaded and none can be placed".)
    bench = Bench([R50_CPU, R50_GPU], [Application("p", Requirement(Level.VARIANT, "r50-cpu"), index=0)])
    iid = bench.load("r50-cpu")
    assert served_by(bench.route(0)) == iid
    bench.fill(iid, 3)
    assert served_by(bench.route(0)) == iid
