"""IPA's integer program (policies/ipa_model.py): it agrees with brute force, trades accuracy
for cost as its weights move, and its plans meet the SLA and the load it was given; its
fixed-variant baselines pin one variant per stage that can meet the SLA."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from infaas_sim.errors import ConfigError
from policies.ipa_model import (
    PipelinePlan,
    Stage,
    StageOption,
    Weights,
    brute_force,
    combination_accuracy,
    min_replicas,
    pin_variants,
    solve,
)


def linear(vid: str, acc: float, icpt: float, slope: float, cpu: float, max_batch: int = 8) -> StageOption:
    """A variant whose batch-b latency is ``icpt + slope x b`` ms (whole ms: no rounding edge)."""
    return StageOption(vid, acc, (0.0, *(icpt + slope * b for b in range(1, max_batch + 1))), cpu)


# YOLOv5 n/s/m/x and ResNet 18/50/152 accuracies (reference/policies.md, IPA); latencies and
# cores are made up, growing with accuracy as the real profiles do.
DETECT = Stage("detect", (linear("yolo-n", 0.457, 10, 3, 1), linear("yolo-s", 0.568, 20, 6, 1),
                          linear("yolo-m", 0.641, 40, 12, 2), linear("yolo-x", 0.689, 90, 30, 4)))  # fmt: skip
CLASSIFY = Stage("classify", (linear("r18", 0.698, 8, 2, 1), linear("r50", 0.761, 20, 6, 2),
                              linear("r152", 0.783, 50, 15, 4)))  # fmt: skip
VIDEO = (DETECT, CLASSIFY)


def check_plan(plan: PipelinePlan, stages: tuple[Stage, ...], load: float, sla: float, cap: int = 8) -> None:
    """A plan meets the program's constraints: SLA, throughput, replica and batch bounds."""
    assert plan.ok
    assert [p.stage for p in plan.stages] == [s.name for s in stages]
    assert plan.predicted_latency_ms <= sla + 1e-9
    for p, st in zip(plan.stages, stages, strict=True):
        opt = st.options[p.option]
        assert opt.variant_id == p.variant_id
        assert 1 <= p.batch <= min(cap, opt.max_batch)
        assert 1 <= p.replicas <= 100
        assert p.replicas * opt.throughput[p.batch] >= load - 1e-3
        assert p.batch_wait_ms == pytest.approx(1000 * (p.batch - 1) / load if p.batch > 1 else 0.0)


@pytest.mark.parametrize("method", ["sum", "average", "product"])
@pytest.mark.parametrize(("load", "sla"), [(5.0, 150.0), (40.0, 200.0), (120.0, 400.0), (300.0, 120.0)])
def test_solver_agrees_with_brute_force(method: str, load: float, sla: float) -> None:
    for alpha, beta, gamma in ((2, 1, 1e-6), (10, 0.5, 1e-6), (0.05, 1, 0.0)):
        w = Weights(alpha=alpha, beta=beta, gamma=gamma, accuracy_method=method)
        got = solve(VIDEO, load, sla, w)
        want = brute_force(VIDEO, load, sla, w)
        assert got.status == want.status
        if not want.ok:
            continue
        assert got.objective == pytest.approx(want.objective, abs=1e-4)
        check_plan(got, VIDEO, load, sla)


def test_random_small_pipelines_agree_with_brute_force() -> None:
    rng = np.random.default_rng(7)
    for _ in range(25):
        stages = []
        for s in range(int(rng.integers(1, 4))):
            opts = []
            for k in range(int(rng.integers(1, 4))):
                acc, icpt, slope = float(rng.uniform(0.4, 0.9)), int(rng.integers(2, 60)), int(rng.integers(1, 20))
                opts.append(linear(f"v{s}{k}", acc, icpt, slope, float(rng.choice([1, 2, 4])), int(rng.integers(1, 9))))
            stages.append(Stage(f"s{s}", tuple(opts)))
        load, sla = float(rng.uniform(1, 200)), float(rng.uniform(30, 400))
        w = Weights(alpha=float(rng.uniform(0, 20)), beta=float(rng.uniform(0, 2)), gamma=1e-3,
                    accuracy_method=str(rng.choice(["sum", "average", "product"])))  # fmt: skip
        got, want = solve(stages, load, sla, w), brute_force(stages, load, sla, w)
        assert got.status == want.status
        if want.ok:
            assert got.objective == pytest.approx(want.objective, abs=1e-4)
            check_plan(got, tuple(stages), load, sla)


