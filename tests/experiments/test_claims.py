"""The claims table: a paper's headline ratio measured per (scenario, baseline) cell, with a paired
bootstrap interval over seeds, and a verdict that follows from where the interval lies."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from experiments.claims import Claim, cells, claims_for, claims_markdown, judge
from experiments.comparison import Job


def _jobs(values: dict[tuple[str, str], list[float]], metric: str = "slo_violation_rate") -> list[Job]:
    """One job per (scenario, arm, seed) with ``metric`` set to the listed per-seed values."""
    out = []
    for (scenario, arm), per_seed in values.items():
        for seed, v in enumerate(per_seed):
            summary = {"policy": arm, metric: v, "seed": seed}
            out.append(Job(Path(f"{scenario}-{arm}-{seed}"), scenario, arm, arm, summary, None, True, seed))
    return out


FEWER = Claim("P", "2x fewer violations", "slo_violation_rate", "times_fewer", 2.0, "sys", ("base",))


def test_a_clear_win_beyond_the_claim_holds() -> None:
    jobs = _jobs({("s", "sys"): [0.010, 0.011, 0.009, 0.010, 0.010], ("s", "base"): [0.10, 0.11, 0.09, 0.10, 0.12]})
    v = judge(jobs, FEWER)
    assert v.point == pytest.approx(0.104 / 0.010)
    assert 2.0 <= v.low <= v.point <= v.high
    assert v.verdict == "holds"


def test_a_significant_win_short_of_the_claim_holds_in_direction_only() -> None:
    jobs = _jobs({("s", "sys"): [0.080, 0.082, 0.079, 0.081, 0.080], ("s", "base"): [0.10, 0.101, 0.099, 0.10, 0.10]})
    v = judge(jobs, FEWER)
    assert v.low > 1.0 and v.high < 2.0
    assert v.verdict == "holds in direction only"


def test_a_win_within_the_noise_or_a_loss_does_not_hold() -> None:
    noisy = _jobs({("s", "sys"): [0.02, 0.20, 0.05, 0.15, 0.08], ("s", "base"): [0.10, 0.10, 0.10, 0.10, 0.10]})
    assert judge(noisy, FEWER).low < 1.0 and judge(noisy, FEWER).verdict == "does not hold"
    loss = _jobs({("s", "sys"): [0.2] * 5, ("s", "base"): [0.1] * 5})
    v = judge(loss, FEWER)
    assert v.point == pytest.approx(0.5) and v.verdict == "does not hold" and "worse" in v.reason


def test_seeds_pair_across_arms() -> None:
    # Seed-to-seed swings shared by both arms (the same arrivals) cancel in the paired bootstrap:
    # the ratio is 2x in every seed, so the interval is the point.
    base = [0.1, 0.4, 0.2, 0.8, 0.3]
    jobs = _jobs({("s", "sys"): [b / 4 for b in base], ("s", "base"): base})
    (cell,) = cells(jobs, FEWER)
    assert cell.point == pytest.approx(4.0) and cell.low == pytest.approx(4.0) and cell.high == pytest.approx(4.0)
    assert cell.seeds == 5


def test_up_to_claims_rest_on_the_best_cell_and_average_claims_on_the_geometric_mean() -> None:
    jobs = _jobs({("a", "sys"): [0.01] * 3, ("a", "base"): [0.04] * 3, ("b", "sys"): [0.01] * 3,
                  ("b", "base"): [0.01] * 3})  # fmt: skip
    v = judge(jobs, FEWER)
    assert v.point == pytest.approx(4.0) and v.cell is not None and v.cell.scenario == "a"
    avg = judge(jobs, Claim("P", "avg", "slo_violation_rate", "times_fewer", 2.0, "sys", ("base",), average=True))
    assert avg.point == pytest.approx(2.0)  # sqrt(4 x 1)


def test_no_violations_against_some_is_an_infinite_ratio_that_clears_any_claim() -> None:
    jobs = _jobs({("s", "sys"): [0.0] * 5, ("s", "base"): [0.05, 0.06, 0.04, 0.05, 0.05]})
    v = judge(jobs, FEWER)
    assert math.isinf(v.point) and math.isinf(v.low) and v.verdict == "holds"


def test_percentage_claims_and_an_at_most_bound() -> None:
    acc = _jobs({("s", "sys"): [0.80] * 5, ("s", "base"): [0.70, 0.71, 0.69, 0.70, 0.70]}, "mean_accuracy")
    more = Claim("IPA", "35% more accuracy", "mean_accuracy", "pct_more", 0.35, "sys", ("base",))
    v = judge(acc, more)
    assert v.point == pytest.approx(0.80 / 0.70 - 1) and v.verdict == "holds in direction only"
    cost = _jobs({("s", "sys"): [1.02, 1.03, 1.01, 1.02, 1.02], ("s", "base"): [1.0] * 5}, "total_cost")
    bound = Claim("IPA", "under 5% more cost", "total_cost", "pct_at_most", 0.05, "sys", ("base",))
    assert judge(cost, bound).verdict == "holds"
    dear = _jobs({("s", "sys"): [1.2] * 5, ("s", "base"): [1.0] * 5}, "total_cost")
    assert judge(dear, bound).verdict == "does not hold"
    fewer = Claim("InfAdapter", "65% fewer", "slo_violation_rate", "pct_fewer", 0.65, "sys", ("base",))
    v = judge(_jobs({("s", "sys"): [0.02] * 5, ("s", "base"): [0.10] * 5}), fewer)
    assert v.point == pytest.approx(0.8) and v.verdict == "holds"


def test_one_seed_gives_no_interval_and_says_so() -> None:
    v = judge(_jobs({("s", "sys"): [0.01], ("s", "base"): [0.1]}), FEWER)
    assert math.isnan(v.low) and "one seed" in v.reason


def test_the_markdown_table_has_a_row_per_claim_and_every_cell_behind_it() -> None:
    jobs = _jobs({("a", "sys"): [0.01] * 3, ("a", "base"): [0.04] * 3, ("b", "sys"): [0.01] * 3,
                  ("b", "base"): [0.03] * 3})  # fmt: skip
    text = claims_markdown(jobs, [FEWER], "Claims")
    assert text.startswith("## Claims")
    assert sum(1 for line in text.splitlines() if line.startswith("| P | 2x fewer violations |")) == 3  # 1 + 2 cells
    assert "**holds**" in text
    absent = claims_markdown(jobs, [Claim("Q", "x", "slo_violation_rate", "times_fewer", 2, "nobody", ("base",))])
    assert "not measured" in absent


def test_the_experiment_is_recognised_by_its_arms() -> None:
    jobs = _jobs({("s", "infaas"): [0.01] * 2, ("s", "clipper_plus_gpu"): [0.02] * 2})
    assert "INFaaS's claims" in claims_for(jobs) and "Themis" not in claims_for(jobs)
    jobs = _jobs({("s", "themis"): [0.01] * 2, ("s", "themis_vertical"): [0.2] * 2})
    assert "Themis', IPA's and InfAdapter's claims" in claims_for(jobs) and "INFaaS's claims" not in claims_for(jobs)


def test_equal_arms_are_no_difference_not_a_loss() -> None:
    # A fixed node pool bills every arm the same VMs: the VM-cost ratio is exactly neutral.
    jobs = _jobs({("s", "sys"): [2.001, 2.0, 2.001], ("s", "base"): [2.0] * 3}, "total_cost")
    lower = Claim("InfAdapter", "33% lower cost", "total_cost", "pct_fewer", 0.33, "sys", ("base",))
    v = judge(jobs, lower)
    assert v.verdict == "does not hold" and "no difference" in v.reason


def test_a_claim_against_several_baselines_is_also_judged_against_each_scenarios_strongest() -> None:
    # 10x fewer violations than a weak baseline, none fewer than a strong one: "up to" holds
    # against the weak one, and the second row says it does not against the strongest.
    jobs = _jobs({("s", "sys"): [0.010, 0.011, 0.009], ("s", "weak"): [0.10, 0.11, 0.09],
                  ("s", "strong"): [0.010, 0.011, 0.009]})  # fmt: skip
    claim = Claim("P", "2x fewer", "slo_violation_rate", "times_fewer", 2.0, "sys", ("weak", "strong"))
    assert judge(jobs, claim).verdict == "holds"
    v = judge(jobs, claim, against_strongest=True)
    assert v.cell is not None and v.cell.baseline == "strong" and v.verdict == "does not hold"
    text = claims_markdown(jobs, [claim])
    assert "against each scenario's strongest baseline" in text
