"""``infadapter``: the variant-set optimisation (exact, checked against brute force), its load
shares (summing to the load, within each variant's capacity, most accurate first), and a run
through a load step: more cores at once, fewer only after four agreeing decisions,
make-before-break redeploys, and dispatch in proportion to the shares."""

from __future__ import annotations

import inspect
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from infaas_sim.catalog import Catalog
from infaas_sim.errors import ConfigError
from infaas_sim.executor import make_executor
from infaas_sim.hardware import HardwareKind, InstanceType
from infaas_sim.policy import make_policy
from infaas_sim.query import Application, Level, Requirement
from infaas_sim.simulation import ClusterSpec, RunResult, RunSpec, Workload, run_simulation
from infaas_sim.snapshot import view_from
from infaas_sim.variant import Variant
from policies.infadapter import (
    InfAdapterPolicy,
    VariantModel,
    fit_variant,
    profiled_capacity,
    solve,
    split_cores,
)

CPU = HardwareKind.CPU
CONF = Path(__file__).resolve().parents[2] / "experiments" / "conf" / "policy" / "infadapter.yaml"
SPEC = ClusterSpec(instance_types={"cpu": InstanceType("cpu", CPU, 8, 32768, 0.384, 20.0)}, type_by_kind={CPU: "cpu"})
APP = Application("a", Requirement(Level.TASK, "cls", "ds", slo_ms=750))


def variant(vid: str, acc: float, ms: float, load_ms: float, arch: str | None = None) -> Variant:
    """A CPU variant profiled on 2 cores that does not batch: ``ms`` per query."""
    return Variant(vid, arch or vid, "cls", "ds", "fw", CPU, "fp32", 2, 1, acc, load_ms, 500, 0.0, ms)


FAMILY = [variant("resnet18", 0.70, 20, 6400), variant("resnet34", 0.73, 40, 6800), variant("resnet50", 0.76, 80, 6800)]


def model(i: int, acc: float, k1: float, k2: float, min_cores: int = 2, load_s: float = 7.0) -> VariantModel:
    return VariantModel(i, f"v{i}", acc, load_s, k1, k2, min_cores)


# --- the optimisation --------------------------------------------------------------------------
def brute_force(models: list[VariantModel], lam: float, current: list[int], total: int) -> tuple[float, bool]:
    """Best objective (and whether it covers the load) over every allocation, looping; a core
    costs 0.05 / 20 (InfAdapter's weight over its 20-core budget) whatever ``total`` is."""
    options = [[0, *range(m.min_cores, total + 1)] for m in models]
    order = sorted(range(len(models)), key=lambda j: -models[j].accuracy)
    max_load = max(m.load_s for m in models)
    best: tuple[bool, float] | None = None
    for alloc in itertools.product(*options):
        if sum(alloc) > total:
            continue
        caps = [m.capacity(c) for m, c in zip(models, alloc, strict=True)]
        left, acc = lam, 0.0
        for j in order:
            take = min(caps[j], left)
            acc += take * models[j].accuracy / lam
            left -= take
        changed = sum(m.load_s for m, c, c0 in zip(models, alloc, current, strict=True) if c != c0)
        obj = acc - 0.05 * sum(alloc) / 20 - 0.001 * changed / max_load
        feasible = sum(caps) + 1e-9 >= lam
        key = (feasible, obj if feasible else sum(caps) + 1e-6 * obj)
        if best is None or key > best:
            best = key
    assert best is not None
    return best[1], best[0]


@pytest.mark.parametrize("seed", range(8))
def test_solver_agrees_with_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    models = [model(j, float(rng.uniform(0.6, 0.8)), float(rng.uniform(1, 12)), float(rng.uniform(-2, 2)),
                    int(rng.integers(2, 4)), float(rng.uniform(5, 9))) for j in range(3)]  # fmt: skip
    total = int(rng.integers(6, 13))
    lam = float(rng.uniform(1, 120))
    current = [int(rng.choice([0, 2, 4])) for _ in models]
    plan = solve(models, lam, current, total)
    best, feasible = brute_force(models, lam, current, total)
    assert plan.feasible == feasible
    if feasible:
        assert plan.objective == pytest.approx(best, abs=1e-9)
    else:
        assert sum(
            m.capacity(c) for m, c in zip(models, plan.cores, strict=True)
        ) + 1e-6 * plan.objective == pytest.approx(best)


