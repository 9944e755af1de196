"""The Hydra app ``infaas-serve [group=option ...] [key=value ...]``: serve model-less queries.

The same catalog / cluster / policy / executor groups as ``infaas-sim`` plus ``server``
(``server.host``, default 127.0.0.1; ``server.port``, default 8000). With no arguments it
serves the built-in digits family on onnxruntime (generated and profiled on first start)::

    infaas-serve
    curl -s localhost:8000/v2/models/classification-digits/infer -d '{"inputs": [{"name": "input",
      "datatype": "FP32", "shape": [1, 64], "data": [0, ...]}], "parameters": {"slo_ms": 50}}'

SIGINT / SIGTERM drain in-flight requests (``server.drain_s``), then the run folder gets
queries.parquet, timeline.parquet, instances.parquet, actions.csv and summary.json, as a run
does. Bad input ends with a one-line error and exit status 2 (the folder holds error.txt).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from experiments.outputs import retire_previous, write_error
from infaas_sim.errors import InputError

log = logging.getLogger("infaas_sim.serve")


@hydra.main(version_base=None, config_path="conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    from experiments.serving.server import Serving  # fastapi and uvicorn: the serve extra

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    retire_previous(out_dir)
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    try:
        serving = Serving({str(k): v for k, v in plain.items()}, out_dir)
    except InputError as exc:
        message = f"error: {exc}"
        write_error(out_dir, message)
        log.error(message)
        print(message, file=sys.stderr)
        sys.exit(2)
    log.info("infaas-serve on %s -> %s", serving.url, out_dir)
    result = serving.serve()
    s = result.summary
    line = (
        f"infaas-serve: {s['requests']['total']} requests, {s['queries']} queries: served {s['served']}, "
        f"rejected {s['rejected']}, failed {s['failed']}; p99 {s['latency_p99_ms']:.1f} ms -> {out_dir}"
    )
    log.info(line)
    print(line, file=sys.stderr)


def cli() -> None:
    """The console script."""
    from experiments.run import check_overrides, register_plugin_configs

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        print("error: infaas-serve needs the serve extra: pip install -e '.[serve]'", file=sys.stderr)
        sys.exit(2)
    try:
        register_plugin_configs()
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    problem = check_overrides(sys.argv[1:], "serve.yaml")
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
