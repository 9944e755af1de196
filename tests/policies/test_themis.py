"""``themis``: a latency model fitted on (cores x batch) profiles, horizontal and vertical
dynamic programmes that agree with brute force, and the two-stage response to a surge: a
resize of the running replicas first, new replicas later, the grown cores given back once
the load is stable; and its own baselines, the horizontal-only and vertical-only modes,
each of which runs one branch alone and misses more SLOs on a surge that needs both."""

from __future__ import annotations

import inspect
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from scipy import stats

from infaas_sim.catalog import Catalog
from infaas_sim.errors import ConfigError
from infaas_sim.executor import make_executor
from infaas_sim.hardware import HardwareKind, InstanceType
from infaas_sim.policy import Action, Load, Resize, Unload, make_policy
from infaas_sim.query import Application, Level, Pipeline, Requirement
from infaas_sim.simulation import ClusterSpec, RunResult, RunSpec, Workload, run_simulation
from infaas_sim.snapshot import view_from
from infaas_sim.variant import Variant, amdahl_latency_ms, cpu_latency_factor
from infaas_sim.view import ClusterView
from policies.themis import (
    CORE_COST,
    LatencyModel,
    Stage,
    ThemisPolicy,
    batch_wait_ms,
    horizontal_plan,
    vertical_plan,
)

CPU = HardwareKind.CPU
CONF = Path(__file__).resolve().parents[2] / "experiments" / "conf" / "policy" / "themis.yaml"
SPEC = ClusterSpec(
    instance_types={"cpu": InstanceType("cpu", CPU, 8, 32768, 0.384, 20.0)}, type_by_kind={CPU: "cpu"},
    resize_delay_s=1.0,
)  # fmt: skip
APP = Application("a", Requirement(Level.TASK, "cls", "ds", slo_ms=300))
# Profiled on 1 core: 10 + 40 b ms (50 ms a query, batches barely help), up to batch 4.
MODEL_VARIANT = Variant("m-cpu", "m", "cls", "ds", "fw", CPU, "fp32", 1, 4, 0.76, 1000, 1024, 10.0, 40.0)


def run(times: np.ndarray, duration: float, **params: Any) -> tuple[RunResult, ThemisPolicy]:
    wl = Workload([APP], times, np.zeros(len(times), dtype=np.int64))
    # The surge forecaster trained on the Twitter-like generator: the same with or without the
    # real trace on this machine.
    params.setdefault("train", "synthetic")
    policy = make_policy("themis", **params)
    assert isinstance(policy, ThemisPolicy)
    res = run_simulation(Catalog([MODEL_VARIANT]), wl, policy, make_executor("sim"), SPEC, RunSpec(duration_s=duration))
    return res, policy


