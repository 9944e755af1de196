"""Which candidates to evaluate: every one for a small space, else Optuna's NSGA-II on two
objectives (cost per hour, violation rate) with the accuracy goal as a constraint.

The search is deterministic for a seed: Optuna's sampler is seeded, candidates are asked in
rounds of ``plan.batch`` and told back in the order asked, so the plan does not depend on
``n_jobs`` or on which job finishes first. Each policy's defaults are tried first, so every
policy has a runner-up. A candidate asked twice is told its first result, not run again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence

from .evaluate import Evaluation
from .settings import Goals, PlanSettings
from .space import Candidate, SearchSpace, thaw

Evaluator = Callable[[Sequence[Candidate]], Iterable[Evaluation]]


def uses_grid(space: SearchSpace, settings: PlanSettings) -> bool:
    return space.size() <= settings.grid_max


def target(space: SearchSpace, settings: PlanSettings) -> int:
    """How many distinct candidates the search evaluates."""
    return space.size() if uses_grid(space, settings) else min(settings.trials, space.size())


def search(space: SearchSpace, settings: PlanSettings, evaluate: Evaluator) -> Iterator[Evaluation]:
    """Evaluations in the order they finish; the caller keeps them (and what it has when
    interrupted)."""
    if uses_grid(space, settings):
        yield from _grid(space, settings, evaluate)
    else:
        yield from _optuna(space, settings, evaluate)


def _grid(space: SearchSpace, settings: PlanSettings, evaluate: Evaluator) -> Iterator[Evaluation]:
    cands = list(space.grid())
    for start in range(0, len(cands), settings.batch):  # rounds: the caller saves between them
        yield from evaluate(cands[start : start + settings.batch])


def _params(space: SearchSpace, cand: Candidate) -> dict[str, str]:
    out = {"policy": cand.policy}
    out.update({f"{cand.policy}/{k}": json.dumps(v) for k, v in cand.knob_dict().items()})
    out.update({f"cluster/{kind}": json.dumps([t, n]) for kind, t, n in cand.cluster})
    return out


def _suggest(trial: object, space: SearchSpace) -> Candidate:
    import optuna

    assert isinstance(trial, optuna.trial.Trial)
    name = str(trial.suggest_categorical("policy", [p.name for p in space.policies]))
    pol = space.policy(name)
    knobs = []
    for k in sorted(pol.knobs):
        encoded = {json.dumps(thaw(v)): v for v in pol.knobs[k]}
        knobs.append((k, encoded[str(trial.suggest_categorical(f"{name}/{k}", list(encoded)))]))
    cl = space.cluster
    nodes = []
    for kind in sorted(cl.types):
        choices = [json.dumps([t, n]) for t in cl.types[kind] for n in cl.caps[kind]]
        t, n = json.loads(str(trial.suggest_categorical(f"cluster/{kind}", choices)))
        nodes.append((kind, str(t), int(n)))
    return Candidate(name, tuple(knobs), tuple(nodes))


def _constraint(ev: Evaluation, goals: Goals) -> list[float]:
    """Optuna's constraint values (<= 0: feasible): the accuracy floor, when there is one."""
    if goals.min_accuracy is None:
        return [0.0]
    return [goals.min_accuracy - ev.mean("mean_accuracy")]


def _optuna(space: SearchSpace, settings: PlanSettings, evaluate: Evaluator) -> Iterator[Evaluation]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Optuna 5 takes constraints on the trial (Trial.set_constraint); 3.x and 4.x by a function.
    on_trial = hasattr(optuna.trial.Trial, "set_constraint")
    if on_trial:
        sampler = optuna.samplers.NSGAIISampler(population_size=settings.batch, seed=settings.seed)
    else:
        sampler = optuna.samplers.NSGAIISampler(
            population_size=settings.batch,
            seed=settings.seed,
            constraints_func=lambda t: t.user_attrs.get("constraint", [0.0]),
        )
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    for cand in space.defaults():
        study.enqueue_trial(_params(space, cand))
    seen: dict[Candidate, Evaluation] = {}
    goal = target(space, settings)
    asked, max_asked = 0, 20 * goal  # a space nearly exhausted keeps re-asking known points
    while len(seen) < goal and asked < max_asked:
        trials = [study.ask() for _ in range(settings.batch)]
        asked += len(trials)
        cands = [_suggest(t, space) for t in trials]
        new = [c for c in dict.fromkeys(cands) if c not in seen][: goal - len(seen)]
        for done in evaluate(new):
            seen[done.candidate] = done
            yield done
        for trial, cand in zip(trials, cands, strict=True):
            ev = seen.get(cand)
            if ev is None or not ev.ok or math.isnan(ev.mean("slo_violation_rate")):
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            if on_trial:
                trial.set_constraint("min_accuracy", _constraint(ev, settings.goals)[0])
            else:
                trial.set_user_attr("constraint", _constraint(ev, settings.goals))
            study.tell(trial, [ev.mean("cost_per_hour"), ev.mean("slo_violation_rate")])
