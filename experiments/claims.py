"""The papers' headline claims against what a sweep measured: the claims table of report.md.

Each :class:`Claim` is one paper's headline number as a comparison of two arms on one metric:
the system's arm (``reference``) against its baselines, over the scenarios where both ran.
A claim's measured value is computed per (scenario, baseline) cell as a ratio of seed means,
with a 95% interval from a paired bootstrap over seeds (the same seed draws the same arrivals
for every arm, so seeds pair; 2,000 resamples, a fixed generator, so the table is the same on
every draw). "Up to" claims take the cell with the best point estimate; "average" claims take
the geometric mean of the cells' finite ratios (and of their interval ends). A claim against
several baselines gets a second row against each scenario's *strongest* baseline (the least
favourable cell of each scenario, then the best scenario), so that a claim that holds only
against a weak baseline shows it.

Kinds of measure (``better`` is the direction the paper claims):

- ``times_more``: reference / baseline (throughput, goodput), better above 1;
- ``times_fewer``: baseline / reference (violations, cost), better above 1;
- ``pct_fewer``: 1 - reference / baseline (InfAdapter's "65% fewer"), better above 0;
- ``pct_more``: reference / baseline - 1 (IPA's "35% higher accuracy"), better above 0;
- ``pct_at_most``: reference / baseline - 1 must stay below the claimed bound (IPA's "under
  5% more cost").

Verdicts: **holds** when the interval's far side clears the claimed value (its lower end is at
least the claim; for an "at most" claim its upper end is at most the bound); **holds in
direction only** when the interval excludes no difference on the paper's side but does not
reach the claim (for an "at most" claim: the point estimate is within the bound, the interval
is not); **does not hold** otherwise. A ratio whose denominator is zero is infinite (the
system had no violations, its baseline some): it counts as clearing any claimed factor when its
whole interval is infinite. A percentage against a zero baseline is undefined: that cell is
left out, and the verdict says so. An interval lying within 0.5% of no difference is reported as
no difference, not as a loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from experiments.comparison import Job, seed_values

KINDS = ("times_more", "times_fewer", "pct_fewer", "pct_more", "pct_at_most")
BOOTSTRAP = 2000
# Ratios this close to no difference, interval and all, are reported as no difference (the VM
# cost of arms on the same fixed node pool differs only by their drain times).
SAME = 0.005


@dataclass(frozen=True)
class Claim:
    paper: str
    text: str  # the headline, as the paper words it
    metric: str  # a summary key (or a derived table column: core_hours, util_cpu, ...)
    kind: str
    claimed: float  # the claimed ratio (times_*) or fraction (pct_*)
    reference: str  # the system's arm
    baselines: tuple[str, ...]
    average: bool = False  # a geometric mean over cells, not the best cell
    scenarios: tuple[str, ...] | None = None  # None: every scenario where both ran
    note: str = ""  # how this measure differs from the paper's, in a few words

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"claim kind must be one of {KINDS}, got {self.kind!r}")


def _measure(kind: str, ref: np.ndarray, base: np.ndarray) -> float:
    r, b = float(np.mean(ref)), float(np.mean(base))
    if kind == "times_more":
        return r / b if b > 0 else math.inf
    if kind == "times_fewer":
        return b / r if r > 0 else (math.inf if b > 0 else 1.0)
    if kind == "pct_fewer":
        return 1 - r / b if b > 0 else math.nan
    return r / b - 1 if b > 0 else math.nan  # pct_more, pct_at_most


def _neutral(kind: str) -> float:
    return 1.0 if kind.startswith("times") else 0.0


@dataclass(frozen=True)
class Cell:
    scenario: str
    baseline: str
    point: float
    low: float
    high: float
    seeds: int


def cells(jobs: Sequence[Job], claim: Claim) -> list[Cell]:
    """Every (scenario, baseline) comparison of ``claim`` with its paired bootstrap interval."""
    out = []
    scenarios = claim.scenarios or tuple(dict.fromkeys(j.scenario for j in jobs))
    for sc in scenarios:
        ref = seed_values(jobs, sc, claim.reference, claim.metric)
        for base_arm in claim.baselines:
            base = seed_values(jobs, sc, base_arm, claim.metric)
            seeds = sorted(s for s in set(ref) & set(base) if not (math.isnan(ref[s]) or math.isnan(base[s])))
            if not seeds:
                continue
            r = np.array([ref[s] for s in seeds])
            b = np.array([base[s] for s in seeds])
            point = _measure(claim.kind, r, b)
            rng = np.random.default_rng(0)
            draws = rng.integers(0, len(seeds), size=(BOOTSTRAP, len(seeds)))
            boot = np.sort(np.array([_measure(claim.kind, r[d], b[d]) for d in draws]))
            boot = boot[~np.isnan(boot)]
            if len(seeds) < 2 or not len(boot):
                low, high = math.nan, math.nan
            else:  # percentiles by rank: the draws may hold inf (a zero denominator)
                low, high = float(boot[int(0.025 * len(boot))]), float(boot[math.ceil(0.975 * len(boot)) - 1])
            out.append(Cell(sc, base_arm, point, low, high, len(seeds)))
    return out


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    cell: Cell | None  # the cell the verdict rests on (None: average over cells, or nothing ran)
    point: float
    low: float
    high: float
    verdict: str
    reason: str
    n_cells: int


def _fmt(kind: str, v: float) -> str:
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.2f}x" if kind.startswith("times") else f"{v:+.0%}"


def strongest(found: Sequence[Cell], kind: str) -> list[Cell]:
    """Per scenario, the cell of the baseline that does best against the system (the least
    favourable ratio for the claim): an "up to" claim over these is the claim against each
    scenario's strongest baseline, not its weakest."""
    out: dict[str, Cell] = {}
    for c in found:
        if math.isnan(c.point):
            continue
        prev = out.get(c.scenario)
        if prev is None or ((c.point > prev.point) if kind == "pct_at_most" else (c.point < prev.point)):
            out[c.scenario] = c
    return list(out.values())