@pytest.mark.parametrize("lam", [5.0, 40.0, 90.0, 400.0])
def test_shares_sum_to_the_load_within_each_capacity_most_accurate_first(lam: float) -> None:
    models = [model(0, 0.70, 12.0, 0.0), model(1, 0.73, 6.0, -1.0), model(2, 0.76, 3.0, -0.5, min_cores=3)]
    plan = solve(models, lam, [0, 0, 0], 20)
    caps = [m.capacity(c) for m, c in zip(models, plan.cores, strict=True)]
    assert sum(plan.loads) == pytest.approx(min(lam, sum(caps)))
    assert all(load <= cap + 1e-9 for load, cap in zip(plan.loads, caps, strict=True))
    assert all(c == 0 or c >= m.min_cores for m, c in zip(models, plan.cores, strict=True))
    assert plan.total_cores <= 20
    assert plan.feasible == (lam <= sum(caps) + 1e-9)
    # A less accurate variant gets load only when every more accurate one is full.
    for lo, hi in [(0, 1), (0, 2), (1, 2)]:
        if plan.loads[lo] > 0:
            assert plan.loads[hi] == pytest.approx(caps[hi])


def test_cost_weight_moves_the_choice_from_accurate_to_cheap() -> None:
    models = [model(0, 0.70, 12.0, 0.0), model(1, 0.76, 3.0, 0.0)]
    accurate = solve(models, 20.0, [0, 0], 20, cost_weight=0.0)
    cheap = solve(models, 20.0, [0, 0], 20, cost_weight=1.0)
    assert accurate.loads[1] == pytest.approx(20.0) and accurate.cores[0] == 0
    assert cheap.total_cores < accurate.total_cores and cheap.loads[0] > 0


@pytest.mark.parametrize("budget", [20, 128])
def test_one_core_costs_the_same_whatever_the_core_budget(budget: int) -> None:
    # One variant whose min_cores replica covers the load and is kept (no load-time term): the
    # objective is its accuracy less the cores' cost, so one more minimum core costs one core.
    def objective(min_cores: int) -> float:
        plan = solve([model(0, 0.75, 100.0, 0.0, min_cores=min_cores)], 10.0, [min_cores], budget)
        assert plan.cores == (min_cores,) and plan.feasible
        return plan.objective

    assert objective(2) - objective(3) == pytest.approx(0.05 / 20)
    assert objective(2) == pytest.approx(0.75 - 0.05 * 2 / 20)
    plan = solve([model(0, 0.75, 100.0, 0.0)], 10.0, [2], budget, cost_weight=0.05, reference_cores=40)
    assert plan.objective == pytest.approx(0.75 - 0.05 * 2 / 40)


def test_a_larger_core_budget_that_does_not_bind_leaves_the_plan_as_it_was() -> None:
    # 10 per second: 2 cores of the cheap variant, or 12 of one 0.01 more accurate (0.83 per
    # second a core). 10 more cores are worth 0.01 of accuracy but cost 0.025: the cheap one,
    # with 20 cores to spend or 128.
    models = [model(0, 0.77, 25.0, 0.0), model(1, 0.78, 10 / 12 / 0.8, 0.0)]
    small = solve(models, 10.0, [0, 0], 20)
    large = solve(models, 10.0, [0, 0], 128)
    assert small.cores == large.cores == (2, 0)
    assert large.objective == pytest.approx(small.objective)
    policy = make_policy("infadapter", max_total_cores=128, train="synthetic")
    assert isinstance(policy, InfAdapterPolicy) and policy.reference_cores == 20


def test_the_load_time_term_breaks_ties_towards_keeping_the_current_allocation() -> None:
    models = [model(0, 0.70, 10.0, 0.0), model(1, 0.70, 10.0, 0.0)]  # interchangeable
    assert solve(models, 15.0, [0, 3], 20).cores == (0, 2)  # 2 cores serve 16 per second
    assert solve(models, 15.0, [3, 0], 20).cores == (2, 0)


