"""The ``plan`` section of ``infaas-plan``'s config, as frozen dataclasses holding the defaults.

``experiments/conf/plan.yaml`` mirrors these defaults (a test checks they agree); every value is
checked here, so a negative goal or a zero seed count is a one-line ConfigError.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from infaas_sim.errors import ConfigError


@dataclass(frozen=True)
class Goals:
    """What a configuration must achieve. None: no such goal."""

    max_violation_rate: float = 0.01  # share of queries not answered within their SLO
    budget_per_hour: float | None = None  # $ per hour of traffic (see docs/planning.md)
    min_accuracy: float | None = None  # mean accuracy of the served queries
    # True: the 95% interval's worse end must meet each goal, not only the mean.
    strict: bool = False


@dataclass(frozen=True)
class Space:
    """Restrictions and extensions of the search space (experiments/planning/space.py)."""

    policies: tuple[str, ...] | None = None  # None: every registered policy that serves the workload
    # Left out of "every registered policy" (a list in ``policies`` is taken as it is).
    # infaas-ilp: INFaaS's optimum for small clusters, a bound rather than a system to deploy, and
    # ~20x slower to simulate than infaas (OR-Tools every 10 s); plan.space.exclude=[] keeps it.
    exclude: tuple[str, ...] = ("infaas-ilp",)
    # policy -> knob -> the values to try; replaces that knob's declared choices.
    knobs: Mapping[str, Mapping[str, tuple[Any, ...]]] = field(default_factory=dict)
    # hardware kind -> instance types to try; a kind not named: every known type of that kind, or
    # only the cluster's own where that is a type of its own (cluster.instance_types: local).
    instance_types: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # hardware kind -> worker caps to try; a kind not named: the cluster config's own cap.
    max_workers: Mapping[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanSettings:
    goals: Goals = field(default_factory=Goals)
    space: Space = field(default_factory=Space)
    seeds: int = 3  # seeds per candidate: a recommendation is not one lucky seed
    n_jobs: int = 2  # joblib workers (-1: every core)
    # where candidates run: "loky" (local processes) or "ray" (Ray's joblib backend: a local Ray,
    # or the cluster at ray_address, e.g. "auto"), so a large plan spreads over a Ray cluster
    backend: str = "loky"
    ray_address: str | None = None
    seed: int = 0  # the search's seed: the same seed gives the same plan
    trials: int = 60  # Optuna: distinct candidates to evaluate
    grid_max: int = 64  # a space of at most this many candidates is searched exhaustively
    batch: int = 8  # candidates asked per round (and NSGA-II's population), whatever n_jobs is
    figures: bool = True
    # Seconds of the trace to replay the recommendation in real mode and in simulation
    # (experiments/planning/verify.py); None: no check. ``--verify`` sets it to VERIFY_S.
    verify_s: float | None = None


VERIFY_S = 30.0


def _check_keys(where: str, given: Mapping[str, Any], cls: type) -> None:
    unknown = sorted(set(given) - {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(
            f"config: unknown key(s) {unknown} in {where} (allowed: {sorted(f.name for f in fields(cls))})"
        )


def _number(where: str, value: Any, *, whole: bool = False, minimum: float = 0.0) -> Any:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and whole:
        ok = float(value).is_integer()
    if not ok:
        raise ConfigError(f"config: {where} must be a {'whole ' if whole else ''}number, got {value!r}")
    if value < minimum:
        raise ConfigError(f"config: {where} must be >= {minimum:g}, got {value!r}")
    return int(value) if whole else float(value)


def _names(where: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError(f"config: {where} must be a list, got {value!r}")
    return tuple(str(v) for v in value)


def _choices(where: str, value: Any) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(f"config: {where} must be a non-empty list of values to try, got {value!r}")
    return tuple(value)


def parse_goals(cfg: Mapping[str, Any]) -> Goals:
    _check_keys("plan.goals", cfg, Goals)
    d = Goals()
    rate = _number("plan.goals.max_violation_rate", cfg.get("max_violation_rate", d.max_violation_rate))
    if rate > 1:
        raise ConfigError(f"config: plan.goals.max_violation_rate is a share of queries (0..1), got {rate:g}")
    budget, acc = cfg.get("budget_per_hour"), cfg.get("min_accuracy")
    budget = None if budget is None else _number("plan.goals.budget_per_hour", budget)
    acc = None if acc is None else _number("plan.goals.min_accuracy", acc)
    if acc is not None and acc > 1:
        raise ConfigError(f"config: plan.goals.min_accuracy is a fraction (0..1), got {acc:g}")
    strict = cfg.get("strict", d.strict)
    if not isinstance(strict, bool):
        raise ConfigError(f"config: plan.goals.strict must be true or false, got {strict!r}")
    return Goals(rate, budget, acc, strict)


def parse_space(cfg: Mapping[str, Any]) -> Space:
    _check_keys("plan.space", cfg, Space)
    policies = cfg.get("policies")
    knobs = {}
    for pol, ks in dict(cfg.get("knobs") or {}).items():
        if not isinstance(ks, Mapping):
            raise ConfigError(f"config: plan.space.knobs.{pol} must map knob names to lists, got {ks!r}")
        knobs[str(pol)] = {str(k): _choices(f"plan.space.knobs.{pol}.{k}", v) for k, v in ks.items()}
    types = {
        str(k): _names(f"plan.space.instance_types.{k}", v) for k, v in dict(cfg.get("instance_types") or {}).items()
    }
    caps = {}
    for kind, v in dict(cfg.get("max_workers") or {}).items():
        vals = _choices(f"plan.space.max_workers.{kind}", v)
        caps[str(kind)] = tuple(_number(f"plan.space.max_workers.{kind}", x, whole=True) for x in vals)
    return Space(
        policies=None if policies is None else _names("plan.space.policies", policies),
        exclude=_names("plan.space.exclude", cfg.get("exclude", list(Space.exclude))),
        knobs=knobs,
        instance_types=types,
        max_workers=caps,
    )


def parse_settings(cfg: Mapping[str, Any]) -> PlanSettings:
    """The ``plan`` section (a plain dict) as :class:`PlanSettings`; a ConfigError on bad input."""
    _check_keys("plan", cfg, PlanSettings)
    d = PlanSettings()
    n_jobs = _number("plan.n_jobs", cfg.get("n_jobs", d.n_jobs), whole=True, minimum=-1)
    if n_jobs == 0:
        raise ConfigError("config: plan.n_jobs must be >= 1 (or -1: every core), got 0")
    backend = cfg.get("backend", d.backend)
    if backend not in ("loky", "ray"):
        raise ConfigError(f"config: plan.backend must be 'loky' or 'ray', got {backend!r}")
    address = cfg.get("ray_address", d.ray_address)
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise ConfigError(f"config: plan.ray_address must be an address (or auto), got {address!r}")
    figures = cfg.get("figures", d.figures)
    if not isinstance(figures, bool):
        raise ConfigError(f"config: plan.figures must be true or false, got {figures!r}")
    return PlanSettings(
        goals=parse_goals(dict(cfg.get("goals") or {})),
        space=parse_space(dict(cfg.get("space") or {})),
        seeds=_number("plan.seeds", cfg.get("seeds", d.seeds), whole=True, minimum=1),
        n_jobs=n_jobs,
        backend=str(backend),
        ray_address=address,
        seed=_number("plan.seed", cfg.get("seed", d.seed), whole=True),
        trials=_number("plan.trials", cfg.get("trials", d.trials), whole=True, minimum=1),
        grid_max=_number("plan.grid_max", cfg.get("grid_max", d.grid_max), whole=True),
        batch=_number("plan.batch", cfg.get("batch", d.batch), whole=True, minimum=2),
        figures=figures,
        verify_s=None if cfg.get("verify_s") is None else _number("plan.verify_s", cfg["verify_s"], minimum=1),
    )
