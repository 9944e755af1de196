"""The cluster model against queueing theory.

One fixed replica with a deterministic service time under Poisson arrivals is an M/D/1
queue: its mean wait must match Pollaczek-Khinchine, and each query's wait must follow the
Lindley recursion exactly. A batching replica forms the batches its batcher's limits
predict. c replicas at saturation serve c times one replica's full-batch throughput, and
under Poisson load wait about as long as an M/D/c queue (Cosmetatos' approximation).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from infaas_sim.policy import make_policy
from infaas_sim.simulation import RunResult

D_S = 0.010  # cpu-d10's deterministic batch-1 latency
NO_ADMISSION = 1e6  # max_queue_s so large that admission control never rejects


def md1_wq_ms(rho: float, d_s: float) -> float:
    """Pollaczek-Khinchine mean wait of M/D/1."""
    return rho * d_s / (2 * (1 - rho)) * 1000


def erlang_c(c: int, a: float) -> float:
    """Probability of waiting in M/M/c with offered load a = lambda / mu (a < c)."""
    head = sum(a**k / math.factorial(k) for k in range(c))
    tail = a**c / math.factorial(c) / (1 - a / c)
    return tail / (head + tail)


def mdc_wq_ms_cosmetatos(c: int, rho: float, d_s: float) -> float:
    """Cosmetatos' M/D/c mean wait: a correction to half the M/M/c (Erlang-C) wait."""
    lam, mu = c * rho / d_s, 1 / d_s
    mmc = erlang_c(c, lam / mu) / (c * mu - lam)
    corr = 1 + (1 - rho) * (c - 1) * (math.sqrt(4 + 5 * c) - 2) / (16 * rho * c)
    return 0.5 * corr * mmc * 1000


def test_queueing_formulas_on_known_values() -> None:
    # The references themselves: M/D/1 at rho 0.8 with D = 10 ms waits 20 ms; Cosmetatos
    # with c = 1 reduces to half the M/M/1 wait, i.e. to Pollaczek-Khinchine.
    assert md1_wq_ms(0.8, 0.010) == pytest.approx(20.0)
    assert md1_wq_ms(0.5, 0.010) == pytest.approx(5.0)
    assert mdc_wq_ms_cosmetatos(1, 0.8, 0.010) == pytest.approx(20.0)
    assert erlang_c(2, 1.6) == pytest.approx(1.6**2 / 2 / 0.2 / (1 + 1.6 + 1.6**2 / 2 / 0.2))


# --- M/D/1 -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=[(0.5, 50_000), (0.8, 240_000)], ids=["rho0.5", "rho0.8"])
def md1(request: pytest.FixtureRequest, h: Any) -> tuple[float, np.ndarray, RunResult]:
    rho, n = request.param
    lam = rho / D_S
    duration = n / lam
    t = h.poisson_times(lam, duration, seed=0)
    res = h.simulate(
        h.VARIANTS,
        h.workload([h.pinned_app("cpu-d10")], t),
        make_policy("static", replicas=1),
        duration,
        spec=h.spec(max_queue_s=NO_ADMISSION),
        seed=0,
    )
    return rho, t, res


def test_md1_mean_wait_matches_pollaczek_khinchine(md1: tuple[float, np.ndarray, RunResult], conserved: Any) -> None:
    rho, t, res = md1
    q = res.queries
    conserved(res, len(t))
    assert (q["status"] == "served").all()
    # Max batch 1 and no batcher wait: the whole wait is queueing; execution is exactly D.
    assert (q["batching_ms"] == 0).all() and (q["loading_ms"] == 0).all()
    assert np.allclose(q["execution_ms"], D_S * 1000)
    assert (q["exec_batch"] == 1).all()
    theory = md1_wq_ms(rho, D_S)
    sim = float(q["queueing_ms"].mean())
    print(f"M/D/1 rho={rho}: Wq theory {theory:.3f} ms, simulated {sim:.3f} ms over {len(q)} queries")
    assert sim == pytest.approx(theory, rel=0.05)
    # Utilisation as recorded matches rho (one replica holds 2 of the worker's 8 cores).
    assert res.summary["utilisation"]["cpu"] == pytest.approx(rho * 2 / 8, rel=0.03)