def poisson(segments: list[tuple[float, float, float]], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([np.sort(rng.uniform(a, b, rng.poisson(r * (b - a)))) for a, b, r in segments])


# --- the latency model ---------------------------------------------------------------------
def test_latency_model_recovers_the_amdahl_profile_and_pads_by_a_tenth_of_l11() -> None:
    """The cluster scales CPU latency by Amdahl's law, which is exactly Themis's form
    a b / c + beta b + g / c + z: the fit reproduces every profiled point plus the padding."""
    model = LatencyModel.profile(MODEL_VARIANT, pad_share=0.1)
    raw = LatencyModel(model.a, model.beta, model.g, model.z)
    assert model.pad == pytest.approx(0.1 * raw.ms(1, 1))
    for c, b in itertools.product((1, 2, 3, 4, 6), (1, 2, 3, 4)):
        expected = (10.0 + 40.0 * b) * cpu_latency_factor(1, c)
        assert raw.ms(c, b) == pytest.approx(expected, rel=1e-9)
        assert model.ms(c, b) == pytest.approx(expected + model.pad)
        assert amdahl_latency_ms(MODEL_VARIANT, c, b) == pytest.approx(expected)
    assert model.throughput(2, 4) == pytest.approx(4000.0 / model.ms(2, 4))


def test_fit_is_least_squares_on_noisy_points() -> None:
    truth = LatencyModel(30.0, 5.0, 12.0, 2.0)
    rng = np.random.default_rng(0)
    pts = [(c, b, truth.ms(c, b) * (1 + 0.01 * rng.standard_normal())) for c in (1, 2, 4, 6) for b in (1, 2, 4, 6)]
    fit = LatencyModel.fit(pts, pad_share=0.0)
    assert (fit.a, fit.beta, fit.g, fit.z) == pytest.approx((30.0, 5.0, 12.0, 2.0), rel=0.1, abs=1.0)


def test_batch_wait_is_the_gamma_quantile_and_the_exponential_form_is_4605_b_minus_1_over_lambda() -> None:
    assert batch_wait_ms(1, 10.0) == 0.0
    for b, lam in [(2, 10.0), (4, 50.0), (8, 200.0)]:
        assert batch_wait_ms(b, lam) == pytest.approx(1000 * stats.gamma.ppf(0.99, b - 1, scale=1 / lam), rel=1e-6)
        assert batch_wait_ms(b, lam, "exponential") == pytest.approx(4605.17 * (b - 1) / lam, rel=1e-4)
    assert batch_wait_ms(5, 10.0) < batch_wait_ms(5, 10.0, "exponential")


# --- the dynamic programmes against brute force ----------------------------------------------
def random_stages(rng: np.random.Generator, n: int) -> list[Stage]:
    stages = []
    for _ in range(n):
        a, beta, g, z = (float(x) for x in rng.uniform([5, 0.5, 2, 0.5], [60, 5, 20, 3]))
        stages.append(Stage(LatencyModel(a, beta, g, z, pad=1.0), float(rng.uniform(0.1, 2)), 4))
    return stages


def brute_horizontal(stages: list[Stage], lam: float, slo: float, cores: tuple[int, ...]) -> float | None:
    need = lam + math.sqrt(lam)
    best = None
    per_stage = [list(itertools.product(cores, range(1, s.max_batch + 1))) for s in stages]
    for combo in itertools.product(*per_stage):
        lat = sum(
            math.ceil(s.model.ms(c, b) + batch_wait_ms(b, lam) - 1e-9) for s, (c, b) in zip(stages, combo, strict=True)
        )
        if lat > slo:
            continue
        cost = sum(math.ceil(need / s.model.throughput(c, b) - 1e-9) * (s.memory_gb + CORE_COST * c)
                   for s, (c, b) in zip(stages, combo, strict=True))  # fmt: skip
        best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_horizontal_dp_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    stages = random_stages(rng, 3)
    lam = float(rng.uniform(5, 200))
    slo = float(rng.uniform(60, 250))
    cores = (1, 2, 4)
    plan = horizontal_plan(stages, lam, slo, cores=cores, max_cores=4)
    best = brute_horizontal(stages, lam, slo, cores)
    if best is None:
        assert plan is None
        return
    assert plan is not None
    cost = sum(cfg.replicas * (s.memory_gb + CORE_COST * cfg.cores) for s, cfg in zip(stages, plan, strict=True))
    assert cost == pytest.approx(best)
    assert sum(math.ceil(cfg.latency_ms - 1e-9) for cfg in plan) <= slo
    for s, cfg in zip(stages, plan, strict=True):
        assert cfg.replicas * s.model.throughput(cfg.cores, cfg.batch) >= lam + math.sqrt(lam) - 1e-9


@pytest.mark.parametrize("seed", range(6))
def test_vertical_dp_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    stages = random_stages(rng, 2)
    replicas = [int(rng.integers(1, 4)), int(rng.integers(1, 4))]
    lam = float(rng.uniform(5, 150))
    slo = float(rng.uniform(80, 300))
    plan, served = vertical_plan(stages, replicas, lam, slo, max_cores=4)
    need = lam + math.sqrt(lam)

    def brute(target: float) -> float | None:
        best = None
        opts = [itertools.product(range(1, 5), range(1, 5)) for _ in stages]
        for combo in itertools.product(*[list(o) for o in opts]):
            if any(
                n * s.model.throughput(c, b) < target - 1e-9
                for s, n, (c, b) in zip(stages, replicas, combo, strict=True)
            ):
                continue
            lat = sum(
                math.ceil(s.model.ms(c, b) + batch_wait_ms(b, lam) - 1e-9)
                for s, (c, b) in zip(stages, combo, strict=True)
            )
            if lat <= slo:
                cores = sum(n * c for n, (c, _) in zip(replicas, combo, strict=True))
                best = cores if best is None else min(best, cores)
        return best

    full = brute(need)
    if full is not None:
        assert plan is not None and served == need
        assert sum(cfg.total_cores for cfg in plan) == full
    elif plan is not None:  # the largest lambda' that fits, and nothing much above it does
        assert served < need
        assert brute(served) is not None
        assert brute(served * 1.01 + 1e-6) is None
    else:
        assert brute(1e-6) is None


def test_vertical_dp_never_shrinks_below_the_current_cores() -> None:
    stage = Stage(LatencyModel.profile(MODEL_VARIANT), 1.0, 4)
    plan, _ = vertical_plan([stage], [2], 5.0, 300.0, max_cores=4, min_cores=[3])
    assert plan is not None and plan[0].cores == 3  # 1 core would do; 3 are held


# --- the policy in a run ---------------------------------------------------------------------
def test_a_step_surge_is_answered_by_a_resize_first_then_new_replicas_then_scale_in(conserved: Any) -> None:
    times = poisson([(0, 90, 10.0), (90, 180, 50.0)])
    res, policy = run(times, 180)
    conserved(res, len(times))
    after = [(t, a) for t, a in res.actions if t >= 90 and not a.startswith("set batch")]
    first_t, first = after[0]
    assert first.startswith("resize") and first_t < 93  # vertical: within a few loops of the step
    grown = [(t, a) for t, a in after if a.startswith("resize") and t == first_t]
    assert all(int(float(a.split(" to ")[1].split()[0])) > 1 for _, a in grown)
    loads = [t for t, a in after if a.startswith("load")]
    assert loads and min(loads) > first_t  # horizontal: new replicas come after the resize
    shrink = [t for t, a in after if a.startswith("resize") and a.endswith(" to 1 cores")]
    assert shrink and min(shrink) >= min(loads) + 10.0  # scale-in waits for 10 s of agreement
    branches = {t: b for t, b, _, _ in policy.log}
    assert branches[first_t] == "vertical"
    assert res.summary["slo_violation_rate"] < 0.05


def test_a_pipeline_resizes_every_stage_first_then_adds_replicas(conserved: Any) -> None:
    """Two stages share a 400 ms end-to-end SLO: the DPs split it between them."""
    det = Variant("d-cpu", "d", "det", "ds", "fw", CPU, "fp32", 1, 4, 0.5, 1000, 1024, 10.0, 30.0)
    req_det = Requirement(Level.TASK, "det", "ds", slo_ms=400)
    pipe = Application.of_pipeline("p", Pipeline((req_det, APP.requirement), slo_ms=400))
    times = poisson([(0, 90, 8.0), (90, 180, 40.0)], seed=1)
    wl = Workload([pipe], times, np.zeros(len(times), dtype=np.int64))
    policy = make_policy("themis", train="synthetic")
    assert isinstance(policy, ThemisPolicy)
    res = run_simulation(Catalog([det, MODEL_VARIANT]), wl, policy, make_executor("sim"), SPEC, RunSpec(duration_s=180))
    conserved(res, len(times))
    assert [st.variant.variant_id for st in policy.stages] == ["d-cpu", "m-cpu"]
    iid_variant = {a.split(" as instance ")[1].split()[0]: a.split()[1] for _, a in res.actions if a.startswith("load")}
    after = [(t, a) for t, a in res.actions if t >= 90 and (a.startswith("resize") or a.startswith("load"))]
    first_t = after[0][0]
    first = [a for t, a in after if t == first_t]
    assert all(a.startswith("resize") for a in first)
    assert {iid_variant[a.split()[2]] for a in first} == {"d-cpu", "m-cpu"}  # both stages grow
    later = {a.split()[1] for t, a in after if t > first_t and a.startswith("load")}
    assert later == {"d-cpu", "m-cpu"}
    assert res.summary["slo_violation_rate"] < 0.05


# --- Themis's own baselines: one branch alone ---------------------------------------------------
# A 32-core worker, so that the replicas' cores are bounded by max_cores and not by the worker,
# and a 10 s model load, so that a new replica serves only 10 s after it is asked for.
BIG_SPEC = ClusterSpec(
    instance_types={"cpu": InstanceType("cpu", CPU, 32, 65536, 0.384, 20.0)}, type_by_kind={CPU: "cpu"},
    resize_delay_s=1.0,
)  # fmt: skip
SLOW_LOAD = Variant("m-cpu", "m", "cls", "ds", "fw", CPU, "fp32", 1, 4, 0.76, 10_000, 1024, 10.0, 40.0)


def run_mode(times: np.ndarray, duration: float, mode: str) -> tuple[RunResult, ThemisPolicy, list[Action]]:
    """A run of ``mode``, with every action its loops returned (setup's excluded)."""
    wl = Workload([APP], times, np.zeros(len(times), dtype=np.int64))
    policy = make_policy("themis", train="synthetic", mode=mode)
    assert isinstance(policy, ThemisPolicy)
    emitted: list[Action] = []
    loop = policy.autoscale

    def recorded(view: ClusterView) -> list[Action]:
        actions = loop(view)
        emitted.extend(actions)
        return actions

    policy.autoscale = recorded  # type: ignore[method-assign]
    res = run_simulation(Catalog([SLOW_LOAD]), wl, policy, make_executor("sim"), BIG_SPEC,
                         RunSpec(duration_s=duration))  # fmt: skip
    return res, policy, emitted


def cores_after(actions: list[tuple[float, str]], iid: int, t: float) -> float | None:
    """The cores instance ``iid`` was last resized to at or before ``t`` (None: never)."""
    sizes = [float(a.split(" to ")[1].split()[0]) for at, a in actions
             if at <= t and a.startswith(f"resize instance {iid} ")]  # fmt: skip
    return sizes[-1] if sizes else None


def test_two_stage_is_the_default_mode_and_both_its_branches_run() -> None:
    times = poisson([(0, 60, 10.0), (60, 120, 50.0)], seed=5)
    a, default = run(times, 120)
    b, _ = run(times, 120, mode="two_stage")
    assert default.mode == "two_stage"
    assert a.queries.equals(b.queries) and a.actions == b.actions
    assert {branch for _, branch, _, _ in default.log} == {"horizontal", "vertical"}
    assert any(a.startswith("resize") for _, a in a.actions)


def test_horizontal_mode_adds_and_removes_replicas_and_never_resizes(conserved: Any) -> None:
    times = poisson([(0, 60, 10.0), (60, 150, 60.0), (150, 240, 10.0)], seed=6)
    res, policy, emitted = run_mode(times, 240, "horizontal")
    conserved(res, len(times))
    assert not any(isinstance(a, Resize) for a in emitted)
    assert not any(a.startswith("resize") for _, a in res.actions)
    assert {branch for _, branch, _, _ in policy.log} == {"horizontal"}
    assert all(not surge for _, _, _, surge in policy.log)  # the classifier is not consulted
    assert policy.detector is None
    loads = [t for t, a in res.actions if a.startswith("load") and t > 0]
    unloads = [t for t, a in res.actions if a.startswith("unload")]
    assert loads and min(loads) < 65  # scale-out within a few loops of the step
    assert not [t for t in unloads if 60 <= t <= 150]
    after = [t for t in unloads if t > 150]  # scale-in once the load falls, after 10 s of agreement
    assert after and min(after) >= 150 + policy.scale_in_agreement_s
    # Every replica runs at the setup's horizontal cores (1).
    assert policy.fixed_cores == [1]
    assert {a.cores for a in emitted if isinstance(a, Load)} == {1}


def test_vertical_mode_keeps_the_setup_replicas_grows_to_max_cores_and_shrinks_back(conserved: Any) -> None:
    # 250/s needs about 265/s of capacity: more than 3 replicas carry at 4 cores (about 72/s each).
    times = poisson([(0, 90, 10.0), (90, 150, 250.0), (150, 300, 10.0)], seed=0)
    res, policy, emitted = run_mode(times, 300, "vertical")
    conserved(res, len(times))
    assert policy.fixed_replicas == [3]  # the horizontal plan at the run's mean rate
    assert not any(isinstance(a, Load | Unload) for a in emitted)
    loads = [(t, a) for t, a in res.actions if a.startswith("load")]
    assert len(loads) == 3 and all(t == 0.0 for t, _ in loads)  # no replica added after setup
    assert not any(a.startswith("unload") for _, a in res.actions)
    assert {branch for _, branch, _, _ in policy.log} == {"vertical"}
    iids = [int(a.split(" as instance ")[1].split()[0]) for _, a in loads]
    # In the surge every replica is at max_cores (the DP wants more than it can give) ...
    assert all(cores_after(res.actions, i, 140.0) == policy.max_cores for i in iids)
    # ... and, 10 s of agreement after the load falls, the DP's fewer cores.
    assert all((c := cores_after(res.actions, i, 300.0)) is not None and c < policy.max_cores for i in iids)
    shrinks = [t for t, a in res.actions if a.startswith("resize") and t > 150]
    assert shrinks and min(shrinks) >= 150 + policy.scale_in_agreement_s


@pytest.mark.parametrize("seed", [0, 1])
def test_two_stage_misses_fewer_slos_than_either_branch_alone_on_a_surge_beyond_max_cores(seed: int) -> None:
    """Themis's claim against its own baselines, on a surge that needs both branches: a resize
    answers at once (horizontal-only waits 10 s for its new replicas to load), and new
    replicas follow (vertical-only stays at max cores, short of the load)."""
    times = poisson([(0, 90, 10.0), (90, 150, 250.0), (150, 300, 10.0)], seed=seed)
    rates = {}
    for mode in ("two_stage", "horizontal", "vertical"):
        res, _, _ = run_mode(times, 300, mode)
        rates[mode] = res.summary["slo_violation_rate"]
    assert rates["two_stage"] < 0.5 * rates["horizontal"]
    assert rates["two_stage"] < 0.5 * rates["vertical"]


def test_same_seed_gives_identical_results() -> None:
    times = poisson([(0, 40, 10.0), (40, 80, 40.0)], seed=3)
    a, _ = run(times, 80)
    b, _ = run(times, 80)
    assert a.queries.equals(b.queries)
    assert a.actions == b.actions


def test_chooses_a_cpu_variant_that_meets_the_slo_within_max_cores() -> None:
    # 250 ms on its profiled 8 cores meets the 300 ms SLO; on 4 cores it takes 382 ms.
    slow = Variant("slow", "s", "cls", "ds", "fw", CPU, "fp32", 8, 1, 0.80, 1000, 1024, 0.0, 250.0)
    assert amdahl_latency_ms(slow, 4, 1) > 300
    wl = Workload([APP], np.array([0.5]), np.zeros(1, dtype=np.int64))
    policy = make_policy("themis", surge_detector="none")
    res = run_simulation(Catalog([slow, MODEL_VARIANT]), wl, policy, make_executor("sim"), SPEC, RunSpec(duration_s=5))
    assert isinstance(policy, ThemisPolicy) and policy.variant is MODEL_VARIANT  # "slow" needs > 4 cores
    assert res.summary["served"] == 1
    with pytest.raises(ConfigError, match=r"no CPU variant\(s\) meet application 'a'"):
        run_simulation(Catalog([slow]), wl, make_policy("themis", surge_detector="none"), make_executor("sim"), SPEC,
                       RunSpec(duration_s=5))  # fmt: skip


def test_bad_configuration_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match="policy themis: max_cores must be an integer >= 1"):
        make_policy("themis", max_cores=0)
    with pytest.raises(ConfigError, match="horizontal_cores must be a list of integers in"):
        make_policy("themis", horizontal_cores=[8])
    with pytest.raises(ConfigError, match="wait_model must be one of gamma, exponential"):
        make_policy("themis", wait_model="uniform")
    with pytest.raises(ConfigError, match="surge_detector must be 'learned' or 'none'"):
        make_policy("themis", surge_detector="lstm")
    with pytest.raises(ConfigError, match="policy themis: mode must be one of two_stage, horizontal, vertical"):
        make_policy("themis", mode="diagonal")
    two = [APP, Application("b", APP.requirement, index=1)]
    wl = Workload(two, np.array([0.5, 0.6]), np.array([0, 1]))
    with pytest.raises(ConfigError, match="serves exactly one application"):
        run_simulation(Catalog([MODEL_VARIANT]), wl, make_policy("themis"), make_executor("sim"), SPEC,
                       RunSpec(duration_s=2))  # fmt: skip


