"""The clock seam: the same run loop on wall-clock time, with batches that really run in a
thread pool and post their completion back to the environment."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import simpy

from infaas_sim.catalog import Catalog
from infaas_sim.clock import Clock, Completion, WallClockEnvironment
from infaas_sim.executor import Executor, make_executor
from infaas_sim.policy import AddWorker, LoadThenServe, Serve, make_policy
from infaas_sim.simulation import RunResult, RunSpec, run_simulation


class ThreadPoolMatmulExecutor(Executor):
    """Runs each batch as numpy matrix products in a thread pool; loading sleeps."""

    name = "test-threadpool"
    realtime = True

    def __init__(self, size: int = 192, load_s: float = 0.05) -> None:
        self.size = size
        self.load_s = load_s
        self.batches = 0
        self.loads = 0
        self.threads: set[str] = set()

    def bind(self, clock: Clock, seed: int) -> None:
        super().bind(clock, seed)
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-exec")
        self.weights = np.random.default_rng(seed).standard_normal((self.size, self.size)) / np.sqrt(self.size)

    def _complete(self, event: Completion) -> Any:
        def done(fut: Future[Any]) -> None:
            exc = fut.exception()
            if exc is None:
                self.clock.post(event.succeed, fut.result())
            else:
                self.clock.post(event.fail, exc)

        return done

    def load(self, instance: Any) -> Completion:
        event = self.clock.pending()
        self.loads += 1
        self.pool.submit(time.sleep, self.load_s).add_done_callback(self._complete(event))
        return event

    def run(self, instance: Any, inputs: int, queries: Sequence[Any]) -> Completion:
        event = self.clock.pending()
        self.batches += 1

        def work() -> float:
            self.threads.add(threading.current_thread().name)
            x = np.ones((self.size, inputs))
            for _ in range(4):
                x = np.tanh(self.weights @ x)
            return float(x.sum())

        self.pool.submit(work).add_done_callback(self._complete(event))
        return event

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _route(query: Any, candidates: Any, view: Any) -> Any:
    vi = view.catalog.index_of["cpu-batch"]
    insts = view.instances_of(vi)
    return Serve(insts[0]) if insts else LoadThenServe("cpu-batch", 0)


@dataclass
class WallRun:
    trace: np.ndarray
    executor: ThreadPoolMatmulExecutor
    env: WallClockEnvironment
    wall_s: float
    result: RunResult


@pytest.fixture(scope="module")
def wall_run(h: Any) -> WallRun:
    t = h.poisson_times(40, 2.5, seed=3)  # about 100 queries over 2.5 s
    env = WallClockEnvironment()
    ex = ThreadPoolMatmulExecutor()
    policy = h.Scripted(setup=[AddWorker("cpu")], route=_route, tick_s=0.5)
    t0 = time.perf_counter()
    res = run_simulation(
        Catalog(h.VARIANTS), h.workload([h.pinned_app("cpu-batch")], t), policy, ex, h.spec(max_wait_s=0.002),
        RunSpec(duration_s=2.5, seed=1), env=env,
    )  # fmt: skip
    return WallRun(t, ex, env, time.perf_counter() - t0, res)


def test_every_query_is_accounted_on_the_wall_clock(wall_run: WallRun, conserved: Any) -> None:
    t, ex, res = wall_run.trace, wall_run.executor, wall_run.result
    assert 70 <= len(t) <= 130
    conserved(res, len(t))
    q = res.queries
    assert (q["status"] == "served").all()
    assert ex.loads == 1 and ex.batches >= 1
    assert ex.threads and all(n.startswith("test-exec") for n in ex.threads)
    assert res.summary["executor"] == "test-threadpool"


def test_wall_clock_latencies_are_positive_and_plausible(wall_run: WallRun) -> None:
    t, res = wall_run.trace, wall_run.result
    q = res.queries
    assert (q["latency_ms"] > 0).all() and (q["execution_ms"] > 0).all()
    # Arrivals are stamped when they happen: at most a few ms after their trace time.
    assert np.all(q["arrival"].to_numpy() - t >= -1e-9)
    assert np.max(q["arrival"].to_numpy() - t) < 0.05
    # The first query waits for the 50 ms load; afterwards a batch of ~1-3 small matmuls
    # (about 1 ms each) takes well under 100 ms, even on a busy 2-core machine.
    first = q.iloc[0]
    assert first["loading_ms"] >= 45
    late = q[q["arrival"] > 0.5]
    assert late["latency_ms"].median() < 100
    assert late["latency_ms"].max() < 1000
    cols = ["queueing_ms", "loading_ms", "batching_ms", "execution_ms"]
    assert (q[cols] >= 0).all().all()
    assert np.abs(q[cols].sum(axis=1) - q["latency_ms"]).max() < 1e-6


def test_the_run_takes_about_the_trace_length(wall_run: WallRun) -> None:
    env, wall, res = wall_run.env, wall_run.wall_s, wall_run.result
    assert 2.5 <= wall < 5.0
    assert res.summary["wall_s"] == pytest.approx(wall, abs=0.2)
    assert env.now == pytest.approx(res.queries["completion"].max(), abs=0.6)
    assert env.max_lag_s < 0.5


def test_sim_executor_on_a_sped_up_wall_clock_matches_virtual_time(h: Any) -> None:
    # The simulated executor on a wall clock running 4x: 2 s of trace in about 0.5 s, and the
    # same latencies as on virtual time, give or take the loop's lag.
    t = h.periodic_times(0.05, 2.0)
    wl = h.workload([h.pinned_app("cpu-d10")], t)

    def go(env: simpy.Environment | None) -> RunResult:
        return run_simulation(
            Catalog(h.VARIANTS), wl, make_policy("static", replicas=1), make_executor("sim"), h.spec(),
            RunSpec(duration_s=2.0), env=env,
        )  # fmt: skip

    t0 = time.perf_counter()
    real = go(WallClockEnvironment(factor=4.0))
    wall = time.perf_counter() - t0
    virtual = go(None)
    assert 0.45 <= wall < 2.5
    assert len(real.queries) == len(virtual.queries) == len(t)
    assert (real.queries["status"] == "served").all()
    diff = np.abs(real.queries["latency_ms"].to_numpy() - virtual.queries["latency_ms"].to_numpy())
    assert np.median(diff) < 5.0 and diff.max() < 100.0
    assert np.allclose(virtual.queries["latency_ms"], 10.0)


def test_wall_clock_factor_must_be_positive() -> None:
    with pytest.raises(ValueError, match="factor"):
        WallClockEnvironment(factor=0)


def test_posted_callbacks_run_on_the_loop_thread_at_wall_time() -> None:
    env = WallClockEnvironment()
    ran: list[tuple[str, float]] = []
    ev = env.event()
    ev.callbacks.append(lambda e: ran.append((threading.current_thread().name, env.now)))

    def later() -> None:
        time.sleep(0.1)
        env.post(ev.succeed)

    threading.Thread(target=later, name="poster").start()
    env.timeout(1.0)  # something scheduled later than the post
    env.run(until=ev)
    assert ran and ran[0][0] == threading.current_thread().name
    assert 0.09 <= ran[0][1] < 0.5


def test_the_clock_gives_executors_time_without_simpy() -> None:
    env = simpy.Environment()
    clock = Clock(env)
    assert clock.now == 0.0 and not clock.realtime
    done = clock.after(2.5)
    pending = clock.pending()
    calls: list[float] = []
    clock.call_later(1.0, lambda: calls.append(clock.now))
    env.run(until=3.0)
    assert calls == [1.0] and done.processed and not pending.triggered  # type: ignore[attr-defined]
    pending.succeed(7)
    env.run(until=4.0)
    assert pending.value == 7  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="wall-clock time"):
        clock.post(print)  # only runtime threads on wall-clock time post
    assert Clock(WallClockEnvironment()).realtime
