"""The Hydra app: ``infaas-sim [group=option ...] [key=value ...]`` runs one experiment;
``infaas-sim -m policy=static,infaas trace.mean_qps=100,400`` sweeps (joblib launcher).

Each run writes queries/timeline/instances Parquet, summary.json and figures into its own
Hydra run folder. Bad input ends with a one-line error and exit status 2, and the folder
holds only error.txt.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from infaas_sim.errors import InputError
from infaas_sim.experiment import run_experiment
from infaas_sim.outputs import write_error, write_run


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> dict[str, Any] | None:
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    try:
        result = run_experiment({str(k): v for k, v in plain.items()})
    except InputError as exc:
        message = f"error: {exc}"
        write_error(out_dir, message)
        if hc.mode == RunMode.MULTIRUN:
            print(message, file=sys.stderr)
            return {"error": str(exc)}
        print(message, file=sys.stderr)
        sys.exit(2)
    write_run(result, out_dir, figures=bool(plain.get("outputs", {}).get("figures", True)))
    s = result.summary
    print(
        f"{s['policy']}: {s['queries']} queries, served {s['served']}, rejected {s['rejected']}, "
        f"failed {s['failed']}; SLO violation rate {s['slo_violation_rate']:.2%}; "
        f"p99 {s['latency_p99_ms']:.1f} ms; cost ${s['total_cost']:.3f} "
        f"(${s['cost_per_1k_queries']:.5f}/1k); mean accuracy {s['mean_accuracy']:.3f}; "
        f"wall {s['wall_s']:.1f} s -> {out_dir}"
    )
    return json.loads(json.dumps(s, default=str))


def cli() -> None:
    """The console script: the Hydra app. A sweep any of whose jobs failed (each with its
    one-line error in its folder, listed on stderr after the summary) exits with status 2."""
    from experiments import sweep

    sweep.FAILED.clear()
    main()
    if sweep.FAILED:
        sys.exit(2)


if __name__ == "__main__":
    cli()