def test_md1_each_wait_follows_the_lindley_recursion(md1: tuple[float, np.ndarray, RunResult]) -> None:
    # FIFO single server: W[0] = 0, W[n+1] = max(0, W[n] + D - (t[n+1] - t[n])), exactly.
    _, t, res = md1
    gaps = np.diff(t).tolist()
    w = [0.0]
    for g in gaps:
        w.append(max(0.0, w[-1] + D_S - g))
    expected = np.array(w) * 1000
    got = res.queries.sort_values("qid")["queueing_ms"].to_numpy()
    assert np.abs(got - expected).max() < 1e-6
    latency = res.queries.sort_values("qid")["latency_ms"].to_numpy()
    assert np.abs(latency - (expected + D_S * 1000)).max() < 1e-6


# --- batching ----------------------------------------------------------------------------------------
def _batch_run(h: Any, period_s: float, duration_s: float, max_wait_s: float) -> RunResult:
    t = h.periodic_times(period_s, duration_s)
    return h.simulate(
        h.VARIANTS,
        h.workload([h.pinned_app("cpu-batch")], t),
        make_policy("static", replicas=1),
        duration_s,
        spec=h.spec(max_wait_s=max_wait_s),
    )


# Arrivals every a = 5 ms; cpu-batch runs at most B = 8 in latency(8) = 4 + 2*8 = 20 ms, well
# inside the 40 ms a batch takes to fill. With a 1 s batcher wait every batch is full: the
# i-th query of a batch waits (B - 1 - i) a for the batch to fill, a mean of (B - 1) a / 2.
A_S, B = 0.005, 8


def test_long_batcher_wait_forms_full_batches(h: Any, conserved: Any) -> None:
    res = _batch_run(h, A_S, 10.0, max_wait_s=1.0)
    q = res.queries
    conserved(res, 2000)
    assert len(q) % B == 0
    assert (q["status"] == "served").all()
    assert (q["exec_batch"] == B).all()
    assert np.allclose(q["execution_ms"], 4 + 2 * B)
    pos = q["qid"].to_numpy() % B
    wait = (q["queueing_ms"] + q["batching_ms"]).to_numpy()
    assert np.allclose(wait, (B - 1 - pos) * A_S * 1000, atol=1e-6)
    assert wait.mean() == pytest.approx((B - 1) * A_S / 2 * 1000, rel=1e-6)
    assert np.allclose(q["latency_ms"], wait + 20.0, atol=1e-6)
    assert (q["loading_ms"] == 0).all()
    # Completions come once per batch, all of a batch together, every B * a.
    sizes = q.groupby("completion").size()
    assert sizes.eq(B).all()
    assert np.allclose(np.diff(sizes.index.to_numpy()), B * A_S)


def test_full_batch_wait_is_recorded_as_batching_not_queueing(h: Any) -> None:
    # The replica is idle 20 of every 40 ms: no query ever waits for it, only for its batch
    # to fill. The recorded batching wait should be (B - 1 - i) a, queueing zero.
    q = _batch_run(h, A_S, 2.0, max_wait_s=1.0).queries
    pos = q["qid"].to_numpy() % B
    assert np.allclose(q["queueing_ms"], 0, atol=1e-6)
    assert np.allclose(q["batching_ms"], (B - 1 - pos) * A_S * 1000, atol=1e-6)
    assert q["batching_ms"].mean() == pytest.approx((B - 1) * A_S / 2 * 1000, rel=1e-6)


def test_batcher_wait_bounds_each_batch_from_its_first_query_when_the_replica_is_idle(h: Any) -> None:
    # Max wait 12 ms, arrivals every 40 ms: each query is alone; the batcher holds it the
    # full 12 ms (nothing else comes), then runs it (6 ms).
    q = _batch_run(h, 0.040, 2.0, max_wait_s=0.012).queries
    assert (q["exec_batch"] == 1).all()
    assert np.allclose(q["batching_ms"], 12.0)
    assert np.allclose(q["queueing_ms"], 0.0, atol=1e-9)
    assert np.allclose(q["latency_ms"], 18.0)


def test_batcher_dispatches_a_partial_batch_when_its_oldest_query_has_waited_max_wait(h: Any) -> None:
    # The cluster's contract: "an idle instance dispatches a batch when it is full or its
    # oldest query has waited max_wait_s". Arrivals every 5 ms, max wait 12 ms: each batch
    # closes 12 ms after its first query, holding the queries at +0, +5 and +10 ms, and runs
    # latency(3) = 10 ms, so the replica is free before the next batch is due.
    wait = 0.012
    q = _batch_run(h, A_S, 3.0, max_wait_s=wait).queries
    assert (q["status"] == "served").all()
    assert (q["exec_batch"] == 3).all()
    assert np.allclose(q["execution_ms"], 10.0)
    pos = q["qid"].to_numpy() % 3
    assert np.allclose(q["queueing_ms"] + q["batching_ms"], (wait - pos * A_S) * 1000, atol=1e-6)
    assert ((q["queueing_ms"] + q["batching_ms"]) <= wait * 1000 + 1e-6).all()


