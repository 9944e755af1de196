"""Comparison tables and figures from a sweep's outputs (the INFaaS reproduction, issue 4).

A sweep folder holds one job folder per run (``summary.json``, ``queries.parquet``,
``timeline.parquet``, ``instances.parquet``, or ``error.txt``) and Hydra's
``.hydra/overrides.yaml``, which names the job's ``scenario`` (trace and load level) and ``arm``
(policy and its configuration: ``static_peak``, ``static_mean``, ...) and its ``run.seed``.
Jobs without those overrides fall back to scenario ``all`` and the policy's name, so any sweep
can be reported.

Seeds: every (scenario, arm) cell may run several seeds (the same seed draws the same arrivals
for every arm, so seeds pair across arms). A table row is one arm: the mean over its seeds and,
beside each metric, the half-width of its 95% Student-t interval (``<metric>_ci``; NaN with one
seed); ``seeds`` says how many ran.

:func:`write_report` writes, per scenario, ``table_<scenario>.csv`` / ``.md`` and the figures
``<scenario>_{violations,cost,workers,variant_mix,latency_cdf,spread}.png`` (the time series
from each arm's lowest seed; ``spread`` shows every seed), plus ``report.md`` gathering the
tables and the jobs that did not run (a real-trace slice whose file is absent is reported with
its reason, not dropped silently), opened by a claims table when the caller gives one. The
notebook builds the same figures with the same functions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from experiments import figures

# The order arms appear in tables and legends (the system first, then the baselines, then the floors).
ARM_ORDER = (
    "infaas",
    "infaas_cpu",
    "infaas_price",
    "infaas_ilp",
    *(f"{b}_{hw}" for b in ("clipper_plus", "sagemaker_plus", "static") for hw in ("cpu", "gpu", "inferentia")),
    "clipper_plus",
    "sagemaker_plus",
    "static_peak",
    "static_mean",
    "themis",
    "themis_horizontal",
    "themis_vertical",
    "ipa",
    "ipa_paper",
    "ipa_accurate",
    "ipa_cheapest",
    "infadapter",
    "hpa",
    "vpa",
)
SCENARIO_ORDER = (
    *("low", "medium", "high", "low_steady", "medium_steady", "high_steady", "real_infadapter", "real_themis"),
    *("beyond_themis", "beyond_infadapter", "beyond_synthetic", "beyond_synthetic_steady", "beyond_pipeline",
      "beyond_pipeline_synthetic"),
)  # fmt: skip
# The arm others are compared with: INFaaS, or INFaaS on the CPU-only cluster where that is the one.
REFERENCES = ("infaas", "infaas_cpu")

# (summary key or derived column, header) of a comparison table.
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("policy", "policy"),
    ("seeds", "seeds"),
    ("queries", "queries"),
    ("throughput_qps", "throughput (QPS)"),
    ("goodput_qps", "goodput (QPS)"),
    ("slo_violation_rate", "SLO violation rate"),
    ("rejected", "rejected"),
    ("latency_p99_ms", "p99 latency (ms)"),
    ("total_cost", "cost ($)"),
    ("cost_per_1k_queries", "$ per 1k queries"),
    ("mean_accuracy", "mean accuracy"),
    ("core_hours", "CPU core-hours"),
    ("util_gpu", "GPU utilisation"),
    ("util_cpu", "CPU utilisation"),
    ("util_inferentia", "Inferentia utilisation"),
)
# The columns whose 95% interval over seeds the tables carry (``<key>_ci``) and print as ``mean ± ci``.
CI_COLUMNS = ("throughput_qps", "goodput_qps", "slo_violation_rate", "total_cost", "mean_accuracy", "core_hours")
_NUMERIC = tuple(k for k, _ in TABLE_COLUMNS if k not in ("policy", "seeds"))
FIGURES = ("violations", "cost", "workers", "variant_mix", "latency_cdf", "spread")
_QUERY_COLUMNS = ["app", "arrival", "status", "variant", "latency_ms", "slo_ms", "slo_met"]


@dataclass(frozen=True)
class Job:
    """One run of a sweep: where it is, what it compared, and its summary or its error."""

    path: Path
    scenario: str
    arm: str
    policy: str
    summary: Mapping[str, Any] | None
    error: str | None
    labelled: bool = False  # its scenario or arm came from the sweep's overrides
    seed: int = 0

    @property
    def ok(self) -> bool:
        return self.summary is not None

    def timeline(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / "timeline.parquet")

    def queries(self, columns: Sequence[str] = tuple(_QUERY_COLUMNS)) -> pd.DataFrame:
        return pd.read_parquet(self.path / "queries.parquet", columns=list(columns))

    def instances(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / "instances.parquet")


@dataclass(frozen=True)
class Report:
    """What :func:`write_report` wrote, and the jobs it could not report."""

    tables: dict[str, pd.DataFrame]
    files: list[Path]
    skipped: list[str]


def _labels(job_dir: Path) -> dict[str, str]:
    """``scenario`` and ``arm`` from the job's Hydra overrides (``+scenario=low``), if any."""
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    for item in yaml.safe_load(path.read_text()) or []:
        key, _, value = str(item).lstrip("+~").partition("=")
        if key in ("scenario", "arm", "run.seed"):
            out[key] = value
    return out


