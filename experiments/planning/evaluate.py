"""Running candidates in simulation: every (candidate, seed) is one job for joblib, and a
candidate's figures are the mean and the 95% Student-t interval over its seeds.

Cost is per hour of traffic: the run's total cost x 3600 / the trace's duration, so that it
compares with ``plan.goals.budget_per_hour`` whatever the trace's length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from joblib import Parallel, delayed

from experiments.comparison import t_interval
from infaas_sim.errors import InputError
from infaas_sim.experiment import run_experiment

from .space import Candidate, SearchSpace

# Figures kept per seed; the first three are what the goals are judged on (wall_s: for runs.csv
# and the benchmark, never compared).
METRICS = ("slo_violation_rate", "cost_per_hour", "mean_accuracy", "latency_p99_ms", "total_cost", "queries", "wall_s")


def run_one(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """One simulation's figures, or ``{"error": message}`` for a configuration it rejects."""
    try:
        s = run_experiment(cfg)
    except InputError as exc:
        return {"error": str(exc)}
    summary = s.summary
    duration = float(summary["duration_s"])
    out = {k: summary.get(k) for k in METRICS if k != "cost_per_hour"}
    out["cost_per_hour"] = float(summary["total_cost"]) * 3600.0 / duration if duration > 0 else math.nan
    out["seed"] = int(summary["seed"])
    return out


@dataclass(frozen=True)
class Evaluation:
    """A candidate's runs, one per seed (or the error that stopped it)."""

    candidate: Candidate
    runs: tuple[dict[str, Any], ...]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def interval(self, metric: str) -> tuple[float, float]:
        """Mean and half-width of the 95% t-interval (half-width NaN with one seed)."""
        return t_interval([float(r[metric]) for r in self.runs if r.get(metric) is not None])

    def mean(self, metric: str) -> float:
        return self.interval(metric)[0]

    def worse(self, metric: str, higher_is_worse: bool = True) -> float:
        """The interval's worse end (the mean where there is no interval)."""
        mean, half = self.interval(metric)
        half = 0.0 if math.isnan(half) else half
        return mean + half if higher_is_worse else mean - half


def evaluate(
    space: SearchSpace,
    base: Mapping[str, Any],
    candidates: Sequence[Candidate],
    seeds: Sequence[int],
    n_jobs: int,
) -> Iterator[Evaluation]:
    """Evaluations as each candidate's last seed finishes (any order; parallel over
    candidates and seeds). Stopping the iteration (Ctrl-C) loses only unfinished candidates."""
    jobs = [(i, s, space.config(base, c, s)) for i, c in enumerate(candidates) for s in seeds]
    pending: dict[int, dict[int, dict[str, Any]]] = {i: {} for i in range(len(candidates))}
    calls = [delayed(_job)(i, s, cfg) for i, s, cfg in jobs]
    try:
        results: Any = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(calls)
    except ValueError:  # a backend that cannot stream results (Ray's): all of the round at once
        results = Parallel(n_jobs=n_jobs, return_as="list")(calls)
    for i, s, out in results:
        pending[i][s] = out
        if len(pending[i]) == len(seeds):
            done = pending.pop(i)
            runs = [done[s] for s in seeds]
            errors = [r["error"] for r in runs if "error" in r]
            yield Evaluation(candidates[i], tuple(r for r in runs if "error" not in r), errors[0] if errors else None)


def _job(i: int, seed: int, cfg: Mapping[str, Any]) -> tuple[int, int, dict[str, Any]]:
    return i, seed, run_one(cfg)


def probe(
    policies: Sequence[str],
    config_of: Callable[[str], Mapping[str, Any]],
    n_jobs: int,
) -> dict[str, str]:
    """Policy -> why it cannot serve the workload (its own one-line error), for each policy that
    refuses a short run at its defaults: a single-application policy on a two-application mix."""
    outs = Parallel(n_jobs=n_jobs)(delayed(run_one)(config_of(p)) for p in policies)
    return {p: str(o["error"]) for p, o in zip(policies, outs, strict=True) if "error" in o}
