"""From evaluations to answers: which meet the goals, the Pareto front of cost against
violation rate, the cheapest that meets the goals, each other policy's best, and when nothing
meets them, the goal that binds and the nearest configuration."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .evaluate import Evaluation
from .settings import Goals


def shortfalls(ev: Evaluation, goals: Goals) -> dict[str, float]:
    """Goal -> how far the candidate misses it, relative to the goal (0: met)."""

    def rel(value: float, limit: float) -> float:
        if math.isnan(value):
            return math.inf
        return max(0.0, (value - limit) / limit) if limit > 0 else max(0.0, value - limit)

    strict = goals.strict
    viol = ev.worse("slo_violation_rate") if strict else ev.mean("slo_violation_rate")
    out = {"max_violation_rate": rel(viol, goals.max_violation_rate)}
    if goals.budget_per_hour is not None:
        cost = ev.worse("cost_per_hour") if strict else ev.mean("cost_per_hour")
        out["budget_per_hour"] = rel(cost, goals.budget_per_hour)
    if goals.min_accuracy is not None:
        acc = ev.worse("mean_accuracy", higher_is_worse=False) if strict else ev.mean("mean_accuracy")
        out["min_accuracy"] = math.inf if math.isnan(acc) else max(0.0, (goals.min_accuracy - acc) / goals.min_accuracy)
    return out


def meets(ev: Evaluation, goals: Goals) -> bool:
    return ev.ok and all(v == 0.0 for v in shortfalls(ev, goals).values())


def _cost_order(ev: Evaluation) -> tuple[float, float, str]:
    return (ev.mean("cost_per_hour"), ev.mean("slo_violation_rate"), ev.candidate.key)


def pareto_front(evs: Sequence[Evaluation], goals: Goals) -> list[Evaluation]:
    """The candidates no other beats on both cost and violation rate (means), among those that
    meet the accuracy goal (a constraint, not an objective), cheapest first."""
    pool = [e for e in evs if e.ok and not math.isnan(e.mean("slo_violation_rate"))]
    if goals.min_accuracy is not None:
        pool = [
            e for e in pool if "min_accuracy" not in shortfalls(e, goals) or shortfalls(e, goals)["min_accuracy"] == 0
        ]
    front, best_viol = [], math.inf
    for e in sorted(pool, key=_cost_order):
        if e.mean("slo_violation_rate") < best_viol:
            front.append(e)
            best_viol = e.mean("slo_violation_rate")
    return front


@dataclass(frozen=True)
class Choice:
    recommended: Evaluation | None  # the cheapest that meets the goals
    nearest: Evaluation | None  # when nothing meets them: the smallest total shortfall
    binding: tuple[str, ...]  # the goals the nearest misses
    runners_up: dict[str, Evaluation]  # other policy -> its best (meeting the goals if any of it does)
    message: str


def _nearest(evs: Sequence[Evaluation], goals: Goals) -> Evaluation | None:
    pool = [e for e in evs if e.ok]
    if not pool:
        return None
    return min(pool, key=lambda e: (sum(shortfalls(e, goals).values()), *_cost_order(e)))


def choose(evs: Sequence[Evaluation], goals: Goals) -> Choice:
    ok = sorted((e for e in evs if meets(e, goals)), key=_cost_order)
    best = ok[0] if ok else None
    pick = best or _nearest(evs, goals)
    runners: dict[str, Evaluation] = {}
    policies = sorted({e.candidate.policy for e in evs if e.ok})
    for pol in policies:
        if pick is not None and pol == pick.candidate.policy:
            continue
        own = [e for e in evs if e.ok and e.candidate.policy == pol]
        own_ok = [e for e in own if meets(e, goals)]
        chosen = min(own_ok, key=_cost_order) if own_ok else _nearest(own, goals)
        if chosen is not None:
            runners[pol] = chosen
    if best is not None:
        return Choice(best, None, (), runners, f"recommended: {best.candidate.key}")
    if pick is None:
        return Choice(None, None, (), runners, "no candidate ran: see candidates.csv for their errors")
    missed = tuple(g for g, v in shortfalls(pick, goals).items() if v > 0)
    alone = {g: sum(1 for e in evs if e.ok and shortfalls(e, goals)[g] == 0) for g in shortfalls(pick, goals)}
    detail = "; ".join(f"{g}: {alone[g]} candidate(s) meet it alone" for g in alone)
    message = (
        f"no configuration meets the goals; binding: {', '.join(missed)} ({detail}); nearest: {pick.candidate.key}"
    )
    return Choice(None, pick, missed, runners, message)