def _order(values: Iterable[str], preferred: Sequence[str]) -> list[str]:
    rank = {v: i for i, v in enumerate(preferred)}
    return sorted(set(values), key=lambda v: (rank.get(v, len(rank)), v))


def load_jobs(sweep_dir: str | Path) -> list[Job]:
    """Every job folder under ``sweep_dir`` with a summary or an error, in arm order."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"sweep folder {root} does not exist")
    jobs = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        labels = _labels(d)
        summary = json.loads((d / "summary.json").read_text()) if (d / "summary.json").is_file() else None
        error = (d / "error.txt").read_text().strip() if (d / "error.txt").is_file() else None
        if summary is None and error is None:
            continue  # a job still running, or not a job folder
        policy = str(summary.get("policy")) if summary else labels.get("arm", d.name)
        arm = labels.get("arm") or policy
        seed = int(summary.get("seed", 0)) if summary else int(labels.get("run.seed", 0))
        labelled = "scenario" in labels or "arm" in labels
        jobs.append(Job(d, labels.get("scenario", "all"), arm, policy, summary, error, labelled, seed))
    arm_rank = {a: i for i, a in enumerate(_order((j.arm for j in jobs), ARM_ORDER))}
    return sorted(jobs, key=lambda j: (arm_rank[j.arm], j.seed, j.path.name))


def scenarios(jobs: Sequence[Job]) -> list[str]:
    return _order((j.scenario for j in jobs), SCENARIO_ORDER)


def job_metrics(s: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`TABLE_COLUMNS` of one job's summary (utilisation flattened to ``util_<kind>``;
    None where the arm used no worker of that kind)."""
    row = {key: s.get(key) for key, _ in TABLE_COLUMNS if key != "seeds"}
    util = s.get("utilisation") or {}
    for kind in ("gpu", "cpu", "inferentia"):
        row[f"util_{kind}"] = util.get(kind)
    return row


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of the 95% Student-t interval of ``values`` (NaN half-width for fewer
    than two; NaN values are left out)."""
    from scipy.stats import t as student_t  # lazily: scipy is not needed to run an experiment

    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not xs:
        return math.nan, math.nan
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, math.nan
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
    return mean, float(student_t.ppf(0.975, len(xs) - 1)) * sd / math.sqrt(len(xs))


def seed_values(jobs: Sequence[Job], scenario: str, arm: str, key: str) -> dict[int, float]:
    """Seed -> the value of ``key`` in that seed's run of (scenario, arm); seeds that ran only."""
    out = {}
    for j in jobs:
        if j.scenario == scenario and j.arm == arm and j.summary is not None:
            v = job_metrics(j.summary).get(key)
            out[j.seed] = math.nan if v is None else float(v)
    return out