def judge(jobs: Sequence[Job], claim: Claim, against_strongest: bool = False) -> Verdict:
    found = cells(jobs, claim)
    if against_strongest:
        found = strongest(found, claim.kind)
    if not found:
        return Verdict(claim, None, math.nan, math.nan, math.nan, "not measured",
                       "none of its arms ran in this sweep", 0)  # fmt: skip
    kind, claimed, neutral = claim.kind, claim.claimed, _neutral(claim.kind)
    if claim.average:
        finite = [c for c in found if math.isfinite(c.point) and c.point > 0]
        if not finite:
            return Verdict(claim, None, math.nan, math.nan, math.nan, "not measured", "no finite ratio", len(found))
        point = float(np.exp(np.mean([math.log(c.point) for c in finite])))
        low = float(np.exp(np.mean([math.log(max(c.low, 1e-12)) for c in finite if math.isfinite(c.low)])))
        high = float(np.exp(np.mean([math.log(c.high) for c in finite if math.isfinite(c.high)])))
        cell = None
        where = f"geometric mean of {len(finite)} cells"
    else:
        usable = [c for c in found if not math.isnan(c.point)]
        dropped = len(found) - len(usable)
        if not usable:
            return Verdict(claim, None, math.nan, math.nan, math.nan, "not measured",
                           "every baseline cell has a zero mean", len(found))  # fmt: skip
        # The best cell for the claim; an "at most" claim rests on the worst (it must hold everywhere).
        cell = min(usable, key=lambda c: c.point) if kind == "pct_at_most" else max(usable, key=lambda c: c.point)
        point, low, high = cell.point, cell.low, cell.high
        where = f"{cell.scenario} vs {cell.baseline}, {cell.seeds} seeds"
        if dropped:
            where += f"; {dropped} cell(s) with a zero baseline left out"
    if kind == "pct_at_most":
        if not math.isnan(high) and high <= claimed:
            verdict, why = "holds", f"the interval's upper end {_fmt(kind, high)} is within {_fmt(kind, claimed)}"
        elif point <= claimed:
            verdict, why = "holds in direction only", f"the mean is within {_fmt(kind, claimed)}, the interval is not"
        else:
            verdict, why = "does not hold", f"{_fmt(kind, point)} exceeds {_fmt(kind, claimed)}"
    elif math.isnan(low):
        verdict = "holds in direction only" if point >= claimed else "does not hold"
        why = "one seed: no interval"
    elif all(abs(x - neutral) < SAME for x in (point, low, high)):
        verdict, why = "does not hold", f"no difference: the interval lies within {SAME:.1%} of none"
    elif low >= claimed:
        verdict, why = "holds", f"the interval's lower end {_fmt(kind, low)} reaches the claimed {_fmt(kind, claimed)}"
    elif low > neutral:
        verdict = "holds in direction only"
        why = f"better than the baseline (lower end {_fmt(kind, low)}) but short of the claimed {_fmt(kind, claimed)}"
    elif point > neutral:
        verdict, why = "does not hold", f"better on average but the interval reaches {_fmt(kind, low)}: not significant"
    else:
        verdict, why = "does not hold", f"the system does worse than its baseline ({_fmt(kind, point)})"
    return Verdict(claim, cell, point, low, high, verdict, f"{why} ({where})", len(found))


