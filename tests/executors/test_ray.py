"""The ``ray`` executor: each worker is a Ray actor on a local Ray instance (loopback, 2 CPUs).

The actor-level pieces (resource mapping, the runtime inside an actor) are checked without
Ray; the rest replays traces on wall-clock time through real actors: every query accounted
for, an actor killed mid-run fails exactly its queries with the fault and is replaced, an
unplaceable worker is a recorded fault, a released worker frees its actor.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import simpy

from executors.ray import RayExecutor, actor_resources, bundle_of
from executors.ray_actor import LoadSpec, WorkerRuntime
from infaas_sim.catalog import Catalog
from infaas_sim.clock import Clock, WallClockEnvironment
from infaas_sim.errors import ConfigError
from infaas_sim.executor import make_executor
from infaas_sim.hardware import HardwareKind, InstanceType
from infaas_sim.policy import Action, Load, LoadThenServe, RemoveWorker, Serve, make_policy
from infaas_sim.simulation import Fault, RunResult, RunSpec, run_simulation
from infaas_sim.view import ClusterView

ROOT = Path(__file__).resolve().parents[2]
CPU, GPU, INF = HardwareKind.CPU, HardwareKind.GPU, HardwareKind.INFERENTIA
# Workers that start at once (the actor's own start-up is the real one) on a 2-CPU machine.
FAST_CPU = {"cpu": InstanceType("cpu", CPU, 2, 8192, 0.384, 0.0)}
HALF_CPU = {"cpu": {"num_cpus": 0.5}}


# --- without Ray ----------------------------------------------------------------------------
def test_worker_resources_follow_the_instance_type() -> None:
    assert actor_resources(InstanceType("m5", CPU, 8, 32768, 0.384, 0.0)) == {"num_cpus": 8.0}
    p3 = actor_resources(InstanceType("p3", GPU, 8, 62464, 3.06, 0.0, 1, 16384))
    assert p3 == {"num_cpus": 8.0, "num_gpus": 1.0}
    inf1 = actor_resources(InstanceType("inf1", INF, 8, 16384, 0.362, 0.0, 4, 8192))
    assert inf1 == {"num_cpus": 8.0, "resources": {"neuron_cores": 4.0}}
    assert bundle_of(inf1) == {"CPU": 8.0, "neuron_cores": 4.0}
    assert bundle_of(p3) == {"CPU": 8.0, "GPU": 1.0}


def test_resource_overrides_replace_amounts_and_bad_keys_are_config_errors() -> None:
    m5 = InstanceType("m5", CPU, 8, 32768, 0.384, 0.0)
    assert actor_resources(m5, {"num_cpus": 0.5, "resources": {"rack_a": 1}}) == {
        "num_cpus": 0.5,
        "resources": {"rack_a": 1.0},
    }
    with pytest.raises(ConfigError, match="unknown resource key"):
        actor_resources(m5, {"cpus": 1})
    with pytest.raises(ConfigError, match="num_cpus must be a number >= 0"):
        actor_resources(m5, {"num_cpus": -1})


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"runner": "tensorflow"}, "unknown runner"),
        ({"runner": "catalog"}, "runner_params.catalog"),
        ({"runner": "catalog", "runner_params": {"catalog": "/nonexistent.csv"}}, "not found"),
        ({"resources": {"tpu": {"num_cpus": 1}}}, "unknown hardware kind"),
        ({"resources": {"cpu": {"gpus": 1}}}, "unknown resource key"),
        ({"placement_timeout_s": 0}, "placement_timeout_s"),
        ({"num_cpus": -2}, "num_cpus"),
        ({"address": ""}, "address"),
        ({"connect_timeout_s": 0}, "connect_timeout_s"),
    ],
)
def test_bad_executor_settings_are_one_line_config_errors(params: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as info:
        make_executor("ray", **params)
    assert "\n" not in str(info.value)


def test_an_address_nobody_answers_is_a_one_line_error_within_the_timeout() -> None:
    import time

    from executors.ray import _reachable

    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=r"cannot reach Ray at '127\.0\.0\.1:1' within 3 s") as info:
        _reachable("127.0.0.1:1", 3.0)  # nothing listens on port 1: refused at once
    assert time.monotonic() - t0 < 5 and "\n" not in str(info.value)
    _reachable("auto", 1.0)  # other address forms are Ray's to resolve


def test_without_ray_the_executor_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when Ray is absent
    with pytest.raises(ConfigError, match=r"executor ray needs Ray: pip install 'infaas-sim\[ray\]'"):
        make_executor("ray", runner="numpy")


def test_the_worker_runtime_loads_lazily_runs_and_unloads(h: Any) -> None:
    rt = WorkerRuntime(3, "numpy", {"size": 32, "layers": 2}, seed=0)
    spec = LoadSpec(7, h.VARIANTS[1], 2.0)
    assert rt.ready()["wid"] == 3
    assert rt.run(spec, 4) >= 0.0  # an instance the cluster loaded instantly loads on first use
    assert rt.loaded() == [7] and rt.batches == 1
    assert rt.load(spec) == 0.0  # loaded once
    rt.unload(7)
    assert rt.loaded() == []


def test_the_profiled_runner_sleeps_the_profiled_latency(h: Any) -> None:
    rt = WorkerRuntime(0, "profiled", {}, seed=0)
    spec = LoadSpec(0, h.VARIANTS[1], 2.0)  # cpu-batch: 4 + 2 b ms, loads in 200 ms
    assert rt.load(spec) >= 0.19
    assert 0.007 <= rt.run(spec, 2) < 0.05


# --- on a local Ray instance ------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="Ray is optional: pip install 'infaas-sim[ray]'")
    started = not ray.is_initialized()
    if started:
        # Two CPUs, no dashboard: what a CI machine has.
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def _executor(**kw: Any) -> RayExecutor:
    kw.setdefault("runner", "numpy")
    kw.setdefault("runner_params", {"size": 64, "layers": 3})
    kw.setdefault("resources", HALF_CPU)
    ex = make_executor("ray", **kw)
    assert isinstance(ex, RayExecutor)
    return ex


def _replay(
    h: Any, ex: RayExecutor, policy: Any, t: np.ndarray, variant: str, duration_s: float, **run_kw: Any
) -> RunResult:
    return run_simulation(
        Catalog(h.VARIANTS), h.workload([h.pinned_app(variant)], t), policy, ex,
        h.spec(instance_types=FAST_CPU, type_by_kind={CPU: "cpu"}, max_wait_s=0.002),
        RunSpec(duration_s=duration_s, seed=1, drain_s=10.0, **run_kw), env=WallClockEnvironment(),
    )  # fmt: skip


def _jsq_or_load(variant: str) -> Any:
    """Join-shortest-queue over the variant's replicas; with none, load one on a new worker."""

    def route(query: Any, candidates: Any, view: ClusterView) -> Any:
        insts = view.instances_of(view.catalog.index_of[variant])
        if not insts:
            return LoadThenServe(variant, None)
        return Serve(min(insts, key=lambda i: i.queued_inputs + i.inflight_inputs))

    return route


