"""An experiment from plain configuration data: build every piece, run, return the result.

The Hydra app, the tests and the notebooks all go through :func:`run_experiment` with a plain
dict, so an experiment is reproducible from its saved config alone.
"""

from __future__ import annotations

import functools
import math
import typing
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from infaas_sim.catalog import Catalog
from infaas_sim.clock import WallClockEnvironment
from infaas_sim.errors import ConfigError
from infaas_sim.executor import make_executor
from infaas_sim.hardware import DEFAULT_INSTANCE_TYPES, HardwareKind, InstanceType, parse_kind
from infaas_sim.policy import WorkloadHint, make_policy
from infaas_sim.query import Application, Level, Pipeline, Requirement
from infaas_sim.reprofile import ReprofileSpec
from infaas_sim.simulation import ClusterSpec, Fault, RunResult, RunSpec, Workload, run_simulation
from infaas_sim.trace import assign_apps, make_trace


def _section(cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = cfg.get(name)
    if value is None:
        raise ConfigError(f"config: missing section {name!r}")
    if not isinstance(value, Mapping):
        raise ConfigError(f"config: section {name!r} must be a mapping, got {type(value).__name__}")
    return dict(value)


def _only(section: str, given: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ConfigError(f"config: unknown key(s) {unknown} in {section} (allowed: {sorted(allowed)})")


def _number(section: str, key: str, value: Any, kind: type = float) -> Any:
    try:
        if isinstance(value, bool):
            raise ValueError
        out = kind(value)
        if kind is int and float(value) != out:
            raise ValueError
        if kind is float and not math.isfinite(out):
            raise ValueError
        return out
    except (TypeError, ValueError):
        raise ConfigError(f"config: {section}.{key} must be a {kind.__name__}, got {value!r}") from None


def _flag(section: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):  # bool("maybe") is True: a typo must not switch a flag on
        raise ConfigError(f"config: {section}.{key} must be true or false, got {value!r}")
    return value


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _given(section: str, cls: type, cfg: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The values ``cfg`` gives for ``cls``'s fields ``names``, each checked against the
    field's type (bool, int, float, str); a field the config leaves out keeps the dataclass's
    default, which is stated there and nowhere else."""
    hints = _field_types(cls)
    out: dict[str, Any] = {}
    for name in names:
        if name not in cfg:
            continue
        value, ann = cfg[name], hints[name]
        if ann is bool:
            out[name] = _flag(section, name, value)
        elif ann in (int, float):
            out[name] = _number(section, name, value, ann)
        elif ann is str:
            out[name] = str(value)
        else:
            out[name] = value
    return out


def build_apps(cfg: Mapping[str, Any]) -> list[Application]:
    apps_cfg = cfg.get("apps")
    if not apps_cfg:
        raise ConfigError("config: workload.apps must list at least one application")
    apps = []
    allowed = {"name", "level", "target", "dataset", "slo_ms", "min_accuracy", "share", "batch", "stages",
               "expected_qps", "expected_peak_qps"}  # fmt: skip
    for i, a in enumerate(apps_cfg):
        a = dict(a)
        name = str(a.get("name", f"app{i}"))
        where = f"workload.apps[{name}]"
        _only(where, a, allowed)
        sized = _given(where, Application, a, ("share", "batch"))
        if "stages" in a:
            # A pipeline: ``stages`` lists each stage's requirement (level, target, dataset,
            # min_accuracy, optional slo_ms: that stage's own bound, default the end-to-end
            # one); the app's ``slo_ms`` is end to end.
            stray = sorted(set(a) & {"level", "target", "dataset", "min_accuracy"})
            if stray:
                raise ConfigError(f"config: {where} has stages, so {stray} belong in each stage")
            if a.get("slo_ms") is None:
                raise ConfigError(f"config: {where} is a pipeline and needs an end-to-end slo_ms")
            slo = _number(where, "slo_ms", a["slo_ms"])
            stages_cfg = a["stages"]
            if not isinstance(stages_cfg, list | tuple) or not stages_cfg:
                raise ConfigError(f"config: {where}.stages must list at least one stage")
            stages = tuple(
                _requirement(f"{where}.stages[{k}]", {"slo_ms": slo, **dict(st)}, with_stages=False)
                for k, st in enumerate(stages_cfg)
            )
            apps.append(Application.of_pipeline(name, Pipeline(stages, slo), index=i, **sized))
            continue
        apps.append(Application(name=name, requirement=_requirement(where, a), index=i, **sized))
    return apps


def _requirement(where: str, a: Mapping[str, Any], with_stages: bool = True) -> Requirement:
    """One requirement from an app's (or a pipeline stage's) keys."""
    if not with_stages:
        _only(where, a, {"level", "target", "dataset", "slo_ms", "min_accuracy"})
    try:
        level = Level(a.get("level", "task"))
    except ValueError:
        raise ConfigError(
            f"config: {where}.level must be variant, architecture or task, got {a.get('level')!r}"
        ) from None
    if "target" not in a:
        raise ConfigError(f"config: {where} needs a target (variant, architecture or task)")
    slo = a.get("slo_ms")
    return Requirement(
        level=level,
        target=str(a["target"]),
        slo_ms=None if slo is None else _number(where, "slo_ms", slo),
        **_given(where, Requirement, a, ("dataset", "min_accuracy")),
    )


def declared_rates(
    workload_cfg: Mapping[str, Any], apps: list[Application], trace_rate: tuple[float, float] | None
) -> dict[str, WorkloadHint] | None:
    """Each application's expected mean and peak queries/s, known before the run: its own
    ``expected_qps`` / ``expected_peak_qps`` in the workload config, else its share of what
    the trace declares (:meth:`traces.base.Trace.expected_rate`: a generator's parameters, a
    replay's preceding hour). An ``expected_qps`` without a peak keeps the trace's
    peak-to-mean ratio (1 where the trace says nothing). None when neither says anything for
    some application: the run then falls back to its observed rates, and says so."""
    total_share = sum(a.share for a in apps)
    cfg_apps = [dict(a) for a in workload_cfg.get("apps") or []]
    out: dict[str, WorkloadHint] = {}
    for app, a in zip(apps, cfg_apps, strict=True):
        where = f"workload.apps[{app.name}]"
        keys = ("expected_qps", "expected_peak_qps")
        given = {k: None if a.get(k) is None else _number(where, k, a[k]) for k in keys}
        mean, peak = given["expected_qps"], given["expected_peak_qps"]
        for key, v in (("expected_qps", mean), ("expected_peak_qps", peak)):
            if v is not None and v < 0:
                raise ConfigError(f"config: {where}.{key} must be >= 0, got {v:g}")
        if mean is None:
            if trace_rate is None:
                if peak is not None:
                    raise ConfigError(f"config: {where} gives expected_peak_qps without expected_qps")
                return None
            mean = trace_rate[0] * app.share / total_share
        if peak is None:
            if a.get("expected_qps") is None and trace_rate is not None:
                peak = trace_rate[1] * app.share / total_share
            else:
                ratio = trace_rate[1] / trace_rate[0] if trace_rate is not None and trace_rate[0] > 0 else 1.0
                peak = mean * ratio
        if peak < mean:
            raise ConfigError(f"config: {where}.expected_peak_qps ({peak:g}) is below expected_qps ({mean:g})")
        out[app.name] = WorkloadHint(mean_qps=mean, peak_qps=peak)
    return out


def build_workload(
    trace_cfg: Mapping[str, Any],
    apps: list[Application],
    duration_s: float,
    seed: int,
    workload_cfg: Mapping[str, Any] | None = None,
) -> Workload:
    params = dict(trace_cfg)
    name = params.pop("name", None)
    if not name:
        raise ConfigError("config: trace.name is required")
    trace = make_trace(str(name), **params)
    times = np.asarray(trace.arrivals(duration_s, np.random.default_rng([seed, 1])), dtype=float)
    app_index = np.asarray(
        assign_apps(len(times), [a.share for a in apps], np.random.default_rng([seed, 2])), dtype=np.int32
    )  # 32-bit: 4 bytes a query fewer in an hour's 36M arrivals
    expected = declared_rates(workload_cfg or {}, apps, trace.expected_rate(duration_s)) if workload_cfg else None
    return Workload(apps, times, app_index, expected=expected)


def build_cluster(cfg: Mapping[str, Any]) -> ClusterSpec:
    allowed = {"instance_types", "workers", "min_workers", "max_workers", "max_queue_s", "resize_delay_s",
               "max_wait_s"}  # fmt: skip
    _only("cluster", cfg, allowed)
    types: dict[str, InstanceType] = dict(DEFAULT_INSTANCE_TYPES)
    for tname, t in dict(cfg.get("instance_types") or {}).items():
        t = dict(t)
        where = f"cluster.instance_types.{tname}"
        _only(where, t, {f.name for f in fields(InstanceType)} - {"name"})
        try:
            types[tname] = InstanceType(
                name=tname,
                kind=parse_kind(str(t["kind"])),
                vcpus=_number(where, "vcpus", t["vcpus"], int),
                memory_mb=_number(where, "memory_mb", t["memory_mb"], int),
                price_per_hour=_number(where, "price_per_hour", t["price_per_hour"]),
                **_given(where, InstanceType, t, ("startup_s", "accelerators", "accelerator_memory_mb")),
                source=str(t.get("source", "config")),  # where the figures come from: the config file
            )
        except KeyError as exc:
            raise ConfigError(f"config: {where} needs {exc.args[0]}") from None
    by_kind = {parse_kind(k): str(v) for k, v in dict(cfg.get("workers") or {}).items()}
    if not by_kind:
        raise ConfigError("config: cluster.workers must map at least one hardware kind to an instance type")

    def limits(key: str) -> dict[HardwareKind, int]:
        return {parse_kind(k): _number("cluster", f"{key}.{k}", v, int) for k, v in dict(cfg.get(key) or {}).items()}

    return ClusterSpec(
        instance_types=types,
        type_by_kind=by_kind,
        min_workers=limits("min_workers"),
        max_workers=limits("max_workers"),
        **_given("cluster", ClusterSpec, cfg, ("max_queue_s", "resize_delay_s", "max_wait_s")),
    )


def build_run(cfg: Mapping[str, Any]) -> RunSpec:
    allowed = {f.name for f in fields(RunSpec)}
    _only("run", cfg, allowed)
    faults = []
    for f in cfg.get("faults") or []:
        f = dict(f)
        _only("run.faults[]", f, {x.name for x in fields(Fault)})
        if f.get("kind") == "drift" and "length_s" in f:
            raise ConfigError("config: run.faults[]: a drift has no length_s (it lasts to the end of the run)")
        faults.append(Fault(**f))
    return RunSpec(
        **_given("run", RunSpec, cfg, ("duration_s", "seed", "drain_s", "sample_s", "progress")),
        faults=tuple(faults),
        reprofile=build_reprofile(cfg.get("reprofile")),
    )


def build_reprofile(cfg: Mapping[str, Any] | None) -> ReprofileSpec:
    """``run.reprofile``: the fields of :class:`ReprofileSpec`, each optional."""
    if cfg is None:
        return ReprofileSpec()
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"config: run.reprofile must be a mapping (enabled, margin, batches), got {cfg!r}")
    where = "run.reprofile"
    _only(where, cfg, {f.name for f in fields(ReprofileSpec)})
    return ReprofileSpec(**_given(where, ReprofileSpec, cfg, ("enabled", "margin", "batches")))


def run_experiment(cfg: Mapping[str, Any], records_to: Path | None = None) -> RunResult:
    """Run one experiment from a plain config dict (sections: trace, workload, catalog,
    cluster, policy, executor, run). ``records_to``: stream the per-query records to this
    Parquet file (:func:`~infaas_sim.simulation.run_simulation`)."""
    _only("config", cfg, {"trace", "workload", "catalog", "cluster", "policy", "executor", "run", "outputs"})
    run = build_run(_section(cfg, "run"))
    catalog = Catalog.load(str(_section(cfg, "catalog").get("path", "default")))
    apps = build_apps(_section(cfg, "workload"))
    cluster = build_cluster(_section(cfg, "cluster"))
    pol = _section(cfg, "policy")
    _only("policy", pol, {"name", "params"})
    policy = make_policy(str(pol.get("name")), **dict(pol.get("params") or {}))
    ex = _section(cfg, "executor")
    _only("executor", ex, {"name", "params"})
    executor = make_executor(str(ex.get("name")), **dict(ex.get("params") or {}))
    workload = build_workload(_section(cfg, "trace"), apps, run.duration_s, run.seed, _section(cfg, "workload"))
    env = WallClockEnvironment() if executor.realtime else None
    return run_simulation(catalog, workload, policy, executor, cluster, run, env=env, records_to=records_to)