def test_config_file_lists_every_parameter_with_its_default() -> None:
    conf = yaml.safe_load(CONF.read_text())
    assert conf["name"] == "themis"
    sig = inspect.signature(ThemisPolicy.__init__).parameters
    defaults = {k: p.default for k, p in sig.items() if k != "self"}
    assert conf["params"] == {**defaults, "horizontal_cores": [1]}
    assert defaults["horizontal_cores"] == (1,)
    make_policy(conf["name"], **conf["params"])


@pytest.mark.parametrize(("arm", "mode"), [("themis", "two_stage"), ("themis_horizontal", "horizontal"),
                                           ("themis_vertical", "vertical")])  # fmt: skip
def test_themis_arms_compose_the_policy_in_their_mode(arm: str, mode: str) -> None:
    with initialize_config_dir(config_dir=str(CONF.parents[1]), version_base=None):
        cfg = compose("config", overrides=[f"+arm={arm}"])
    assert cfg.policy.name == "themis" and dict(cfg.cluster.workers) == {"cpu": "m5.2xlarge"}
    params = OmegaConf.to_container(cfg.policy.params, resolve=True)
    assert isinstance(params, dict)
    policy = make_policy("themis", **{str(k): v for k, v in params.items()})
    assert isinstance(policy, ThemisPolicy) and policy.mode == mode


def test_the_latency_model_is_fitted_on_the_catalogs_per_core_profile_the_cluster_runs_at() -> None:
    # Rows of one model at 1 and 8 cores that an Amdahl law from one row mispredicts.
    one = Variant("m-1c", "m", "cls", "ds", "fw", CPU, "fp32", 1, 1, 0.76, 1000, 500, 0.0, 100.0)
    eight = Variant("m-8c", "m", "cls", "ds", "fw", CPU, "fp32", 8, 1, 0.76, 1000, 500, 0.0, 40.0)
    cat = Catalog([one, eight])
    policy = make_policy("themis")
    assert isinstance(policy, ThemisPolicy)
    policy.setup(view_from(cat, [], spec=SPEC), [APP], {})
    (st,) = policy.stages
    pad = st.stage.model.pad
    for c in (1, 2, 4, 6):
        assert st.stage.model.ms(c, 1) - pad == pytest.approx(cat.cpu_latency_ms(st.variant, c, 1), rel=0.05)
    assert amdahl_latency_ms(one, 6, 1) < 0.7 * cat.cpu_latency_ms(one, 6, 1)  # what it planned with before