def _timed(h: Any, plan: dict[float, Callable[[ClusterView], list[Action] | None]], **kw: Any) -> Any:
    """A scripted policy whose planned actions fire at the first tick at or after their time
    (on a wall clock, ticks do not land on exact times); a step that returns None is not
    ready yet and is asked again at the next tick (the machine may be slow: no timing races)."""
    todo = sorted(plan.items())

    class Timed(h.Scripted):  # type: ignore[misc,name-defined]
        def autoscale(self, view: ClusterView) -> list[Action]:
            super().autoscale(view)
            out: list[Action] = []
            while todo and view.now >= todo[0][0]:
                actions = todo[0][1](view)
                if actions is None:
                    break
                todo.pop(0)
                out += actions
            return out

    kw.setdefault("tick_s", 0.1)
    return Timed(**kw)


def test_a_replay_through_ray_actors_accounts_for_every_query(h: Any, ray_local: Any, conserved: Any) -> None:
    # Two workers, each an actor holding a 0.5-CPU share; loads and batches are actor calls.
    t = h.poisson_times(40, 2.0, seed=3)
    ex = _executor()
    policy = _timed(h, {0.2: lambda v: [Load("cpu-batch")]}, route=_jsq_or_load("cpu-batch"))
    res = _replay(h, ex, policy, t, "cpu-batch", 2.0)
    conserved(res, len(t))
    q = res.queries
    assert (q["status"] == "served").all()
    assert res.summary["executor"] == "ray"
    # The first query loaded the variant on worker 0; the set-up at 0.2 s added worker 1.
    placed = ex.placements()
    assert set(placed) == {0, 1}
    pids = {p["pid"] for p in placed.values()}
    assert len(pids) == 2 and os.getpid() not in pids
    assert all(p["resources"] == {"CPU": 0.5} for p in placed.values())
    assert set(q["worker"]) == {0, 1}
    # Every batch ran inside an actor and reported its runtime seconds; the loop saw more
    # (the actor call's round trip), never less.
    assert len(ex.compute_s) == q.groupby(["worker", "completion"]).ngroups
    assert np.median(q["execution_ms"]) >= np.median(ex.compute_s) * 1000
    # The first query waited for the actor to start and load; the loop's clock recorded it.
    assert q["loading_ms"].iloc[0] > 0 and (q["latency_ms"] > 0).all()
    cols = ["queueing_ms", "loading_ms", "batching_ms", "execution_ms"]
    assert np.abs(q[cols].sum(axis=1) - q["latency_ms"]).max() < 1e-6
    # The run killed its actors when it ended.
    assert ex.live_actors() == {}


