"""What a plan leaves in its run folder:

- ``candidates.csv`` (every candidate: mean and 95% half-width of each figure) and ``runs.csv``
  (every candidate x seed);
- ``pareto.csv`` / ``pareto.md`` and ``pareto.png`` (cost against violation rate, a colour
  per policy, the goals as lines);
- ``plan.md`` and ``plan.json``: the recommendation with its intervals, each other policy's
  runner-up, or the binding goal and the nearest configuration;
- ``recommended.yaml``: ``infaas-sim --config-path <run folder> --config-name recommended``
  runs the recommendation (or the nearest) for the plan's first seed.

Everything is rewritten whole after each round, so an interrupted plan keeps what it evaluated.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from experiments.comparison import to_markdown

from .choose import Choice, meets, pareto_front, shortfalls
from .evaluate import Evaluation
from .settings import Goals
from .space import CONF, SearchSpace, policy_yaml_names

# (column prefix, metric): each gets <prefix> (mean) and <prefix>_ci (95% half-width).
FIGURES = (
    ("violation_rate", "slo_violation_rate"),
    ("cost_per_hour", "cost_per_hour"),
    ("mean_accuracy", "mean_accuracy"),
    ("p99_ms", "latency_p99_ms"),
)
GROUPS = ("trace", "workload", "catalog", "cluster", "policy", "executor", "run")


@dataclass(frozen=True)
class PlanContext:
    """What the outputs say about the plan itself."""

    out_dir: Path
    goals: Goals
    space: SearchSpace
    base: Mapping[str, Any]  # the plan's experiment sections (trace, workload, ...)
    choices: Mapping[str, str]  # Hydra's group choices (trace: poisson, ...)
    seeds: tuple[int, ...]
    method: str  # "grid" or "optuna"
    target: int  # candidates the search meant to evaluate
    figures: bool = True


def row(ev: Evaluation, goals: Goals) -> dict[str, Any]:
    c = ev.candidate
    out: dict[str, Any] = {
        "candidate": c.key,
        "policy": c.policy,
        "knobs": json.dumps(c.knob_dict(), sort_keys=True),
        "cluster": " ".join(f"{kind}={t}<={n}" for kind, t, n in c.cluster),
        "seeds": len(ev.runs),
    }
    for name, metric in FIGURES:
        mean, half = ev.interval(metric) if ev.runs else (math.nan, math.nan)
        out[name], out[f"{name}_ci"] = mean, half
    out["meets_goals"] = meets(ev, goals)
    out["error"] = ev.error or ""
    return out


def table(evs: Sequence[Evaluation], goals: Goals) -> pd.DataFrame:
    rows = [row(e, goals) for e in evs]
    df = pd.DataFrame(rows, columns=list(rows[0]) if rows else ["candidate"])
    return df.sort_values(["cost_per_hour", "violation_rate", "candidate"], na_position="last") if rows else df


def _pm(mean: float, half: float, fmt: str) -> str:
    if math.isnan(mean):
        return "n/a"
    return format(mean, fmt) + ("" if math.isnan(half) else f" ± {format(half, fmt)}")


def describe(ev: Evaluation) -> str:
    """One line of figures with their intervals."""
    v, c = ev.interval("slo_violation_rate"), ev.interval("cost_per_hour")
    a, p = ev.interval("mean_accuracy"), ev.interval("latency_p99_ms")
    return (
        f"violation rate {_pm(100 * v[0], 100 * v[1], '.2f')}%, cost ${_pm(c[0], c[1], '.3f')}/h, "
        f"mean accuracy {_pm(a[0], a[1], '.3f')}, p99 {_pm(p[0], p[1], '.1f')} ms "
        f"(95% t-interval over {len(ev.runs)} seed(s))"
    )


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "(none)\n"
    show = df[["candidate", "violation_rate", "violation_rate_ci", "cost_per_hour", "cost_per_hour_ci",
                "mean_accuracy", "p99_ms", "meets_goals"]].copy()  # fmt: skip
    show["violation_rate"] = [
        _pm(100 * m, 100 * h, ".2f") + "%" for m, h in zip(df["violation_rate"], df["violation_rate_ci"], strict=True)
    ]
    show["cost_per_hour"] = [_pm(m, h, ".3f") for m, h in zip(df["cost_per_hour"], df["cost_per_hour_ci"], strict=True)]
    show["meets_goals"] = ["yes" if m else "no" for m in df["meets_goals"]]
    show = show.drop(columns=["violation_rate_ci", "cost_per_hour_ci"])
    return to_markdown(show.set_index("candidate"))


def recommended_config(ctx: PlanContext, ev: Evaluation) -> dict[str, Any]:
    """recommended.yaml: config.yaml's defaults list with the plan's group choices (and the
    candidate's policy), the candidate's full sections on top (same keys as the groups, so the
    merge reproduces them exactly), and the package's conf on Hydra's search path."""
    primary = OmegaConf.load(CONF / "config.yaml")
    assert isinstance(primary, DictConfig)
    plain = OmegaConf.to_container(primary, resolve=False)
    assert isinstance(plain, dict)
    choices = {**ctx.choices, "policy": policy_yaml_names()[ev.candidate.policy]}
    defaults = []
    for entry in plain["defaults"]:
        if isinstance(entry, dict) and len(entry) == 1 and next(iter(entry)) in choices:
            group = next(iter(entry))
            defaults.append({group: choices[group]})
        else:
            defaults.append(entry)
    cfg = ctx.space.config(ctx.base, ev.candidate, ctx.seeds[0])
    cfg["run"]["progress"] = bool(dict(ctx.base["run"]).get("progress", False))
    hydra = dict(plain["hydra"])
    hydra["searchpath"] = ["pkg://experiments.conf"]
    body = {k: cfg[k] for k in GROUPS}
    return {"defaults": defaults, **body, "outputs": plain.get("outputs", {}), "hydra": hydra}


def _header(ctx: PlanContext, ev: Evaluation) -> str:
    where = "meets the goals" if meets(ev, ctx.goals) else "the nearest configuration (does not meet the goals)"
    return (
        f"# infaas-plan's recommendation: {ev.candidate.key}\n# {where}: {describe(ev)}\n"
        f"# This run (seed {ctx.seeds[0]}): {run_command(ctx)}\n"
    )


def run_command(ctx: PlanContext) -> str:
    return f"infaas-sim --config-path {ctx.out_dir.resolve()} --config-name recommended"


def draw(
    path: Path, evs: Sequence[Evaluation], front: Sequence[Evaluation], ctx: PlanContext, pick: Evaluation | None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    good = [e for e in evs if e.ok and not math.isnan(e.mean("slo_violation_rate"))]
    colours = plt.get_cmap("tab10")
    for i, pol in enumerate(sorted({e.candidate.policy for e in good})):
        own = [e for e in good if e.candidate.policy == pol]
        ax.scatter([e.mean("cost_per_hour") for e in own], [e.mean("slo_violation_rate") for e in own],
                   color=colours(i % 10), alpha=0.7, s=22, label=pol)  # fmt: skip
    if front:
        ax.plot([e.mean("cost_per_hour") for e in front], [e.mean("slo_violation_rate") for e in front],
                color="black", lw=1, drawstyle="steps-post", label="Pareto front")  # fmt: skip
    ax.axhline(ctx.goals.max_violation_rate, color="red", ls="--", lw=1, label="violation goal")
    if ctx.goals.budget_per_hour is not None:
        ax.axvline(ctx.goals.budget_per_hour, color="red", ls=":", lw=1, label="budget")
    if pick is not None:
        ax.scatter([pick.mean("cost_per_hour")], [pick.mean("slo_violation_rate")], marker="*", s=220,
                   facecolor="none", edgecolor="black", label="recommended")  # fmt: skip
    ax.set_yscale("symlog", linthresh=max(ctx.goals.max_violation_rate / 2, 1e-4))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:g}%"))
    ax.set_xlabel("cost ($ per hour of traffic)")
    ax.set_ylabel("SLO violation rate (mean over seeds)")
    ax.set_title(f"{len(good)} candidates x {len(ctx.seeds)} seeds")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside: points stay visible
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _replace(path: Path, text: str) -> None:
    """Write whole or not at all: an interrupt never leaves half a table."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_plan(ctx: PlanContext, evs: Sequence[Evaluation], choice: Choice, partial: bool) -> dict[str, Any]:
    """Write every output; returns plan.json's content."""
    out, goals = ctx.out_dir, ctx.goals
    out.mkdir(parents=True, exist_ok=True)
    ordered = sorted(evs, key=lambda e: e.candidate.key)
    all_rows = table(ordered, goals)
    _replace(out / "candidates.csv", all_rows.to_csv(index=False))
    runs = [{"candidate": e.candidate.key, **r} for e in ordered for r in e.runs]
    _replace(out / "runs.csv", pd.DataFrame(runs).to_csv(index=False))
    front = pareto_front(ordered, goals)
    front_rows = table(front, goals)
    _replace(out / "pareto.csv", front_rows.to_csv(index=False))
    _replace(out / "pareto.md", _md_table(front_rows))
    pick = choice.recommended or choice.nearest
    if ctx.figures and ordered:
        draw(out / "pareto.png", ordered, front, ctx, pick)
    if pick is not None:
        text = _header(ctx, pick) + OmegaConf.to_yaml(OmegaConf.create(recommended_config(ctx, pick)))
        _replace(out / "recommended.yaml", text)
    info: dict[str, Any] = {
        "status": "met" if choice.recommended else ("not met" if pick else "no result"),
        "partial": partial,
        "message": choice.message,
        "goals": {k: getattr(goals, k) for k in ("max_violation_rate", "budget_per_hour", "min_accuracy", "strict")},
        "search": ctx.method,
        "space_size": ctx.space.size(),
        "evaluated": len(evs),
        "target": ctx.target,
        "seeds": list(ctx.seeds),
        "skipped_policies": dict(ctx.space.skipped),
        "binding": list(choice.binding),
        "recommended": None if pick is None else _detail(pick, goals),
        "runners_up": {p: row(e, goals) for p, e in sorted(choice.runners_up.items())},
    }
    _replace(out / "plan.json", json.dumps(info, indent=2, default=str, allow_nan=True) + "\n")
    _replace(out / "plan.md", _markdown(ctx, ordered, choice, front_rows, partial))
    return info


def _detail(ev: Evaluation, goals: Goals) -> dict[str, Any]:
    return {**row(ev, goals), "runs": list(ev.runs), "shortfall": shortfalls(ev, goals)}


def _markdown(ctx: PlanContext, evs: Sequence[Evaluation], choice: Choice, front: pd.DataFrame, partial: bool) -> str:
    g = ctx.goals
    goals = [f"violation rate <= {100 * g.max_violation_rate:g}%"]
    if g.budget_per_hour is not None:
        goals.append(f"cost <= ${g.budget_per_hour:g}/h")
    if g.min_accuracy is not None:
        goals.append(f"mean accuracy >= {g.min_accuracy:g}")
    lines = [
        "# Capacity plan",
        "",
        f"Goals: {', '.join(goals)} (judged on {'the 95% interval’s worse end' if g.strict else 'the mean'}).",
        f"Search: {ctx.method}, {len(evs)} of {ctx.target} candidates evaluated (space: {ctx.space.size()}), "
        f"seeds {list(ctx.seeds)}; trace {ctx.choices.get('trace')}, workload {ctx.choices.get('workload')}, "
        f"cluster {ctx.choices.get('cluster')}.",
    ]
    if partial:
        lines += ["", "**Interrupted: these results cover only the candidates evaluated before the stop.**"]
    for pol, why in sorted(ctx.space.skipped.items()):
        lines.append(f"- skipped {pol}: {why}")
    pick = choice.recommended or choice.nearest
    lines += ["", "## Recommendation" if choice.recommended else "## No configuration meets the goals", ""]
    if choice.recommended is None:
        lines += [choice.message, ""]
    if pick is not None:
        lines += [
            f"`{pick.candidate.key}`", "", describe(pick), "",
            f"Run it: `{run_command(ctx)}` (seed {ctx.seeds[0]}).",
        ]  # fmt: skip
    runners = table(list(choice.runners_up.values()), g)
    lines += ["", "## Runner-up of each other policy", "", _md_table(runners), "## Pareto front", "", _md_table(front)]
    errors = [e for e in evs if not e.ok]
    if errors:
        lines += [f"{len(errors)} candidate(s) failed to run (see candidates.csv), e.g. {errors[0].error}", ""]
    return "\n".join(lines) + "\n"