def test_without_batcher_wait_an_idle_replica_runs_each_query_at_once(h: Any) -> None:
    # max_wait_s = 0 (the default): arrivals 20 ms apart each run alone, immediately.
    t = h.periodic_times(0.020, 2.0)
    res = h.simulate(h.VARIANTS, h.workload([h.pinned_app("cpu-batch")], t), make_policy("static", replicas=1), 2.0)
    q = res.queries
    assert (q["exec_batch"] == 1).all()
    assert np.allclose(q["latency_ms"], 6.0)
    assert (q["batching_ms"] == 0).all() and (q["queueing_ms"] == 0).all()


# --- replicas -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("c", [1, 3])
def test_saturated_replicas_serve_c_full_batches_per_batch_latency(c: int, h: Any, conserved: Any) -> None:
    # cpu-batch: B = 8 inputs per latency(8) = 20 ms = 400 inputs/s per replica. Offer 2.5x
    # the capacity of c replicas; admission control turns the excess away.
    B, lat = 8, 20.0
    capacity = c * B * 1000 / lat
    duration = 12.0
    t = h.poisson_times(2.5 * capacity, duration, seed=c)
    res = h.simulate(
        h.VARIANTS,
        h.workload([h.pinned_app("cpu-batch")], t),
        make_policy("static", replicas=c),
        duration,
        spec=h.spec(max_queue_s=0.5),
    )
    q = res.queries
    conserved(res, len(t))
    served = q[q["status"] == "served"]
    window = served[(served["completion"] >= 2.0) & (served["completion"] < duration)]
    throughput = len(window) / (duration - 2.0)
    print(f"c={c}: saturated throughput {throughput:.1f}/s, theory {capacity:.1f}/s")
    assert throughput == pytest.approx(capacity, rel=0.02)
    assert (window["exec_batch"] == B).all()
    assert window["instance"].nunique() == c
    rejected = q[q["status"] == "rejected"]
    assert len(rejected) > 0.5 * len(q)
    assert rejected["reason"].str.contains("queue").all()


@pytest.fixture(scope="module")
def mdc_run(h: Any) -> RunResult:
    c, rho = 2, 0.8
    lam = c * rho / D_S
    duration = 150_000 / lam
    t = h.poisson_times(lam, duration, seed=5)
    return h.simulate(
        h.VARIANTS,
        h.workload([h.pinned_app("cpu-d10")], t),
        make_policy("static", replicas=c),
        duration,
        spec=h.spec(max_queue_s=NO_ADMISSION),
        seed=5,
    )


def test_two_replicas_wait_as_md2_predicts(mdc_run: RunResult, conserved: Any) -> None:
    # Two replicas, each at utilisation 0.8. The static policy joins the shortest of two
    # per-replica queues, which can only wait longer than M/D/2's single shared queue and is
    # known to stay close to it: the simulated wait must lie within [-3 %, +20 %] of
    # Cosmetatos' M/D/2 value, and far below M/D/1 at the same utilisation.
    q = mdc_run.queries
    conserved(mdc_run, len(q))
    assert (q["status"] == "served").all()
    assert q["instance"].nunique() == 2
    sim = float(q["queueing_ms"].mean())
    cosmetatos = mdc_wq_ms_cosmetatos(2, 0.8, D_S)
    half_erlang = 0.5 * erlang_c(2, 1.6) / (2 / D_S - 1.6 / D_S) * 1000
    md1_same_rho = md1_wq_ms(0.8, D_S)
    print(
        f"2 replicas at rho=0.8: Wq simulated {sim:.3f} ms, Cosmetatos M/D/2 {cosmetatos:.3f} ms, "
        f"half Erlang-C {half_erlang:.3f} ms, M/D/1 {md1_same_rho:.3f} ms"
    )
    assert 0.97 * cosmetatos <= sim <= 1.20 * cosmetatos
    assert sim < 0.6 * md1_same_rho
    # The load splits evenly between the replicas.
    shares = q["instance"].value_counts(normalize=True)
    assert shares.min() > 0.45


def test_queueing_time_is_never_negative_and_latency_is_at_least_execution(mdc_run: RunResult) -> None:
    q = mdc_run.queries
    cols = ["queueing_ms", "loading_ms", "batching_ms", "execution_ms"]
    assert (q[cols] >= 0).all().all()
    assert (q["latency_ms"] >= q["execution_ms"] - 1e-9).all()
