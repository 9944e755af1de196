"""The search space: policies x cluster choices x each policy's main knobs.

Each policy's knobs are declared here, in the experiment layer, so that ``policies/`` needs no
change: :data:`KNOBS` maps a registered policy name to ``{constructor parameter: values to try}``.
A plug-in policy from another package can declare its own with a class attribute
``plan_space = {"knob": (v1, v2)}``; ``plan.space.knobs.<policy>.<knob>=[...]`` replaces any
knob's values for one plan. A policy with no declaration is searched at its defaults only
(cluster choices still vary). The first value of each knob is not special: a policy's
configured default (its YAML) is what the search tries first.
"""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from infaas_sim.errors import ConfigError
from infaas_sim.hardware import DEFAULT_INSTANCE_TYPES, parse_kind
from infaas_sim.policy import POLICIES

from .settings import Space

CONF = Path(__file__).resolve().parents[1] / "conf"
HARDWARE = ("any", "cpu", "gpu", "inferentia")
NO_CAP = 1000  # a kind the cluster config sets no cap for: the cluster model's own default

# Main knobs per policy: what an operator would tune, a few values each (the space multiplies).
KNOBS: dict[str, dict[str, tuple[Any, ...]]] = {
    "infaas": {
        "slack": (1.0, 1.05, 1.3),  # headroom over demand
        "cpu_high_util": (0.6, 0.8),  # when the VM autoscaler adds a CPU worker
        "price_aware": (False, True),  # cost-aware starts and rightsizing (ours)
        "vm_scale_out": ("one", "demand"),
    },
    "infaas-ilp": {"solve_every_s": (10.0, 30.0), "slack": (1.05, 1.3)},
    "clipper+": {"target_util": (0.6, 0.8), "sizing": ("mean", "peak"), "hardware": HARDWARE},
    "sagemaker+": {"safety_factor": (0.3, 0.5, 0.7), "sizing": ("mean", "peak"), "hardware": HARDWARE},
    "static": {"replicas": ("mean", "peak"), "target_util": (0.6, 0.8), "hardware": HARDWARE},
    "hpa": {"target_utilization": (0.5, 0.7, 0.9), "sizing": ("mean", "peak")},
    "vpa": {"target_util": (0.6, 0.8), "safety_margin": (0.15, 0.3)},
    "themis": {"k": (0.5, 1.0, 2.0), "max_cores": (2, 4)},
    "infadapter": {"cost_weight": (0.01, 0.05, 0.2), "margin": (0.1, 0.3)},
    "ipa": {"alpha": (2.0, 10.0), "beta": (0.5, 1.0), "max_batch": (4, 8)},
}


@dataclass(frozen=True)
class Candidate:
    """One point of the space: a policy, its knob values, and per hardware kind the instance
    type and the worker cap."""

    policy: str
    knobs: tuple[tuple[str, Any], ...]
    cluster: tuple[tuple[str, str, int], ...]  # (kind, instance type, max workers)

    @property
    def key(self) -> str:
        """A readable, unique name (the tables' ``candidate`` column)."""
        knobs = " ".join(f"{k}={_show(v)}" for k, v in self.knobs)
        nodes = " ".join(f"{kind}={t}<={n}" for kind, t, n in self.cluster)
        return f"{self.policy} {knobs} on {nodes}".replace("  ", " ")

    def knob_dict(self) -> dict[str, Any]:
        """The knobs as policy parameters (lists where the space holds tuples)."""
        return {k: thaw(v) for k, v in self.knobs}


