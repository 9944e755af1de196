"""The Hydra app ``infaas-load [group=option ...] [key=value ...]``: replay a trace against a server.

Any trace config (``trace=twitter``, ``trace.qps=200``, ...) and workload, sent open loop to
``load.url`` (default http://127.0.0.1:8000, an ``infaas-serve``); the run folder gets the same
queries.parquet / timeline.parquet / summary.json as a run, from the client's side, so the
server's, the client's and the simulator's latencies can be compared on one trace.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from experiments.outputs import retire_previous, write_error, write_run
from infaas_sim.errors import ConfigError, InputError

log = logging.getLogger("infaas_sim.load")


def load_config(cfg: dict[str, Any] | None) -> Any:
    from experiments.serving.client import LoadConfig

    given = dict(cfg or {})
    allowed = {f.name for f in fields(LoadConfig)}
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ConfigError(f"config: unknown key(s) {unknown} in load (allowed: {sorted(allowed)})")
    return LoadConfig(**given)


def run(plain: dict[str, Any]) -> Any:
    """Replay from a plain config (sections trace, workload, run, load)."""
    from experiments.serving.client import run_load
    from infaas_sim.experiment import build_apps, build_run, build_workload

    unknown = sorted(set(plain) - {"trace", "workload", "run", "load"})
    if unknown:
        raise ConfigError(f"config: unknown section(s) {unknown} (allowed: load, run, trace, workload)")
    spec = build_run(dict(plain.get("run") or {}))
    apps = build_apps(dict(plain.get("workload") or {}))
    workload = build_workload(dict(plain.get("trace") or {}), apps, spec.duration_s, spec.seed,
                              dict(plain.get("workload") or {}))  # fmt: skip
    return run_load(workload, spec.duration_s, load_config(plain.get("load")), spec.seed)


@hydra.main(version_base=None, config_path="conf", config_name="load")
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    retire_previous(out_dir)
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    try:
        result = run({str(k): v for k, v in plain.items()})
    except InputError as exc:
        message = f"error: {exc}"
        write_error(out_dir, message)
        log.error(message)
        print(message, file=sys.stderr)
        sys.exit(2)
    figures = bool(dict(plain.get("load") or {}).get("figures", False))
    write_run(result, out_dir, figures=figures)
    s = result.summary
    line = (
        f"infaas-load: {s['queries']} requests to {s['client']['url']}: served {s['served']}, "
        f"rejected {s['rejected']}, failed {s['failed']}; SLO violation rate {s['slo_violation_rate']:.2%}; "
        f"p99 {s['latency_p99_ms']:.1f} ms (client side) -> {out_dir}"
    )
    log.info(line)
    print(line)


def cli() -> None:
    """The console script."""
    from experiments.run import check_overrides, register_plugin_configs

    try:
        import aiohttp  # noqa: F401
    except ImportError:
        print("error: infaas-load needs the serve extra: pip install -e '.[serve]'", file=sys.stderr)
        sys.exit(2)
    try:
        register_plugin_configs()
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    problem = check_overrides(sys.argv[1:], "load.yaml")
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
