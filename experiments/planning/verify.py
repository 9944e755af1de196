"""``--verify``: the recommendation replayed for a short window of the trace twice, on ONNX
Runtime in real time and in simulation, same seed, figures side by side.

Real mode needs a profiled catalog (``python -m infaas_sim.profiling``, e.g. ``catalog=digits``
or ``catalog=builtin``) whose rows have onnxruntime artifacts, and a cluster this machine can be
(``cluster=local``); a recommendation it cannot run is a one-line error, the plan's outputs
stay as they are. docs/real_execution.md has the modes' known differences.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infaas_sim.experiment import run_experiment

FIGURES = ("queries", "served", "rejected", "slo_violation_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
MAX_DRAIN_S = 10.0  # real mode waits out the drain in wall time


def window(cfg: Mapping[str, Any], seconds: float) -> dict[str, Any]:
    """The simulated arm: ``cfg`` over its trace's first ``seconds``."""
    run = dict(cfg["run"])
    run.update(duration_s=min(seconds, float(run["duration_s"])), progress=False,
               drain_s=min(MAX_DRAIN_S, float(run.get("drain_s", MAX_DRAIN_S))))  # fmt: skip
    return {**cfg, "run": run, "executor": {"name": "sim", "params": {}}}


def real(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The same window on the onnxruntime executor (the catalog is its artifact table)."""
    params = {"catalog": str(cfg["catalog"]["path"]), "preload": [], "max_threads": 64}
    return {**cfg, "executor": {"name": "onnxruntime", "params": params}}


def verify(cfg: Mapping[str, Any], seconds: float, out_dir: Path) -> dict[str, dict[str, float]]:
    """Run both arms, write verify.json / verify.md, return {arm: figures}. Raises the
    InputError of a configuration real mode cannot run."""
    sim_cfg = window(cfg, seconds)
    arms = {"simulated": run_experiment(sim_cfg).summary, "real": run_experiment(real(sim_cfg)).summary}
    out = {arm: {k: float(s[k]) for k in FIGURES} for arm, s in arms.items()}
    (out_dir / "verify.json").write_text(json.dumps(out, indent=2) + "\n")
    (out_dir / "verify.md").write_text(table(out, seconds))
    return out


def table(out: Mapping[str, Mapping[str, float]], seconds: float) -> str:
    def cell(k: str, v: float) -> str:
        if math.isnan(v):
            return "-"
        return f"{100 * v:.2f}%" if k == "slo_violation_rate" else f"{v:.2f}" if k.endswith("_ms") else f"{v:.0f}"

    lines = [f"verify: the recommendation over the trace's first {seconds:g} s", "",
             "| figure | simulated | real (onnxruntime) |", "|---|---|---|"]  # fmt: skip
    for k in FIGURES:
        lines.append(f"| {k} | {cell(k, out['simulated'][k])} | {cell(k, out['real'][k])} |")
    return "\n".join(lines) + "\n"