def claims_markdown(jobs: Sequence[Job], claims: Sequence[Claim], title: str = "Claims") -> str:
    """The claims table, then every cell behind it."""
    lines = [f"## {title}\n", "| paper | claim | measured | 95% interval | verdict | why |", "|---" * 6 + "|"]
    details = [
        "\n### Every comparison behind the claims\n",
        "| paper | claim | scenario | baseline | measured | 95% interval | seeds |",
        "|---" * 7 + "|",
    ]
    for claim in claims:
        note = f" ({claim.note})" if claim.note else ""
        several = len(claim.baselines) > 1 and not claim.average
        for against_strongest in (False, True) if several else (False,):
            v = judge(jobs, claim, against_strongest)
            interval = f"[{_fmt(claim.kind, v.low)}, {_fmt(claim.kind, v.high)}]"
            which = "; against each scenario's strongest baseline" if against_strongest else ""
            lines.append(f"| {claim.paper} | {claim.text}{note}{which} | {_fmt(claim.kind, v.point)} | {interval} | "
                         f"**{v.verdict}** | {v.reason} |")  # fmt: skip
        for c in cells(jobs, claim):
            ci = f"[{_fmt(claim.kind, c.low)}, {_fmt(claim.kind, c.high)}]"
            details.append(f"| {claim.paper} | {claim.text} | {c.scenario} | {c.baseline} | "
                           f"{_fmt(claim.kind, c.point)} | {ci} | {c.seeds} |")  # fmt: skip
    return "\n".join(lines) + "\n" + "\n".join(details) + "\n"


# --- the claims of each experiment ----------------------------------------------------------------
INFAAS_BASELINES = tuple(f"{b}_{hw}" for b in ("clipper_plus", "sagemaker_plus") for hw in ("cpu", "gpu", "inferentia"))
INFAAS_CLAIMS = (
    Claim("INFaaS", "up to 1.3x higher throughput", "goodput_qps", "times_more", 1.3, "infaas", INFAAS_BASELINES,
          note="goodput: queries served within their SLO per second"),
    Claim("INFaaS", "1.6x fewer SLO violations", "slo_violation_rate", "times_fewer", 1.6, "infaas",
          INFAAS_BASELINES),
    Claim("INFaaS", "up to 21.6x lower cost", "total_cost", "times_fewer", 21.6, "infaas", INFAAS_BASELINES),
    Claim("INFaaS", "8.5x lower cost on average", "total_cost", "times_fewer", 8.5, "infaas", INFAAS_BASELINES,
          average=True),
)  # fmt: skip
BEYOND_CLAIMS = (
    Claim("Themis", "over 10x fewer SLO violations than horizontal-only", "slo_violation_rate", "times_fewer", 10.0,
          "themis", ("themis_horizontal",)),
    Claim("Themis", "over 10x fewer SLO violations than vertical-only", "slo_violation_rate", "times_fewer", 10.0,
          "themis", ("themis_vertical",)),
    Claim("IPA", "up to 35% higher accuracy than a fixed cheap variant", "mean_accuracy", "pct_more", 0.35, "ipa",
          ("ipa_cheapest",), note="raw mean accuracy of served queries; the paper normalises per stage"),
    Claim("IPA", "for under 5% more cost", "core_hours", "pct_at_most", 0.05, "ipa", ("ipa_cheapest",),
          note="cost as IPA's objective counts it: allocated CPU core-hours"),
    Claim("IPA", "for under 5% more cost", "total_cost", "pct_at_most", 0.05, "ipa", ("ipa_cheapest",),
          note="VM cost instead (the same on a fixed node pool)"),
    Claim("InfAdapter", "up to 65% fewer SLO violations than VPA", "slo_violation_rate", "pct_fewer", 0.65,
          "infadapter", ("vpa",)),
    Claim("InfAdapter", "up to 33% lower cost than VPA", "core_hours", "pct_fewer", 0.33, "infadapter", ("vpa",),
          note="cost as the paper counts it: allocated CPU core-hours"),
    Claim("InfAdapter", "up to 33% lower cost than VPA", "total_cost", "pct_fewer", 0.33, "infadapter", ("vpa",),
          note="VM cost instead (the same on a fixed node pool)"),
)  # fmt: skip
CLAIMS = {"reproduce": INFAAS_CLAIMS, "beyond": BEYOND_CLAIMS}


def claims_for(jobs: Sequence[Job]) -> str:
    """The claims table of whichever experiment ``jobs`` ran (INFaaS's if its arm ran, the other
    papers' if theirs did); empty if none of them ran."""
    arms = {j.arm for j in jobs}
    parts = []
    if "infaas" in arms:
        parts.append(claims_markdown(jobs, INFAAS_CLAIMS, "INFaaS's claims"))
    if arms & {"themis", "ipa", "infadapter"}:
        parts.append(claims_markdown(jobs, BEYOND_CLAIMS, "Themis', IPA's and InfAdapter's claims"))
    return "\n".join(parts)