def test_capacity_is_fitted_linear_in_cores_and_min_cores_meets_the_slo() -> None:
    v = variant("resnet152", 0.78, 500, 8500)  # 500 ms on 2 cores: 909 ms on 1
    m = fit_variant(0, v, 750.0, min_cores=1, max_replica_cores=8)
    assert m is not None and m.min_cores == 2  # 1 core misses the 750 ms SLO
    for c in range(2, 9):
        assert m.capacity(c) == pytest.approx(0.8 * (m.k1 * c + m.k2))
        assert m.capacity(c) == pytest.approx(0.8 * profiled_capacity(v, c, 750.0), rel=0.15)
    assert m.capacity(1) == 0.0
    assert fit_variant(0, variant("huge", 0.8, 5000, 9000), 750.0, 2, 8) is None


def test_the_profile_it_plans_with_is_the_catalogs_per_core_profile_the_cluster_runs_at() -> None:
    # Two rows of one model, at 1 and 8 cores, that an Amdahl law from either row alone
    # mispredicts: planning must read the catalog's profile (what the cluster runs), not the law.
    one = Variant("m-1c", "resnet50", "cls", "ds", "fw", CPU, "fp32", 1, 1, 0.76, 1000, 500, 0.0, 100.0)
    eight = Variant("m-8c", "resnet50", "cls", "ds", "fw", CPU, "fp32", 8, 1, 0.76, 1000, 500, 0.0, 40.0)
    cat = Catalog([one, eight])
    policy = make_policy("infadapter", max_total_cores=16)
    assert isinstance(policy, InfAdapterPolicy)
    view = view_from(cat, [], spec=SPEC)
    policy.setup(view, [APP], {})
    for m, v in zip(policy.models, policy.variants, strict=True):
        for c in range(m.min_cores, 9):
            want = 0.8 * 1000.0 / cat.cpu_latency_ms(v, c, 1)  # batch 1 only: capacity = 1 / latency
            assert m.capacity(c) == pytest.approx(want, rel=0.2)
    assert cat.cpu_latency_ms(one, 8, 1) == pytest.approx(40.0)  # the measured 8-core row
    assert profiled_capacity(one, 8, 750.0) > 1.5 * profiled_capacity(one, 8, 750.0, cat.cpu_latency_ms)  # the law


def test_an_allocation_runs_as_full_replicas_plus_one_for_the_remainder() -> None:
    assert split_cores(0, 8, 2) == []
    assert split_cores(5, 8, 2) == [5]
    assert split_cores(8, 8, 2) == [8]
    assert split_cores(10, 8, 2) == [8, 2]
    assert split_cores(17, 8, 2) == [8, 7, 2]  # a remainder of 1 takes a core from a full one
    assert split_cores(17, 8, 3) == [8, 6, 3]
    assert split_cores(9, 8, 5) == [8]  # no split of 9 fits 5..8 a replica
    assert split_cores(1, 8, 2) == []
    for n in range(2, 40):
        sizes = split_cores(n, 8, 2)
        assert sum(sizes) == n and all(2 <= c <= 8 for c in sizes)
        assert sum(1 for c in sizes if c < 8) <= 2  # only the remainder's replicas change


# --- the policy in a run -----------------------------------------------------------------------
def run(times: np.ndarray, duration: float, **params: Any) -> tuple[RunResult, InfAdapterPolicy]:
    params.setdefault("train", "synthetic")  # the same with or without the real trace here
    policy = make_policy("infadapter", **params)
    assert isinstance(policy, InfAdapterPolicy)
    wl = Workload([APP], times, np.zeros(len(times), dtype=np.int64))
    res = run_simulation(Catalog(FAMILY), wl, policy, make_executor("sim"), SPEC, RunSpec(duration_s=duration))
    return res, policy


@pytest.fixture(scope="module")
def step_run() -> tuple[RunResult, InfAdapterPolicy, int]:
    rng = np.random.default_rng(0)
    segments = [(0, 120, 30.0), (120, 300, 80.0), (300, 600, 20.0)]
    times = np.concatenate([np.sort(rng.uniform(a, b, rng.poisson(r * (b - a)))) for a, b, r in segments])
    res, policy = run(times, 600)
    return res, policy, len(times)


def test_every_query_is_served_and_only_the_step_up_misses_the_slo(step_run: tuple[RunResult, InfAdapterPolicy, int],
                                              conserved: Any) -> None:  # fmt: skip
    res, _, n = step_run
    conserved(res, n)
    assert res.summary["rejected"] == 0 and res.summary["failed"] == 0
    # The step at 120 s is seen by the decision at 150 s, whose replicas are up by 177 s
    # (20 s worker start + 7 s load); misses stay within that reaction and the queue's drain.
    q = res.queries
    late = q.loc[~q["slo_met"].astype(bool), "arrival"]
    assert len(late) > 0 and late.min() >= 120.0 and late.max() < 190.0