def test_batch_wait_enters_the_latency_constraint() -> None:
    # One variant at 10 + 1 x b ms: at 10 requests/s, batch 2 waits 100 ms to fill, so a
    # 100 ms SLA allows batch 1 only, while 1000 requests/s allows a large batch.
    st = (Stage("s", (linear("v", 0.7, 10, 1, 1),)),)
    w = Weights(alpha=1, beta=1, gamma=1e-3)
    assert solve(st, 10, 100, w).stages[0].batch == 1
    big = solve(st, 1000, 100, w)
    # Batch b needs ceil(1000 / (1000 b / (10 + b))) replicas: 3 from batch 6 on, 4 at batch
    # 5; gamma's batch penalty breaks the tie towards the smallest batch with the fewest.
    assert (big.stages[0].batch, big.stages[0].replicas) == (6, 3)


def test_more_load_buys_more_replicas_never_fewer() -> None:
    w = Weights(alpha=10, beta=0.5)
    cores = [solve(VIDEO, load, 300, w).cost_cores for load in (5, 20, 80, 200, 400)]
    assert cores == sorted(cores)
    assert cores[-1] > cores[0]


def test_choice_moves_from_accurate_to_cheap_as_beta_grows() -> None:
    # The scenario: sweep beta against alpha; accuracy and cost both fall.
    plans = [solve(VIDEO, 60, 400, Weights(alpha=10, beta=beta)) for beta in (0.01, 0.5, 2, 10, 100)]
    accs = [p.accuracy for p in plans]
    costs = [p.cost_cores for p in plans]
    assert accs == sorted(accs, reverse=True)
    assert costs == sorted(costs, reverse=True)
    assert [p.variant_id for p in plans[0].stages] == ["yolo-x", "r152"]  # the most accurate
    assert costs[-1] == solve(VIDEO, 60, 400, Weights(alpha=0, beta=1)).cost_cores  # the cheapest


def test_choice_moves_from_cheap_to_accurate_as_alpha_grows() -> None:
    plans = [solve(VIDEO, 60, 400, Weights(alpha=alpha, beta=1)) for alpha in (0.0, 0.5, 2, 10, 100)]
    accs = [p.accuracy for p in plans]
    assert accs == sorted(accs)
    assert accs[-1] > accs[0]
    assert [p.variant_id for p in plans[0].stages] == ["yolo-n", "r18"]


def test_tight_sla_forces_fast_variants_even_when_accuracy_pays() -> None:
    w = Weights(alpha=100, beta=0.01)
    loose = solve(VIDEO, 60, 1000, w)
    tight = solve(VIDEO, 60, 40, w)
    assert tight.ok
    assert tight.predicted_latency_ms <= 40
    assert tight.accuracy < loose.accuracy


def test_infeasible_when_nothing_fits() -> None:
    plan = solve(VIDEO, 60, 10, Weights())  # the fastest pair takes 13 + 10 ms
    assert plan.status == "infeasible"
    assert not plan.ok
    assert plan.stages == ()
    assert brute_force(VIDEO, 60, 10, Weights()).status == "infeasible"
    # Beyond 100 replicas of the fastest option: infeasible too.
    assert solve(VIDEO, 1e6, 1000, Weights()).status == "infeasible"


def test_zero_load_means_batch_one_and_one_replica() -> None:
    plan = solve(VIDEO, 0.0, 400, Weights(alpha=10, beta=0.5))
    assert plan.ok
    assert all(p.batch == 1 and p.replicas == 1 for p in plan.stages)


def test_product_accuracy_is_the_product_of_stage_accuracies() -> None:
    w = Weights(alpha=10, beta=0.0, gamma=0.0, accuracy_method="product")
    plan = solve(VIDEO, 10, 2000, w)
    assert plan.accuracy == pytest.approx(100 * 0.689 * 0.783)


def test_rank_normalisation_uses_ranks() -> None:
    w = Weights(alpha=1, beta=0.0, gamma=0.0, normalize=True)
    plan = solve(VIDEO, 10, 2000, w)
    assert plan.accuracy == pytest.approx(100 * (4 / 4 + 3 / 3))


def test_min_replicas_is_the_throughput_constraint() -> None:
    opt = linear("v", 0.7, 10, 0, 1)  # 100 requests/s at batch 1
    assert [min_replicas(opt, 1, x) for x in (0, 1, 100, 100.001, 250)] == [1, 1, 1, 2, 3]


def test_same_inputs_same_plan() -> None:
    w = Weights(alpha=10, beta=0.5)
    assert solve(VIDEO, 77, 250, w) == solve(VIDEO, 77, 250, w)


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [({"alpha": -1}, "alpha"), ({"accuracy_method": "max"}, "accuracy_method"), ({"beta": "x"}, "beta")],
)
def test_bad_weights_are_clear_errors(kwargs: dict[str, object], msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        Weights(**kwargs)  # type: ignore[arg-type]


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="SLA"):
        solve(VIDEO, 1, 0)
    with pytest.raises(ConfigError, match="load"):
        solve(VIDEO, math.nan, 100)
    with pytest.raises(ConfigError, match="no variant"):
        Stage("empty", ())
    with pytest.raises(ConfigError, match="latencies"):
        StageOption("v", 0.5, (0.0,), 1)


