"""The Hydra app: ``infaas-sim [group=option ...] [key=value ...]`` runs one experiment;
``infaas-sim -m policy=static,infaas trace.mean_qps=100,400`` sweeps (joblib launcher).

Each run writes queries/timeline/instances Parquet, summary.json and figures into its own
Hydra run folder. Bad input ends with a one-line error and exit status 2, and the folder
holds only error.txt.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from experiments.outputs import STREAM_NAME, retire_previous, write_error, write_run
from infaas_sim import interrupt
from infaas_sim.errors import InputError
from infaas_sim.executor import EXECUTORS
from infaas_sim.experiment import run_experiment
from infaas_sim.policy import POLICIES
from infaas_sim.trace import TRACES

CONF = Path(__file__).parent / "conf"
_NAME_LINE = re.compile(r"^name:\s*(\S+)", re.MULTILINE)
log = logging.getLogger("infaas_sim")


def register_plugin_configs() -> None:
    """A config-group option for every registered policy, executor and trace that has no YAML
    of its own: a plug-in from another installed package (its entry point) runs with
    ``policy=<its name>`` and its constructor's defaults, ``policy.params.x=...`` to set them."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for group, registry in (("policy", POLICIES), ("executor", EXECUTORS), ("trace", TRACES)):
        have = {f.stem for f in (CONF / group).glob("*.yaml")}
        # the names the files give (a top-level ``name:`` line), read without parsing YAML
        named = {m.group(1).strip("'\"") for f in (CONF / group).glob("*.yaml")
                 if (m := _NAME_LINE.search(f.read_text())) is not None}  # fmt: skip
        for name in registry.declared():  # names only: a plug-in is imported when a run uses it
            if name in have or name in named:
                continue
            node: dict[str, Any] = {"name": name}
            if group != "trace":
                node["params"] = {}
            cs.store(group=group, name=name, node=node)


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> dict[str, Any] | None:
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    # An earlier run's results in this folder move to .previous/ before anything else: if this
    # run fails or is killed, its folder never shows another run's summary beside its config.
    retire_previous(out_dir)
    log.info("infaas-sim %s -> %s", " ".join(hc.overrides.task) or "(defaults)", out_dir)
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    try:
        with interrupt.stop_on_signals():
            result = run_experiment({str(k): v for k, v in plain.items()}, records_to=out_dir / STREAM_NAME)
            signum = interrupt.STOP.signum
    except InputError as exc:
        message = f"error: {exc}"
        write_error(out_dir, message)
        log.error(message)
        if hc.mode == RunMode.MULTIRUN:
            print(message, file=sys.stderr)
            return {"error": str(exc)}
        print(message, file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # asked twice, or before the run loop started: nothing to keep
        message = "error: interrupted before the run had records to write"
        write_error(out_dir, message)
        log.error(message)
        print(message, file=sys.stderr)
        sys.exit(130)
    write_run(result, out_dir, figures=bool(plain.get("outputs", {}).get("figures", True)))
    s = result.summary
    line = (
        f"{s['policy']}: {s['queries']} queries, served {s['served']}, rejected {s['rejected']}, "
        f"failed {s['failed']}; SLO violation rate {s['slo_violation_rate']:.2%}; "
        f"p99 {s['latency_p99_ms']:.1f} ms; cost ${s['total_cost']:.3f} "
        f"(${s['cost_per_1k_queries']:.5f}/1k); mean accuracy {s['mean_accuracy']:.3f}; "
        f"wall {s['wall_s']:.1f} s -> {out_dir}"
    )
    for w in s.get("warnings", ()):
        print(f"warning: {w}", file=sys.stderr)
    if not s.get("complete", True):
        message = f"{s['interrupted']}: partial outputs, summary.json says complete: false -> {out_dir}"
        log.warning(message)
        print(f"error: {message}", file=sys.stderr)
        if hc.mode != RunMode.MULTIRUN:
            sys.exit(128 + (signum or 2))
    log.info(line)
    print(line)
    return json.loads(json.dumps(s, default=str))


# Hydra flags that take a value (the value is not an override).
_FLAGS_WITH_VALUE = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--cfg", "-c",
                     "--package", "-p", "--info", "-i", "--experimental-rerun"}  # fmt: skip


def _group_options(group: str) -> list[str]:
    from hydra.core.config_store import ConfigStore

    names = {f.stem for f in (CONF / group).glob("*.yaml")}
    stored = ConfigStore.instance().repo
    for part in group.split("/"):
        stored = stored.get(part, {}) if isinstance(stored, dict) else {}
    names |= {k.removesuffix(".yaml") for k in stored} if isinstance(stored, dict) else set()
    return sorted(names)


#: What a ``_target_`` given on the command line may instantiate: the project's own sweep
#: callbacks. Anything else (``+hydra.callbacks.x={_target_: shutil.rmtree, ...}``) would run
#: arbitrary code with the user's rights from a mistyped or pasted override.
ALLOWED_TARGETS = frozenset({"experiments.sweep.SweepSummary", "experiments.beyond.ExcludeCombinations"})


def _foreign_target(key: str, value: Any) -> str | None:
    """The ``_target_`` an override sets outside :data:`ALLOWED_TARGETS`, if any."""
    targets: list[Any] = []
    if key == "_target_" or key.endswith("._target_"):
        targets.append(value)

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                if k == "_target_":
                    targets.append(x)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(value)
    for t in targets:
        if str(t) not in ALLOWED_TARGETS:
            return str(t)
    return None


def check_overrides(args: list[str], primary_config: str = "config.yaml") -> str | None:
    """A mistyped group, option or key on the command line, as one line (None: all known).
    Hydra's own messages for these span several lines and exit 1; every other bad value in
    this tool is one line and exit 2."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    overrides, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a.startswith("-"):
            skip = a in _FLAGS_WITH_VALUE
            continue
        if "=" in a:
            overrides.append(a)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        return f"bad command-line override: {str(exc).splitlines()[0]}"
    groups = sorted(d.name for d in CONF.iterdir() if d.is_dir() and not d.name.startswith("_"))
    primary = OmegaConf.load(CONF / primary_config)
    top = {str(k) for k in primary if k != "defaults"} | set(groups) | {"hydra"}
    for o in parsed:
        key = o.key_or_group
        bad = _foreign_target(key, o.value() if not o.is_delete() else None)
        if bad is not None:
            return (f"{o.input_line!r}: _target_ {bad!r} is not allowed on the command line "
                    f"(allowed: {', '.join(sorted(ALLOWED_TARGETS))})")  # fmt: skip
        if key.startswith("hydra") or o.is_delete():
            continue
        group = key.split("@")[0]
        if group in groups:
            options = _group_options(group)
            values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
            for v in values:
                if v not in options and v != "null":
                    return f"unknown {group} {v!r} for {o.input_line!r} (known: {', '.join(options)})"
        elif not o.is_add() and key.split(".")[0] not in top:
            known, line = ", ".join(sorted(top - {"hydra"})), o.input_line
            return f"unknown option {key.split('.')[0]!r} in {line!r} (known: {known}; +{line} adds a key)"
    return None


def cli() -> None:
    """The console script: the Hydra app. A sweep any of whose jobs failed (each with its
    one-line error in its folder, listed on stderr after the summary) exits with status 2."""
    from experiments import sweep

    sweep.FAILED.clear()
    try:
        register_plugin_configs()
    except InputError as exc:  # a broken plug-in's entry point
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    problem = check_overrides(sys.argv[1:])
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    main()
    if sweep.FAILED:
        sys.exit(2)


if __name__ == "__main__":
    cli()