def test_more_cores_at_once_fewer_only_after_four_agreeing_decisions(
    step_run: tuple[RunResult, InfAdapterPolicy, int],
) -> None:
    _, policy, _ = step_run
    decisions = {t: cores for t, _, cores, _ in policy.log}
    assert len(policy.applied) >= 3
    ups = downs = 0
    for (_, before), (t, after) in itertools.pairwise(policy.applied):
        assert decisions[t] == after.cores  # what is applied is the decision of that moment
        if after.total_cores < before.total_cores:
            downs += 1
            recent = [c for u, c in sorted(decisions.items()) if u <= t][-4:]
            assert len(recent) == 4 and all(sum(c) < before.total_cores for c in recent)
        else:
            ups += 1
    assert ups >= 1 and downs >= 1
    # The step up at 120 s is answered by the first decision that sees it.
    assert any(150.0 <= t <= 180.0 for t, _ in policy.applied)


def test_redeploys_make_before_break(step_run: tuple[RunResult, InfAdapterPolicy, int]) -> None:
    res, _, _ = step_run
    loads = [t for t, a in res.actions if a.startswith("load")]
    unloads = [t for t, a in res.actions if a.startswith("unload")]
    assert unloads
    for t in unloads:  # every replica loaded before an unload was ready by then (load 6.4..6.8 s)
        assert all(u <= t - 6.4 for u in loads if u <= t)
    assert res.timeline["instances"].iloc[1:].min() >= 1


def test_dispatch_follows_the_shares(step_run: tuple[RunResult, InfAdapterPolicy, int]) -> None:
    res, policy, _ = step_run
    q = res.queries
    checked = 0
    ends = [t for t, _ in policy.share_log[1:]] + [600.0]
    for (t0, shares), t1 in zip(policy.share_log, ends, strict=True):
        window = q[(q["arrival"] >= t0 + 1.0) & (q["arrival"] < t1)]
        if len(window) < 1000:
            continue
        checked += 1
        counts = window["variant"].value_counts()
        for j, m in enumerate(policy.models):
            assert counts.get(m.variant_id, 0) / len(window) == pytest.approx(shares[j], abs=0.02)
    assert checked >= 2


def test_bad_configuration_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match="policy infadapter: max_total_cores must be an integer >= 1"):
        make_policy("infadapter", max_total_cores=0)
    with pytest.raises(ConfigError, match="policy infadapter: reference_cores must be an integer >= 1"):
        make_policy("infadapter", reference_cores=0)
    with pytest.raises(ConfigError, match="forecaster must be 'learned' or 'window_max'"):
        make_policy("infadapter", forecaster="lstm")
    with pytest.raises(ConfigError, match="family is not a regular expression"):
        make_policy("infadapter", family="resnet(")
    wl = Workload([APP], np.array([0.5]), np.zeros(1, dtype=np.int64))
    with pytest.raises(ConfigError, match=r"no CPU variant of family 'vgg\.\*' meets"):
        run_simulation(Catalog(FAMILY), wl, make_policy("infadapter", family="vgg.*", train="synthetic"),
                       make_executor("sim"), SPEC, RunSpec(duration_s=2))  # fmt: skip
    with pytest.raises(ConfigError, match="variant 'nope' is not a CPU variant meeting"):
        run_simulation(Catalog(FAMILY), wl, make_policy("infadapter", variants=["nope"], train="synthetic"),
                       make_executor("sim"), SPEC, RunSpec(duration_s=2))  # fmt: skip


def test_config_file_lists_every_parameter_with_its_default() -> None:
    conf = yaml.safe_load(CONF.read_text())
    assert conf["name"] == "infadapter"
    sig = inspect.signature(InfAdapterPolicy.__init__).parameters
    defaults = {k: p.default for k, p in sig.items() if k != "self"}
    assert conf["params"] == defaults
    make_policy(conf["name"], **conf["params"])


def test_same_seed_gives_identical_results() -> None:
    rng = np.random.default_rng(4)
    times = np.sort(rng.uniform(0, 200, 4000))
    a, _ = run(times, 200)
    b, _ = run(times, 200)
    assert a.queries.equals(b.queries)
    assert a.actions == b.actions
