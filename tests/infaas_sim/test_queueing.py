"""The cluster model against queueing theory.

One fixed replica with a deterministic service time under Poisson arrivals is an M/D/1
queue: its mean wait must match Pollaczek-Khinchine, and each query's wait must follow the
Lindley recursion exactly. c replicas routed by least backlog (the default dispatch) are one
FCFS M/D/c queue: each query's wait must follow the Kiefer-Wolfowitz recursion of c servers
exactly, and the mean wait must match the exact M/D/c value (Crommelin's formula) for c = 1,
2, 4, 8 at utilisation 0.5, 0.8 and 0.9. A batching replica forms the batches its batcher's
limits predict, and c saturated replicas serve c times one replica's full-batch throughput.

The number of arrivals per M/D/c cell is sized so that the simulated mean's standard error
(batch means) is about 1.7% of the exact value, a third of the 5% tolerance; each cell
asserts its standard error is under 2%, so an undersized cell fails rather than passes by
luck. High utilisation and many servers need the most arrivals (long busy periods; rare waits).
"""

from __future__ import annotations

import heapq
from typing import Any

import numpy as np
import pytest
from scipy.stats import poisson

from infaas_sim.policy import make_policy
from infaas_sim.simulation import RunResult

D_S = 0.010  # cpu-d10's deterministic batch-1 latency
NO_ADMISSION = 1e6  # max_queue_s so large that admission control never rejects
TOLERANCE = 0.05  # simulated mean wait against the exact value, relative
MAX_SE = 0.02  # the estimate's standard error must be under this (relative)


def md1_wq_ms(rho: float, d_s: float) -> float:
    """Pollaczek-Khinchine mean wait of M/D/1."""
    return rho * d_s / (2 * (1 - rho)) * 1000


def mdc_wq(c: int, rho: float, d: float) -> float:
    """Exact mean wait of M/D/c (Crommelin 1932), in the unit of ``d``:
    Wq = D sum_{n>=1} [P(K_n >= nc) - (c/a) P(K_n >= nc + 1)], a = c rho, K_n ~ Poisson(n a);
    summed until a term is below 1e-15 (thousands of terms at c = 1, rho = 0.9)."""
    a = c * rho
    total = 0.0
    first = 1
    while True:
        n = np.arange(first, first + 1000)
        terms = poisson.sf(n * c - 1, n * a) - (c / a) * poisson.sf(n * c, n * a)
        small = np.flatnonzero(np.abs(terms) < 1e-15)
        if small.size:
            return d * (total + float(terms[: small[0]].sum()))
        total += float(terms.sum())
        first += 1000


def mdc_wq_markov_chain(c: int, rho: float, d: float, states: int = 600) -> float:
    """M/D/c mean wait from the number in system every D: N' = max(N - c, 0) + Poisson(a).
    Its stationary distribution (truncated at ``states``, the tail lumped into the last) gives
    Wq = E[(N - c)+] / lambda (Little's law on the queue)."""
    a = c * rho
    lam = a / d
    k = np.arange(states)
    p = np.zeros((states, states))
    for i in range(states):
        base = max(i - c, 0)
        p[i, base:] = poisson.pmf(k[: states - base], a)
        p[i, -1] += poisson.sf(states - base - 1, a)
    # pi (P - I) = 0 with sum(pi) = 1: replace one balance equation by the normalisation.
    lhs = (p - np.eye(states)).T
    lhs[-1, :] = 1.0
    rhs = np.zeros(states)
    rhs[-1] = 1.0
    pi = np.linalg.solve(lhs, rhs)
    return float(np.maximum(k - c, 0) @ pi) / lam


def fcfs_waits(t: np.ndarray, c: int, d: float) -> np.ndarray:
    """Waits of one FCFS queue of c servers with service time d (Kiefer-Wolfowitz): each
    arrival starts when the earliest-free server frees."""
    free = [0.0] * c
    w = np.empty(len(t))
    for i, x in enumerate(t.tolist()):
        start = max(free[0], x)
        w[i] = start - x
        heapq.heapreplace(free, start + d)
    return w


def batch_means_se(x: np.ndarray, batches: int = 50) -> float:
    """Standard error of the mean of an autocorrelated series by batch means."""
    m = len(x) // batches * batches
    means = x[:m].reshape(batches, -1).mean(axis=1)
    return float(means.std(ddof=1) / np.sqrt(batches))