def comparison_table(jobs: Sequence[Job], scenario: str) -> pd.DataFrame:
    """One row per arm that ran in ``scenario`` (index: arm): the :data:`TABLE_COLUMNS` as the
    mean over the arm's seeds, ``seeds``, and ``<key>_ci`` (95% t half-width) for
    :data:`CI_COLUMNS`."""
    ran = [j for j in jobs if j.scenario == scenario and j.summary is not None]
    groups: dict[str, list[Job]] = {}
    for j in ran:
        groups.setdefault(j.arm, []).append(j)
    rows = {}
    for arm, group in groups.items():
        # An unlabelled sweep (say, one policy over several rates) repeats an arm with the same
        # seed: those are different runs, named by job, not seeds of one cell.
        seeds = [j.seed for j in group]
        if len(set(seeds)) < len(seeds):
            for j in group:
                assert j.summary is not None
                rows[f"{arm} ({j.path.name})"] = {**job_metrics(j.summary), "seeds": 1}
            continue
        metrics = [job_metrics(j.summary) for j in group if j.summary is not None]
        row: dict[str, Any] = {"policy": metrics[0]["policy"], "seeds": len(metrics)}
        for key in _NUMERIC:
            vals = [m[key] for m in metrics if m.get(key) is not None]
            mean, half = t_interval(vals)
            row[key] = None if not vals else mean
            if key in CI_COLUMNS:
                row[f"{key}_ci"] = half
        rows[arm] = row
    columns = [k for k, _ in TABLE_COLUMNS] + [f"{k}_ci" for k in CI_COLUMNS]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    table.index.name = "arm"
    return table


def relative_to(table: pd.DataFrame, reference: str = "infaas") -> pd.DataFrame:
    """Each arm against ``reference``, as ratios of seed means: its throughput (served/s) and
    goodput (served within the SLO/s) / the reference's, its SLO violation rate / the
    reference's (how many times more violations), its cost / the reference's. (The claims
    table gives paired intervals for the ratios a paper claims.)"""
    if reference not in table.index:
        return pd.DataFrame()
    ref = table.loc[reference]

    def ratio(a: Any, b: Any) -> float:
        a, b = float(a if a is not None else math.nan), float(b if b is not None else math.nan)
        return a / b if b != 0 else (math.inf if a > 0 else math.nan)

    return pd.DataFrame(
        {
            f"throughput vs {reference}": [
                ratio(r["throughput_qps"], ref["throughput_qps"]) for _, r in table.iterrows()
            ],
            f"goodput vs {reference}": [ratio(r["goodput_qps"], ref["goodput_qps"]) for _, r in table.iterrows()],
            f"violations vs {reference}": [
                ratio(r["slo_violation_rate"], ref["slo_violation_rate"]) for _, r in table.iterrows()
            ],
            f"cost vs {reference}": [ratio(r["total_cost"], ref["total_cost"]) for _, r in table.iterrows()],
        },
        index=table.index,
    )


def _fmt(value: Any, key: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, str):
        return value
    v = float(value)
    if key == "slo_violation_rate" or key.startswith("util_"):
        return f"{v:.1%}" if key == "slo_violation_rate" else f"{v:.0%}"
    if key in ("queries", "rejected", "seeds"):
        return f"{round(v):,}"
    if key == "core_hours":
        return f"{v:.2f}"
    if key == "total_cost":
        return f"{v:.3f}"
    if key == "cost_per_1k_queries":
        return f"{v:.4f}"
    if key == "mean_accuracy":
        return f"{v:.3f}"
    if math.isinf(v):
        return "inf"
    return f"{v:.2f}" if abs(v) < 100 else f"{v:,.0f}"