def test_a_replay_on_onnx_runtime_sessions_inside_the_actors(
    h: Any, ray_local: Any, built: Any, conserved: Any
) -> None:
    # The built-in family's profiled catalog: each actor opens the variant's ONNX file with
    # the same runner code as the onnxruntime executor, on its own process.
    catalog = Catalog.load(str(built.catalog))
    vid = "resnet-tiny-ort-fp32-1c"
    variant = catalog.variants[catalog.index_of[vid]]
    t = h.poisson_times(25, 1.5, seed=5)
    ex = _executor(runner="catalog", runner_params={"catalog": str(built.catalog)}, resources={"cpu": {"num_cpus": 1}})
    res = run_simulation(
        catalog, h.workload([h.pinned_app(vid)], t), h.Scripted(route=_jsq_or_load(vid), tick_s=None), ex,
        h.spec(instance_types=FAST_CPU, type_by_kind={CPU: "cpu"}), RunSpec(duration_s=1.5, seed=2, drain_s=10.0),
        env=WallClockEnvironment(),
    )  # fmt: skip
    conserved(res, len(t))
    q = res.queries
    assert (q["status"] == "served").all() and (q["variant"] == vid).all()
    assert ex.placements()[0]["pid"] != os.getpid()
    # The actor's session took about what the profiler measured (ms per batch, a few inputs),
    # not the numpy or sleep runners' times: within a factor of 10 either way on a busy CI box.
    per_batch_ms = np.median(ex.compute_s) * 1000
    assert variant.latency_ms(1) / 10 < per_batch_ms < variant.latency_ms(variant.max_batch) * 10


def test_preloaded_sessions_in_a_prestarted_actor_serve_set_up_instances(
    h: Any, ray_local: Any, built: Any, conserved: Any
) -> None:
    # The policy loads its replica at set-up (instantly, as in simulation): the actor started
    # and the session opened before the clock, so no query waits for either.
    catalog = Catalog.load(str(built.catalog))
    vid = "digits-linear-ort-fp32-1c"
    ex = _executor(
        runner="catalog", runner_params={"catalog": str(built.catalog)}, resources={"cpu": {"num_cpus": 1}},
        preload=[vid],
    )  # fmt: skip
    assert ex.actors_started == 1
    t = h.periodic_times(0.05, 1.0)
    res = run_simulation(
        catalog, h.workload([h.pinned_app(vid)], t), make_policy("static", replicas=1), ex,
        h.spec(instance_types=FAST_CPU, type_by_kind={CPU: "cpu"}), RunSpec(duration_s=1.0, seed=2, drain_s=10.0),
        env=WallClockEnvironment(),
    )  # fmt: skip
    conserved(res, len(t))
    assert (res.queries["status"] == "served").all()
    assert ex.actors_started == 1  # worker 0 adopted the prestarted actor
    assert ex.actor_stats[0] == {"batches": len(ex.compute_s), "opened": 0, "adopted": 1}