def test_enumeration_is_exhaustive_for_one_stage() -> None:
    # One stage: the optimum is the best (variant, batch) by direct computation.
    w = Weights(alpha=10, beta=0.5, gamma=1e-6)
    load, sla = 50.0, 120.0
    best = -math.inf
    for k, b in itertools.product(range(len(DETECT.options)), range(1, 9)):
        o = DETECT.options[k]
        lat = o.latency_ms[b] + 1000 * (b - 1) / load
        n = min_replicas(o, b, load)
        if lat <= sla:
            best = max(best, 10 * 100 * o.accuracy - 0.5 * o.base_cpu * n - 1e-6 * b)
    assert solve((DETECT,), load, sla, w).objective == pytest.approx(best, abs=1e-6)


# --- the fixed-variant baselines ------------------------------------------------------------
def pinned_ids(stages: tuple[Stage, ...]) -> tuple[str, ...]:
    assert all(len(st.options) == 1 for st in stages)
    return tuple(st.options[0].variant_id for st in stages)


def test_pinning_picks_the_most_accurate_and_the_cheapest_variants_under_a_loose_sla() -> None:
    assert pinned_ids(pin_variants(VIDEO, 400, "most_accurate")) == ("yolo-x", "r152")
    # yolo-n and yolo-s both take 1 core: the faster one is the cheapest.
    assert pinned_ids(pin_variants(VIDEO, 400, "cheapest")) == ("yolo-n", "r18")
    assert pin_variants(VIDEO, 400, "adaptive") == VIDEO


def test_the_most_accurate_pin_is_the_most_accurate_combination_that_fits_the_sla() -> None:
    # Batch 1: yolo-x 120 + r152 65 = 185 ms exceeds 150 ms. Of the pairs that fit, yolo-x +
    # r50 (146 ms) is the most accurate, not yolo-m + r152 (117 ms) nor the per-stage best.
    w = Weights()
    for method in ("sum", "product"):
        wm = Weights(accuracy_method=method)
        got = pinned_ids(pin_variants(VIDEO, 150, "most_accurate", wm))
        assert got == ("yolo-x", "r50")
        fits = [(d, c) for d in DETECT.options for c in CLASSIFY.options
                if d.latency_ms[1] + c.latency_ms[1] <= 150]  # fmt: skip
        best = max(combination_accuracy([d.accuracy, c.accuracy], wm) for d, c in fits)
        assert combination_accuracy([0.689, 0.761], wm) == pytest.approx(best)
    plan = solve(pin_variants(VIDEO, 150, "most_accurate", w), 30, 150, w)
    assert plan.ok and [p.variant_id for p in plan.stages] == ["yolo-x", "r50"]


def test_a_pinned_program_chooses_only_batch_and_replicas() -> None:
    w = Weights(alpha=10, beta=2)
    # Where the adaptive program moves to yolo-m + r50, the pinned ones keep their pair and buy
    # replicas instead.
    assert [s.variant_id for s in solve(VIDEO, 200, 400, w).stages] == ["yolo-m", "r50"]
    for policy, want in (("most_accurate", ["yolo-x", "r152"]), ("cheapest", ["yolo-n", "r18"])):
        stages = pin_variants(VIDEO, 400, policy, w)
        plans = [solve(stages, load, 400, w) for load in (5, 40, 200, 600)]
        assert all(p.ok and [s.variant_id for s in p.stages] == want for p in plans)
        reps = [sum(s.replicas for s in p.stages) for p in plans]
        assert reps == sorted(reps) and reps[-1] > reps[0]


def test_when_no_combination_fits_the_sla_the_pin_ignores_it() -> None:
    # Nothing fits 10 ms (the fastest pair takes 23): the pins are made as if without an SLA,
    # and the program reports the SLA infeasible as it does for the adaptive policy.
    assert pinned_ids(pin_variants(VIDEO, 10, "most_accurate")) == ("yolo-x", "r152")
    assert pinned_ids(pin_variants(VIDEO, 10, "cheapest")) == ("yolo-n", "r18")
    assert solve(pin_variants(VIDEO, 10, "cheapest"), 60, 10).status == "infeasible"


def test_an_unknown_variant_policy_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="variant_policy must be one of adaptive, most_accurate, cheapest"):
        pin_variants(VIDEO, 400, "largest")