def to_markdown(table: pd.DataFrame, headers: Mapping[str, str] | None = None) -> str:
    """A GitHub markdown table (pandas' ``to_markdown`` needs ``tabulate``, not a dependency).
    A column ``<key>`` with a ``<key>_ci`` beside it prints as ``mean ± half-width`` (the
    ``_ci`` column itself is not printed; ``± -`` never appears: one seed prints the value)."""
    headers = dict(headers or dict(TABLE_COLUMNS))
    cols = [str(c) for c in table.columns if not (str(c).endswith("_ci") and str(c)[:-3] in table.columns)]
    lines = [
        "| " + " | ".join([str(table.index.name or "")] + [headers.get(c, c) for c in cols]) + " |",
        "|" + "---|" * (len(cols) + 1),
    ]
    for idx, row in table.iterrows():
        cells = [str(idx)]
        for c in cols:
            cell = _fmt(row[c], c)
            half = row.get(f"{c}_ci") if f"{c}_ci" in table.columns else None
            if cell != "-" and half is not None and not (isinstance(half, float) and math.isnan(half)):
                cell += " ± " + _fmt(half, c)
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def draw_figures(jobs: Sequence[Job], scenario: str, out_dir: str | Path) -> list[Path]:
    """The scenario's figures, side by side across its arms; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cell = [j for j in jobs if j.scenario == scenario and j.ok]
    if not cell:
        return []
    # Time series: each arm's lowest seed (jobs are sorted by arm, then seed).
    ran = [j for i, j in enumerate(cell) if all(k.arm != j.arm for k in cell[:i])]
    timelines = {j.arm: j.timeline() for j in ran}
    queries = {j.arm: j.queries() for j in ran}
    title = f"scenario {scenario}"
    seed_note = f" (seed {min(j.seed for j in ran)})" if len(ran) < len(cell) else ""
    paths = {name: out / f"{scenario}_{name}.png" for name in FIGURES}
    figures.plot_violations_over_time(queries, timelines, paths["violations"], title)
    figures.plot_cost_over_time(timelines, paths["cost"], title)
    figures.plot_workers_by_hardware(timelines, paths["workers"], title)
    infaas = next((j for j in ran if j.arm == "infaas"), next((j for j in ran if j.policy == "infaas"), None))
    if infaas is not None:
        figures.plot_variant_mix(infaas.instances(), queries[infaas.arm], paths["variant_mix"],
                                 f"{title}: infaas's variants")  # fmt: skip
    else:
        paths.pop("variant_mix")
    figures.plot_latency_cdfs(queries, paths["latency_cdf"], title + seed_note)
    spread = {
        arm: {key: seed_values(cell, scenario, arm, key) for key in ("slo_violation_rate", "total_cost")}
        for arm in dict.fromkeys(j.arm for j in cell)
    }
    figures.plot_seed_spread(spread, paths["spread"], title)
    return list(paths.values())


def write_report(
    sweep_dir: str | Path,
    out_dir: str | Path | None = None,
    draw: bool = True,
    claims: Callable[[Sequence[Job]], str] | None = None,
) -> Report:
    """Tables (CSV + markdown) and figures per scenario, and ``report.md``, into ``out_dir``
    (default: the sweep folder). ``claims``: a function of the jobs giving the markdown that
    opens ``report.md`` (the papers' claims against what the sweep measured)."""
    root = Path(sweep_dir)
    jobs = load_jobs(root)  # first: a missing sweep folder must not be created by the report
    out = Path(out_dir) if out_dir is not None else root
    out.mkdir(parents=True, exist_ok=True)
    tables: dict[str, pd.DataFrame] = {}
    files: list[Path] = []
    skipped = [f"{j.scenario}/{j.arm} (seed {j.seed}): {j.error}" for j in jobs if not j.ok]
    doc = [f"# Comparison ({root})\n"]
    seeds = sorted({j.seed for j in jobs})
    doc.append(f"Seeds: {', '.join(map(str, seeds))}. Cells show the mean over seeds ± the half-width of its 95% "
               "Student-t interval.\n")  # fmt: skip
    if claims is not None:
        text = claims(jobs)
        (out / "claims.md").write_text(text)
        files.append(out / "claims.md")
        doc.append(text)
    for sc in scenarios(jobs):
        table = comparison_table(jobs, sc)
        if table.empty:
            errors = sorted({j.error or "" for j in jobs if j.scenario == sc})
            doc.append(f"## {sc}\n\nskipped: {'; '.join(errors)}\n")
            continue
        tables[sc] = table
        csv = out / f"table_{sc}.csv"
        table.to_csv(csv)
        md = out / f"table_{sc}.md"
        reference = next((r for r in REFERENCES if r in table.index), REFERENCES[0])
        rel = relative_to(table, reference)
        text = to_markdown(table)
        if not rel.empty:
            text += "\n" + to_markdown(rel, {c: c for c in rel.columns})
        md.write_text(text)
        files += [csv, md]
        doc.append(f"## {sc}\n\n{text}")
        if draw:
            figs = draw_figures(jobs, sc, out)
            files += figs
            doc.append("\n".join(f"![{p.stem}]({p.name})" for p in figs) + "\n")
    if skipped:
        doc.append("## Jobs that did not run\n\n" + "\n".join(f"- {s}" for s in skipped) + "\n")
    (out / "report.md").write_text("\n".join(doc))
    files.append(out / "report.md")
    return Report(tables, files, skipped)