def test_preload_needs_the_catalog_runner(ray_local: Any) -> None:
    with pytest.raises(ConfigError, match="preload needs runner catalog"):
        make_executor("ray", runner="numpy", preload=["cpu-batch"])


def test_a_killed_actor_fails_its_queries_with_the_fault_and_is_replaced(
    h: Any, ray_local: Any, conserved: Any
) -> None:
    # cpu-d10 (10 ms, batch 1) sleeps 5x its profile in the actor: 50 ms per query at 30
    # queries/s on one replica keeps a query in flight almost always. At the first tick after
    # 0.8 s with one in flight, the test kills worker 0's actor; the policy keeps one replica.
    t = h.periodic_times(1 / 30, 3.0)
    ex = _executor(runner="profiled", runner_params={"scale": 5.0})
    killed: list[tuple[float, int]] = []
    variant = "cpu-d10"

    class Replacing(h.Scripted):  # type: ignore[misc,name-defined]
        def autoscale(self, view: ClusterView) -> list[Action]:
            insts = view.instances_of(view.catalog.index_of[variant])
            if not killed and view.now > 0.8 and any(i.inflight_inputs for i in insts):
                victim = insts[0].worker_id
                ray_local.kill(ex.actor_of(victim))
                killed.append((view.now, victim))
            return [] if insts else [Load(variant)]

    res = _replay(h, ex, Replacing(route=_jsq_or_load(variant), tick_s=0.05), t, variant, 3.0)
    conserved(res, len(t))
    assert killed and killed[0][1] == 0
    kill_t = killed[0][0]
    q = res.queries
    failed = q[q["status"] == "failed"]
    # The queries queued on or running in the dead actor fail with the fault recorded...
    assert len(failed) >= 1
    assert failed["reason"].str.contains("worker 0 crashed: Ray actor died").all()
    assert failed["reason"].str.contains("ActorDiedError").all()
    assert (failed["arrival"] <= failed["completion"]).all() and (failed["completion"] >= kill_t).all()
    assert any("crash worker 0" in a for _, a in res.actions)
    # ... and the cluster model replaces the worker: a new worker with a new actor serves the rest.
    served_after = q[(q["status"] == "served") & (q["arrival"] > failed["completion"].max())]
    assert len(served_after) >= 5
    assert (served_after["worker"] != 0).all()
    assert ex.actors_started >= 2
    assert (q["status"] != "rejected").sum() >= len(t) - 5  # nothing lost, little turned away
    rejected = q[q["status"] == "rejected"]
    assert rejected["reason"].map(lambda r: len(r) > 0).all()


def test_an_unplaceable_worker_is_a_recorded_fault(h: Any, ray_local: Any, conserved: Any) -> None:
    # A worker asking for 64 CPUs on a 2-CPU Ray instance never gets an actor: after the
    # placement timeout its worker crashes and its queued queries fail with that reason.
    t = h.periodic_times(0.1, 1.0)
    ex = _executor(resources={"cpu": {"num_cpus": 64}}, placement_timeout_s=0.5)
    policy = h.Scripted(route=_jsq_or_load("cpu-batch"), tick_s=None)
    res = _replay(h, ex, policy, t, "cpu-batch", 1.0)
    conserved(res, len(t))
    q = res.queries
    assert (q["status"] != "served").all()
    failed = q[q["status"] == "failed"]
    assert len(failed) >= 4
    who = failed["reason"].str.extract(r"^worker (\d) crashed: Ray could not place worker (\d)'s actor")
    assert who.notna().all().all() and (who[0] == who[1]).all()
    assert failed["reason"].str.contains("'CPU': 64.0").all()