def test_queueing_formulas_on_known_values() -> None:
    # M/D/1 at rho 0.8 with D = 10 ms waits 20 ms.
    assert md1_wq_ms(0.8, 0.010) == pytest.approx(20.0)
    assert md1_wq_ms(0.5, 0.010) == pytest.approx(5.0)
    # Crommelin at c = 1 is Pollaczek-Khinchine ...
    for rho in (0.5, 0.8, 0.9):
        assert mdc_wq(1, rho, 1.0) == pytest.approx(rho / (2 * (1 - rho)), rel=1e-12)
    # ... and for every c it agrees with the embedded Markov chain, an independent route.
    for c in (1, 2, 4, 8):
        for rho in (0.5, 0.8, 0.9):
            assert mdc_wq(c, rho, 1.0) == pytest.approx(mdc_wq_markov_chain(c, rho, 1.0), rel=1e-9)
    # Values computed independently (D = 1).
    assert mdc_wq(2, 0.8, 1.0) == pytest.approx(0.90328, abs=1e-5)
    assert mdc_wq(4, 0.8, 1.0) == pytest.approx(0.38609, abs=1e-5)
    assert mdc_wq(8, 0.9, 1.0) == pytest.approx(0.44997, abs=1e-5)
    # More servers at the same utilisation wait less (pooling).
    assert mdc_wq(8, 0.8, 1.0) < mdc_wq(4, 0.8, 1.0) < mdc_wq(2, 0.8, 1.0) < mdc_wq(1, 0.8, 1.0)


def _poisson_run(h: Any, c: int, rho: float, n: int, seed: int) -> tuple[np.ndarray, RunResult]:
    """About ``n`` Poisson arrivals at utilisation ``rho`` on ``c`` static replicas of cpu-d10."""
    lam = c * rho / D_S
    duration = n / lam
    t = h.poisson_times(lam, duration, seed=seed)
    res = h.simulate(
        h.VARIANTS,
        h.workload([h.pinned_app("cpu-d10")], t),
        make_policy("static", replicas=c),
        duration,
        spec=h.spec(max_queue_s=NO_ADMISSION),
        seed=seed,
    )
    return t, res


def _check_mean_wait(q: Any, c: int, rho: float) -> None:
    """The simulated mean wait is within TOLERANCE of Crommelin's exact value, with a
    standard error small enough for that to mean something."""
    waits = q.sort_values("qid")["queueing_ms"].to_numpy()
    exact = mdc_wq(c, rho, D_S) * 1000
    sim = float(waits.mean())
    se = batch_means_se(waits)
    print(f"M/D/{c} rho={rho}: Wq exact {exact:.4f} ms, simulated {sim:.4f} ms (se {se / exact:.2%}), {len(q)} queries")
    assert se < MAX_SE * exact
    assert sim == pytest.approx(exact, rel=TOLERANCE)


# --- M/D/1 -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=[(0.5, 70_000), (0.8, 240_000), (0.9, 900_000)], ids=lambda p: f"rho{p[0]}")
def md1(request: pytest.FixtureRequest, h: Any) -> tuple[float, np.ndarray, RunResult]:
    rho, n = request.param
    t, res = _poisson_run(h, 1, rho, n, seed=0)
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
    assert mdc_wq(1, rho, D_S) * 1000 == pytest.approx(md1_wq_ms(rho, D_S), rel=1e-9)
    _check_mean_wait(q, 1, rho)
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


# --- M/D/c ------------------------------------------------------------------------------------------
# Arrivals per cell: enough for a standard error of about 1.7% (see the module docstring).
MDC_CELLS = {
    (2, 0.5): 100_000,
    (2, 0.8): 250_000,
    (2, 0.9): 800_000,
    (4, 0.5): 210_000,
    (4, 0.8): 420_000,
    (4, 0.9): 1_100_000,
    (8, 0.5): 820_000,
    (8, 0.8): 520_000,
    (8, 0.9): 1_400_000,
}


@pytest.fixture(scope="module", params=sorted(MDC_CELLS), ids=lambda p: f"c{p[0]}-rho{p[1]}")
def mdc(request: pytest.FixtureRequest, h: Any) -> tuple[int, float, np.ndarray, RunResult]:
    c, rho = request.param
    t, res = _poisson_run(h, c, rho, MDC_CELLS[(c, rho)], seed=1000 * c + round(100 * rho))
    return c, rho, t, res


def test_mdc_mean_wait_matches_the_exact_value(mdc: tuple[int, float, np.ndarray, RunResult], conserved: Any) -> None:
    c, rho, t, res = mdc
    q = res.queries
    conserved(res, len(t))
    assert (q["status"] == "served").all()
    assert q["instance"].nunique() == c
    _check_mean_wait(q, c, rho)


def test_mdc_each_wait_is_that_of_one_fcfs_queue(mdc: tuple[int, float, np.ndarray, RunResult]) -> None:
    # Least-backlog routing sends each query to the replica that frees first, where one
    # central FCFS queue of c servers would start it: every wait is the Kiefer-Wolfowitz one.
    c, _, t, res = mdc
    got = res.queries.sort_values("qid")["queueing_ms"].to_numpy()
    assert np.abs(got - fcfs_waits(t, c, D_S) * 1000).max() < 1e-6


def test_queueing_time_is_never_negative_and_latency_is_at_least_execution(
    mdc: tuple[int, float, np.ndarray, RunResult],
) -> None:
    q = mdc[3].queries
    cols = ["queueing_ms", "loading_ms", "batching_ms", "execution_ms"]
    assert (q[cols] >= 0).all().all()
    assert (q["latency_ms"] >= q["execution_ms"] - 1e-9).all()
