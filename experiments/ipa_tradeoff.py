"""IPA's accuracy-vs-cost trade-off curve: sweep its weights, plot accuracy against cost.

``python -m experiments.ipa_tradeoff [--out DIR] [--betas ...] [--alphas ...]`` composes the
Hydra app's configuration (``experiments/conf``: policy=ipa on one image-classification
application, CPU-only cluster, Twitter-like arrivals) once per (alpha, beta) point, as
``infaas-sim -m policy=ipa policy.params.alpha=... policy.params.beta=...`` would, runs each
point, and writes ``tradeoff.csv`` and ``tradeoff.png`` (mean served accuracy against total
cost, one point per weight pair, labelled with beta/alpha) into ``--out``.

The application's SLO is loose (1 s by default) and its accuracy floor 0, so that several
variants fit and the weights, not the requirement, pick among them (IPA's experiments:
alpha 10 against beta 0.5 for most pipelines).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from infaas_sim.experiment import run_experiment

CONF_DIR = Path(__file__).resolve().parent / "conf"
DEFAULT_BETAS = (0.05, 0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 32.0)
# IPA's "bursty" slice of the real Twitter trace, damped by 8 (traces/paper_slices.py).
IPA_BURSTY = ("trace=twitter_real", "trace.start_s=1301160", "trace.length_s=1200", "trace.scale=0.125",
              "+trace.rounding=floor", "run.duration_s=1200", "run.progress=false")  # fmt: skip


def base_config(overrides: Sequence[str]) -> dict[str, Any]:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("config", overrides=["policy=ipa", "workload=single", "cluster=aws_cpu", *overrides])
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    plain.pop("hydra", None)
    return {str(k): v for k, v in plain.items()}


def sweep(alphas: Sequence[float], betas: Sequence[float], slo_ms: float, overrides: Sequence[str]) -> pd.DataFrame:
    cfg = base_config(overrides)
    for app in cfg["workload"]["apps"]:
        app["slo_ms"] = slo_ms
        app["min_accuracy"] = 0.0
    rows = []
    for alpha in alphas:
        for beta in betas:
            cfg["policy"]["params"].update(alpha=float(alpha), beta=float(beta))
            s = run_experiment(cfg).summary
            rows.append({"alpha": alpha, "beta": beta, "accuracy": s["mean_accuracy"], "cost": s["total_cost"],
                         "slo_violation_rate": s["slo_violation_rate"], "served": s["served"],
                         "rejected": s["rejected"], "queries": s["queries"]})  # fmt: skip
    return pd.DataFrame(rows)


def plot(df: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for alpha, g in df.groupby("alpha"):
        g = g.sort_values("cost")
        ax.plot(g["cost"], 100 * g["accuracy"], marker="o", label=f"alpha {alpha:g}")
        for _, r in g.iterrows():
            ax.annotate(f"b={r['beta']:g}", (r["cost"], 100 * r["accuracy"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))  # fmt: skip
    ax.set_xlabel("total cost ($)")
    ax.set_ylabel("mean accuracy of served queries (%)")
    ax.set_title("IPA: accuracy vs cost as its weights move")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("outputs/ipa_tradeoff"))
    ap.add_argument("--alphas", type=float, nargs="+", default=[10.0])
    ap.add_argument("--betas", type=float, nargs="+", default=list(DEFAULT_BETAS))
    ap.add_argument("--slo-ms", type=float, default=1000.0)
    ap.add_argument(
        "overrides", nargs="*", default=list(IPA_BURSTY), help="Hydra overrides (default: IPA's bursty slice)"
    )
    args = ap.parse_args(argv)
    df = sweep(args.alphas, args.betas, args.slo_ms, args.overrides)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "tradeoff.csv", index=False)
    plot(df, args.out / "tradeoff.png")
    print(df.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"-> {args.out / 'tradeoff.png'}")
    return df


if __name__ == "__main__":
    main()