def _show(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(thaw(v))


def freeze(v: Any) -> Any:
    """A knob value a candidate can hold (candidates are dict keys): lists become tuples."""
    return tuple(freeze(x) for x in v) if isinstance(v, list | tuple) else v


def thaw(v: Any) -> Any:
    return [thaw(x) for x in v] if isinstance(v, tuple) else v


def policy_yaml_names() -> dict[str, str]:
    """Registered policy name -> its option in experiments/conf/policy (``clipper+`` ->
    ``clipper_plus``); a plug-in without a YAML is its own option (experiments/run.py)."""
    out = {}
    for f in sorted((CONF / "policy").glob("*.yaml")):
        node = OmegaConf.to_container(OmegaConf.load(f))
        if isinstance(node, dict) and "name" in node:
            out[str(node["name"])] = f.stem
    return {name: out.get(name, name) for name in POLICIES.names()}


def policy_base(name: str) -> dict[str, Any]:
    """The policy section a candidate starts from: its YAML's (or, for a plug-in, no params)."""
    stem = policy_yaml_names()[name]
    path = CONF / "policy" / f"{stem}.yaml"
    if not path.is_file():
        return {"name": name, "params": {}}
    node = OmegaConf.to_container(OmegaConf.load(path))
    assert isinstance(node, dict)
    return {"name": name, "params": dict(node.get("params") or {})}


def resolve_policy(given: str) -> str:
    """A registered name from a name or a YAML option (``clipper_plus`` -> ``clipper+``)."""
    names = policy_yaml_names()
    if given in names:
        return given
    by_stem = {stem: name for name, stem in names.items()}
    if given in by_stem:
        return by_stem[given]
    raise ConfigError(f"unknown policy {given!r} in plan.space (known: {', '.join(sorted(names))})")


def declared_knobs(name: str) -> dict[str, tuple[Any, ...]]:
    declared = KNOBS.get(name)
    if declared is None:
        declared = dict(getattr(POLICIES.get(name), "plan_space", None) or {})
    return {k: tuple(v) for k, v in declared.items()}


def _check_knobs(name: str, knobs: Mapping[str, Sequence[Any]]) -> None:
    params = inspect.signature(POLICIES.get(name).__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(knobs) - set(params) - {"self"})
    if unknown:
        known = ", ".join(p for p in params if p != "self")
        raise ConfigError(f"plan.space.knobs.{name}: {name} has no parameter(s) {unknown} (known: {known})")


@dataclass(frozen=True)
class PolicySpace:
    name: str
    base: dict[str, Any]  # the policy section before knobs
    knobs: dict[str, tuple[Any, ...]]  # knob -> values, the configured default first

    def size(self) -> int:
        n = 1
        for v in self.knobs.values():
            n *= len(v)
        return n

    def combos(self) -> Iterator[tuple[tuple[str, Any], ...]]:
        keys = sorted(self.knobs)
        for values in itertools.product(*(self.knobs[k] for k in keys)):
            yield tuple(zip(keys, values, strict=True))

    def default(self) -> tuple[tuple[str, Any], ...]:
        return tuple((k, self.knobs[k][0]) for k in sorted(self.knobs))


def _default_first(values: tuple[Any, ...], default: Any) -> tuple[Any, ...]:
    """Values without duplicates, the configured default first where it is among them."""
    unique = tuple(dict.fromkeys(json.dumps(thaw(v)) for v in values))
    vals = tuple(freeze(json.loads(v)) for v in unique)
    default = freeze(default)
    if default in vals:
        return (default, *(v for v in vals if v != default))
    return vals


def policy_spaces(names: Sequence[str], space: Space) -> list[PolicySpace]:
    """Each policy's knob space: the declaration, with ``plan.space.knobs`` replacing knobs."""
    overrides = {resolve_policy(p): ks for p, ks in space.knobs.items()}
    stray = sorted(set(overrides) - set(names))
    if stray:
        raise ConfigError(f"plan.space.knobs names policies not in the plan: {stray} (planned: {', '.join(names)})")
    out = []
    for name in names:
        knobs = {**declared_knobs(name), **{k: tuple(v) for k, v in overrides.get(name, {}).items()}}
        _check_knobs(name, knobs)
        base = policy_base(name)
        params = base["params"]
        knobs = {k: _default_first(v, params.get(k)) for k, v in knobs.items()}
        out.append(PolicySpace(name, base, knobs))
    return out


@dataclass(frozen=True)
class ClusterSpace:
    """Per hardware kind of the base cluster: the instance types and worker caps to try."""

    base: dict[str, Any]
    types: dict[str, tuple[str, ...]]  # kind -> types, the configured one first
    caps: dict[str, tuple[int, ...]]  # kind -> caps, the configured one first

    def combos(self) -> list[tuple[tuple[str, str, int], ...]]:
        kinds = sorted(self.types)
        per_kind = [[(k, t, n) for t in self.types[k] for n in self.caps[k]] for k in kinds]
        return [tuple(c) for c in itertools.product(*per_kind)]

    def default(self) -> tuple[tuple[str, str, int], ...]:
        return tuple((k, self.types[k][0], self.caps[k][0]) for k in sorted(self.types))

    def section(self, choice: tuple[tuple[str, str, int], ...]) -> dict[str, Any]:
        """The cluster config of a choice: the base with each kind's type and cap replaced (the
        same keys as the base: recommended.yaml's defaults-list merge adds nothing stale)."""
        out = json.loads(json.dumps(self.base))
        for kind, itype, cap in choice:
            out["workers"][kind] = itype
            out.setdefault("max_workers", {})[kind] = cap
        return out


def cluster_space(given: Mapping[str, Any], space: Space) -> ClusterSpace:
    base: dict[str, Any] = json.loads(json.dumps(dict(given)))
    workers = {parse_kind(k).value: str(v) for k, v in dict(base.get("workers") or {}).items()}
    if not workers:
        raise ConfigError("config: cluster.workers must map at least one hardware kind to an instance type")
    base["workers"] = dict(workers)
    known = {n: t.kind.value for n, t in DEFAULT_INSTANCE_TYPES.items()}
    custom = {str(n) for n in dict(base.get("instance_types") or {})}
    for n, t in dict(base.get("instance_types") or {}).items():
        known[str(n)] = parse_kind(str(dict(t).get("kind"))).value
    for kind in [*space.instance_types, *space.max_workers]:
        if parse_kind(kind).value not in workers:
            raise ConfigError(f"plan.space: kind {kind!r} is not in the cluster's workers ({', '.join(workers)})")
    caps_base = {parse_kind(k).value: int(v) for k, v in dict(base.get("max_workers") or {}).items()}
    mins = {parse_kind(k).value: int(v) for k, v in dict(base.get("min_workers") or {}).items()}
    types, caps = {}, {}
    for kind, current in workers.items():
        allowed = space.instance_types.get(kind)
        if allowed is None and current in custom:  # the machines one has (cluster=local): as they are
            allowed = (current,)
        elif allowed is None:
            allowed = tuple(n for n, k in sorted(known.items()) if k == kind)
        for t in allowed:
            if t not in known:
                raise ConfigError(
                    f"plan.space.instance_types.{kind}: unknown instance type {t!r} (known: {', '.join(sorted(known))})"
                )
            if known[t] != kind:
                raise ConfigError(f"plan.space.instance_types.{kind}: {t!r} is a {known[t]} type")
        types[kind] = _default_first(tuple(allowed), current)
        cap_choices = space.max_workers.get(kind) or (caps_base.get(kind, NO_CAP),)
        low = [c for c in cap_choices if c < mins.get(kind, 0)]
        if low:
            raise ConfigError(
                f"plan.space.max_workers.{kind}: {low[0]} is below cluster.min_workers.{kind} ({mins[kind]})"
            )
        caps[kind] = _default_first(tuple(int(c) for c in cap_choices), caps_base.get(kind))
    return ClusterSpace(base, types, caps)


def planned_policies(space: Space) -> list[str]:
    """The policies named by the plan (before checking which serve the workload): the ones
    listed, else every registered one but those excluded."""
    excluded = {resolve_policy(p) for p in space.exclude}  # names checked either way
    if space.policies is not None:
        out = list(dict.fromkeys(resolve_policy(p) for p in space.policies))
    else:
        out = [n for n in POLICIES.names() if n not in excluded]
    if not out:
        raise ConfigError("plan.space: no policy left to plan over")
    return out


@dataclass(frozen=True)
class SearchSpace:
    policies: tuple[PolicySpace, ...]
    cluster: ClusterSpace
    skipped: dict[str, str]  # policy -> why it cannot serve this workload

    def policy(self, name: str) -> PolicySpace:
        return next(p for p in self.policies if p.name == name)

    def size(self) -> int:
        return sum(p.size() for p in self.policies) * len(self.cluster.combos())

    def grid(self) -> Iterator[Candidate]:
        for p in self.policies:
            for knobs in p.combos():
                for c in self.cluster.combos():
                    yield Candidate(p.name, knobs, c)

    def defaults(self) -> list[Candidate]:
        """Each policy at its configured defaults on the configured cluster: tried first."""
        return [Candidate(p.name, p.default(), self.cluster.default()) for p in self.policies]

    def config(self, base: Mapping[str, Any], cand: Candidate, seed: int) -> dict[str, Any]:
        """The full experiment config (run_experiment's input) of a candidate and seed."""
        pol = self.policy(cand.policy)
        cfg = json.loads(json.dumps(dict(base)))
        cfg["policy"] = {"name": pol.name, "params": {**pol.base["params"], **cand.knob_dict()}}
        cfg["cluster"] = self.cluster.section(cand.cluster)
        cfg["run"] = {**cfg["run"], "seed": seed, "progress": False}
        return cfg