def test_an_injected_crash_kills_the_actor_and_a_released_worker_frees_its_actor(
    h: Any, ray_local: Any, conserved: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three workers (the first query loads worker 0, the policy adds 1 and 2): worker 1
    # crashes by the run's fault injection at 1 s, worker 2 is released by the policy once
    # its replica is up; their actors are killed then, worker 0's only when the run ends.
    t = h.periodic_times(0.02, 2.5)
    # What the executor asks the Ray autoscaler for (on a cloud cluster it adds nodes for it).
    asked: list[list[dict[str, float]]] = []
    monkeypatch.setattr("ray.autoscaler.sdk.request_resources", lambda bundles: asked.append(list(bundles)))
    # Actors placed before the clock (no start-up race); the autoscaler follows live workers.
    ex = _executor(prestart={"cpu": 3}, request_resources=True)
    assert ex.actors_started == 3

    def release(view: ClusterView) -> list[Action] | None:
        up = any(i.worker_id == 2 and i.state == "ready" for i in view.all_instances())
        return [RemoveWorker(2)] if up else None

    plan = {0.1: lambda v: [Load("cpu-batch"), Load("cpu-batch")], 1.2: release}
    policy = _timed(h, plan, route=_jsq_or_load("cpu-batch"))
    res = _replay(h, ex, policy, t, "cpu-batch", 2.5, faults=(Fault(at_s=1.0, kind="crash", worker=1),))
    conserved(res, len(t))
    released = [at for at, a in res.actions if a == "remove worker 2"]
    assert released, "the replica on worker 2 never came up"
    kills = {wid: (at, why) for at, wid, why in ex.kills}
    assert kills[1][1] == "worker crashed" and 1.0 <= kills[1][0] < released[0]
    assert kills[2][1] == "worker released" and released[0] <= kills[2][0] <= kills[0][0]
    assert kills[0][1] == "end of run" and kills[0][0] >= 2.5
    assert ex.live_actors() == {}
    # One bundle per live worker: 1, 2, 3 as workers come, 2 after the crash, 1 after the
    # release, none at the end.
    assert [len(b) for b in asked] == [1, 2, 3, 2, 1, 0, 0]
    assert asked[2] == [{"CPU": 0.5}] * 3
    q = res.queries
    failed = q[q["status"] == "failed"]
    assert failed["reason"].str.contains("worker 1 crashed: injected crash").all()
    assert not ((q["worker"] == 1) & (q["completion"] > 1.0)).any()


def test_ray_needs_a_wall_clock(h: Any, ray_local: Any) -> None:
    ex = _executor()
    with pytest.raises(ConfigError, match="wall-clock"):
        ex.bind(Clock(simpy.Environment()), 0)


# --- sweeps on Ray ----------------------------------------------------------------------------
def test_a_two_job_sweep_runs_on_the_ray_launcher(tmp_path: Path, ray_local: Any) -> None:
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="hydra-ray-launcher is not installed")
    # The app's config with launcher settings only in the launcher options (until the shared
    # config.yaml drops its joblib-only hydra.launcher.n_jobs, the copy does it).
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "experiments" / "conf", conf)
    top = (conf / "config.yaml").read_text()
    top = top.replace("  launcher:\n    n_jobs: 2\n", "").replace(
        "hydra/launcher: joblib\n", "hydra/launcher: joblib_local\n"
    )
    (conf / "config.yaml").write_text(top)
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", "-m", f"--config-path={conf}", "hydra/launcher=ray_local",
         # Join the tests' Ray instance (as jobs join a cluster) instead of starting another.
         f"hydra.launcher.ray.init.address={ray_local.get_runtime_context().gcs_address}",
         "+hydra.launcher.ray.init.object_store_memory=null", f"hydra.sweep.dir={tmp_path}/sweep", "trace=poisson",
         "trace.qps=20", "run.duration_s=5", "run.progress=false", "outputs.figures=false", "workload=single",
         "policy=static,hpa"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Ray Launcher is launching 2 jobs" in proc.stdout + proc.stderr
    table = pd.read_csv(tmp_path / "sweep" / "sweep_summary.csv")
    assert sorted(table["policy"]) == ["hpa", "static"]
    assert (table["queries"] > 50).all() and (table["failed"] == 0).all()
    # Each job ran as a Ray task, in a process of its own, not in the launcher's.
    pids = set(re.findall(r"\(_run_job pid=(\d+)\)", proc.stdout + proc.stderr))
    assert len(pids) == 2
