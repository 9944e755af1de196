"""``ipa``: IPA's integer program re-solved every 10 s on the forecast load, applied with the
fewest changes; its choice moves from accurate to cheap variants as its weights move; its
plan meets the SLA its model predicts in simulation; its fixed-variant baselines (most
accurate, cheapest) only scale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from infaas_sim.catalog import Catalog
from infaas_sim.errors import ConfigError
from infaas_sim.executor import make_executor
from infaas_sim.hardware import HardwareKind, InstanceType
from infaas_sim.policy import make_policy
from infaas_sim.query import Application, Level, Pipeline, Requirement
from infaas_sim.simulation import ClusterSpec, RunResult, RunSpec, Workload, run_simulation
from infaas_sim.variant import Variant
from policies.ipa import IpaPolicy, stage_options
from traces.paper_slices import paper_trace, real_trace_path

CPU, GPU = HardwareKind.CPU, HardwareKind.GPU
CONF = Path(__file__).resolve().parents[2] / "experiments" / "conf" / "policy" / "ipa.yaml"
SPEC = ClusterSpec(
    instance_types={
        "cpu": InstanceType("cpu", CPU, 4, 16384, 0.192, 10.0),  # 4 vCPUs: scaling adds workers
        "gpu": InstanceType("gpu", GPU, 8, 61 * 1024, 3.06, 10.0, 1, 16 * 1024),
    },
    type_by_kind={CPU: "cpu", GPU: "gpu"},
)
SLO_MS = 300.0


def cpu(vid: str, arch: str, cores: float, acc: float, icpt: float, slope: float, fw: str = "fw") -> Variant:
    return Variant(vid, arch, "cls", "ds", fw, CPU, "fp32", cores, 8, acc, 1000, 500, icpt, slope)


# ResNet 18/50/152 accuracies (reference/policies.md, IPA); each at two core counts, the
# larger faster; latencies are made up, growing with accuracy as the real profiles do.
VARIANTS = (
    cpu("r18-1c", "r18", 1, 0.698, 12, 4),
    cpu("r18-2c", "r18", 2, 0.698, 7, 2.2),
    cpu("r50-1c", "r50", 1, 0.761, 40, 12),
    cpu("r50-2c", "r50", 2, 0.761, 22, 6.6),
    cpu("r152-2c", "r152", 2, 0.783, 60, 18),
    cpu("r152-4c", "r152", 4, 0.783, 33, 10),
    Variant("r152-gpu", "r152", "cls", "ds", "trt", GPU, "fp16", 1, 16, 0.783, 1000, 900, 3, 1),
)
CATALOG = Catalog(VARIANTS, name="ipa-test")
APP = Application("a", Requirement(Level.TASK, "cls", "ds", slo_ms=SLO_MS))


def poisson(segments: list[tuple[float, float, float]], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([np.sort(rng.uniform(a, b, rng.poisson(r * (b - a)))) for a, b, r in segments])


def run(times: np.ndarray, duration: float, seed: int = 0, **params: Any) -> tuple[RunResult, IpaPolicy]:
    params.setdefault("forecaster", "window_max")  # the learned one fits on 14 days first
    policy = make_policy("ipa", **params)
    assert isinstance(policy, IpaPolicy)
    wl = Workload([APP], times, np.zeros(len(times), dtype=np.int64))
    res = run_simulation(CATALOG, wl, policy, make_executor("sim"), SPEC, RunSpec(duration_s=duration, seed=seed))
    return res, policy


def served(res: RunResult, start: float, end: float) -> pd.DataFrame:
    q = res.queries
    return q[(q["status"] == "served") & (q["arrival"] >= start) & (q["arrival"] < end)]


# --- configuration --------------------------------------------------------------------------
def test_config_file_builds_the_policy_with_ipa_defaults() -> None:
    conf = yaml.safe_load(CONF.read_text())
    assert conf["name"] == "ipa"
    policy = make_policy("ipa", **conf["params"])
    assert isinstance(policy, IpaPolicy)
    w = policy.weights
    assert (w.alpha, w.beta, w.gamma, w.accuracy_method) == (10.0, 0.5, 1e-6, "sum")
    assert policy.tick_s == 10.0
    assert policy.queue_limit_s == 10.0
    assert policy.forecaster.horizon_s == 20
    assert policy.forecaster.history_s == 120  # twelve windows of 10 s


@pytest.mark.parametrize(
    ("params", "msg"),
    [
        ({"alpha": -1}, "alpha"),
        ({"accuracy_method": "median"}, "accuracy_method"),
        ({"max_batch": 0}, "max_batch"),
        ({"interval_s": 0}, "interval_s"),
        ({"margin": -0.1}, "margin"),
        ({"forecaster": "crystal-ball"}, "unknown forecaster"),
        ({"nonsense": 1}, "nonsense"),
    ],
)
def test_bad_parameters_are_one_line_config_errors(params: dict[str, Any], msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        make_policy("ipa", **params)


def test_pinned_application_is_refused_with_a_reason() -> None:
    app = Application("p", Requirement(Level.VARIANT, "r18-1c"))
    wl = Workload([app], np.array([1.0]), np.zeros(1, dtype=np.int64))
    with pytest.raises(ConfigError, match="needs an SLA"):
        run_simulation(CATALOG, wl, make_policy("ipa", forecaster="window_max"), make_executor("sim"), SPEC,
                       RunSpec(duration_s=5))  # fmt: skip


# --- the stage's options ---------------------------------------------------------------------
def test_options_are_cpu_families_at_their_base_allocation() -> None:
    idx = list(range(len(VARIANTS)))
    stage, index = stage_options(CATALOG.variants, idx, 5.0, "s")
    # Batch-1 latency at the fewest cores: 16, 52, 78 ms; 5 x their mean = 243 ms admits them
    # all, so every family runs at its fewest cores; the GPU variant is no option.
    assert [o.variant_id for o in stage.options] == ["r152-2c", "r18-1c", "r50-1c"]
    assert [o.base_cpu for o in stage.options] == [2, 1, 1]
    assert index == {"r152-2c": 4, "r18-1c": 0, "r50-1c": 2}
    # A tighter per-stage SLA (1 x mean = 48.7 ms) moves r50 and r152 to their larger allocation.
    stage, _ = stage_options(CATALOG.variants, idx, 1.0, "s")
    assert {o.variant_id: o.base_cpu for o in stage.options} == {"r152-4c": 4, "r18-1c": 1, "r50-2c": 2}


def test_no_cpu_candidate_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no CPU variant"):
        stage_options(CATALOG.variants, [6], 5.0, "application 'g'")


# --- scenarios ----------------------------------------------------------------------------
def test_steady_load_meets_the_sla_its_model_predicts(conserved: Any) -> None:
    times = poisson([(0, 150, 60)], seed=1)
    res, policy = run(times, 150)
    conserved(res, len(times))
    plans = [p for t, _, _, p in policy.history if t >= 30]
    assert plans and all(p.ok and p.predicted_latency_ms <= SLO_MS for p in plans)
    s = served(res, 30, 150)
    assert len(s) > 0.99 * 60 * 120 * 0.9
    # What the model charges is what the simulation shows, component by component: no batch
    # waits longer than its (b - 1) / lambda, and no batch runs longer than L(b).
    worst_wait = max(p.stages[0].batch_wait_ms for p in plans)
    worst_exec = max(p.stages[0].latency_ms for p in plans)
    assert s["batching_ms"].max() <= worst_wait + 1e-6
    assert s["execution_ms"].max() <= worst_exec + 1e-6
    # End to end, the SLA holds for (almost) every query; the model leaves out waiting for a
    # replica's running batch, which is the rest.
    assert s["slo_met"].mean() >= 0.99
    assert np.percentile(s["latency_ms"], 50) <= max(p.predicted_latency_ms for p in plans)


@pytest.mark.parametrize("sweep", ["beta", "alpha"])
def test_choice_moves_from_accurate_to_cheap_variants_as_weights_move(sweep: str) -> None:
    times = poisson([(0, 60, 80)], seed=2)
    values = [0.05, 0.5, 3.0, 20.0, 200.0] if sweep == "beta" else [100.0, 10.0, 1.0, 0.3, 0.01]
    acc, cost = [], []
    for x in values:
        weights: dict[str, Any] = {sweep: x}
        res, _ = run(times, 60, **weights)
        s = served(res, 20, 60)
        acc.append(float(s["accuracy"].mean()))
        cost.append(float(res.summary["total_cost"]))
    # From the most accurate variant to the cheapest as cores weigh more than accuracy.
    assert acc == sorted(acc, reverse=True)
    assert acc[0] == pytest.approx(0.783)
    assert acc[-1] == pytest.approx(0.698)
    assert cost[-1] < cost[0]


def test_load_step_scales_replicas_up_then_down_and_releases_workers(conserved: Any) -> None:
    times = poisson([(0, 60, 20), (60, 180, 120), (180, 420, 20)], seed=3)
    res, policy = run(times, 420, beta=0.5)
    conserved(res, len(times))
    reps = {t: sum(s.replicas for s in p.stages) for t, _, _, p in policy.history}
    assert reps[50.0] < reps[80.0]  # the forecast sees the step within one interval
    assert reps[410.0] < reps[170.0]  # 2 minutes after the step down, the window forgets it
    s = served(res, 100, 180)
    assert s["slo_met"].mean() >= 0.99
    tl = res.timeline
    busy = tl.loc[(tl["t"] >= 100) & (tl["t"] < 180), "workers_cpu"].max()
    assert tl.loc[tl["t"] >= 410, "workers_cpu"].max() < busy  # idle workers were released


def test_switching_variants_is_make_before_break(conserved: Any) -> None:
    # beta 5: at 20 rps one replica of the most accurate (2 cores) is worth it; at 140 rps
    # r50 at 1 core per replica is. The hint (the run's peak) plans for 140 rps at first.
    times = poisson([(0, 60, 20), (60, 150, 140)], seed=4)
    res, policy = run(times, 150, beta=5.0)
    conserved(res, len(times))
    chosen = [p.stages[0].variant_id for t, _, _, p in policy.history if t >= 30]
    assert chosen[0] != chosen[-1]
    q = res.queries
    rejected = q[q["status"] == "rejected"]
    assert not rejected["reason"].str.contains("no plan|gone|does not meet").any()
    # The old variant stops serving once the new one is ready, and stays unloaded.
    last = served(res, 130, 150)
    assert set(last["variant"]) == {chosen[-1]}


def test_overload_drops_queries_past_the_queue_limit_with_a_reason(conserved: Any) -> None:
    # One replica at most: r18 at batch 8 runs 1000 x 8 / 44 = 182 inputs/s; 400/s overloads it.
    times = poisson([(0, 40, 400)], seed=5)
    res, _ = run(times, 40, max_replicas=1, queue_limit_s=2.0)
    conserved(res, len(times))
    q = res.queries
    reasons = q.loc[q["status"] == "rejected", "reason"]
    assert len(reasons) > 0.3 * len(times)
    assert reasons.str.contains("more than 2 s of queued work").all()
    # Nothing that was served waited past the limit (plus the batch it joined).
    assert q.loc[q["status"] == "served", "queueing_ms"].max() <= 2000 + 200


def test_same_seed_same_results() -> None:
    times = poisson([(0, 40, 50), (40, 80, 100)], seed=6)
    a, _ = run(times, 80, seed=3)
    b, _ = run(times, 80, seed=3)
    pd.testing.assert_frame_equal(a.queries, b.queries)
    assert a.actions == b.actions


def test_learned_forecaster_is_the_default_and_runs() -> None:
    times = poisson([(0, 40, 30)], seed=7)
    res, policy = run(times, 40, forecaster="learned")
    assert policy.forecaster.name == "learned"
    assert res.summary["served"] > 0.95 * len(times)
    assert IpaPolicy().forecaster.name == "learned"


# --- pipelines ------------------------------------------------------------------------------
def stage_variant(vid: str, task: str, cores: float, acc: float, icpt: float, slope: float) -> Variant:
    return Variant(vid, vid, task, "ds", "fw", CPU, "fp32", cores, 8, acc, 1000, 500, icpt, slope)


# IPA's video pipeline: YOLOv5 n/s/m/x then ResNet 18/50/152 (accuracies from
# reference/policies.md, IPA); latencies and cores made up, growing with accuracy.
VIDEO_VARIANTS = (
    stage_variant("yolo-n", "detect", 1, 0.457, 10, 3),
    stage_variant("yolo-s", "detect", 1, 0.568, 20, 6),
    stage_variant("yolo-m", "detect", 2, 0.641, 40, 12),
    stage_variant("yolo-x", "detect", 4, 0.689, 90, 30),
    stage_variant("r18", "cls", 1, 0.698, 8, 2),
    stage_variant("r50", "cls", 2, 0.761, 20, 6),
    stage_variant("r152", "cls", 4, 0.783, 50, 15),
)
VIDEO_SLA_MS = 400.0
VIDEO = Application.of_pipeline(
    "video",
    Pipeline(
        (
            Requirement(Level.TASK, "detect", "ds", slo_ms=VIDEO_SLA_MS),
            Requirement(Level.TASK, "cls", "ds", slo_ms=VIDEO_SLA_MS),
        ),
        VIDEO_SLA_MS,
    ),
)
PIPE_SPEC = ClusterSpec(
    instance_types={"cpu": InstanceType("cpu", CPU, 8, 32768, 0.384, 10.0)}, type_by_kind={CPU: "cpu"}
)


def run_pipeline(times: np.ndarray, duration: float, **params: Any) -> tuple[RunResult, IpaPolicy]:
    params.setdefault("forecaster", "window_max")
    policy = make_policy("ipa", **params)
    assert isinstance(policy, IpaPolicy)
    wl = Workload([VIDEO], times, np.zeros(len(times), dtype=np.int64))
    res = run_simulation(
        Catalog(VIDEO_VARIANTS), wl, policy, make_executor("sim"), PIPE_SPEC, RunSpec(duration_s=duration)
    )
    return res, policy


@pytest.mark.parametrize(("alpha", "beta", "headroom"), [(2.0, 1.0, True), (10.0, 0.05, False)])
def test_pipeline_plan_meets_the_sla_its_model_predicts(alpha: float, beta: float, headroom: bool,
                                                        conserved: Any) -> None:  # fmt: skip
    # IPA's video weights (alpha 2, beta 1, gamma 1e-6) and an accuracy-first pair whose plan
    # is predicted at about 90% of the SLA, on a steady Poisson stream of requests.
    times = poisson([(0, 150, 60)], seed=11)
    res, policy = run_pipeline(times, 150, alpha=alpha, beta=beta, gamma=1e-6)
    conserved(res, len(times))
    plans = [p for t, _, _, p in policy.history if t >= 20]
    assert all(p.ok and p.predicted_latency_ms <= VIDEO_SLA_MS for p in plans)
    variants = {tuple(s.variant_id for s in p.stages) for p in plans}
    assert len(variants) == 1  # a steady load keeps one choice per stage
    s = served(res, 30, 150)
    assert len(s) > 0.9 * 60 * 120
    assert all(tuple(v) == next(iter(variants)) for v in s["stage_variants"])
    # Per stage, what the model charges bounds what the simulation shows: the batch wait
    # (b - 1) / lambda and the batch's profiled latency L(b).
    for k in range(2):
        wait = max(p.stages[k].batch_wait_ms for p in plans)
        lat = max(p.stages[k].latency_ms for p in plans)
        assert s["stage_batching_ms"].map(lambda x, k=k: x[k]).max() <= wait + 1e-6
        assert s["stage_execution_ms"].map(lambda x, k=k: x[k]).max() <= lat + 1e-6
    # End to end, latency beyond the model's prediction is queueing behind a running batch,
    # which IPA's latency model leaves out; nothing loads in steady state.
    predicted = max(p.predicted_latency_ms for p in plans)
    assert (s["latency_ms"] - s["queueing_ms"] - s["loading_ms"]).max() <= predicted + 1e-6
    if headroom:  # the plan leaves half the SLA: every query meets it
        assert predicted <= 0.6 * VIDEO_SLA_MS
        assert s["slo_met"].all()
    else:  # predicted at ~90% of the SLA: the queueing the model leaves out costs misses
        assert predicted > 0.85 * VIDEO_SLA_MS
        assert 0.5 < s["slo_met"].mean() < 0.99


def test_pipeline_choice_moves_from_accurate_to_cheap_as_beta_grows() -> None:
    times = poisson([(0, 60, 40)], seed=12)
    picks, accs = [], []
    for beta in (0.01, 0.5, 5.0, 50.0, 500.0):
        res, policy = run_pipeline(times, 60, alpha=10.0, beta=beta)
        picks.append(tuple(s.variant_id for s in policy.plans[0].stages))
        accs.append(float(served(res, 20, 60)["accuracy"].mean()))
    assert picks[0] == ("yolo-x", "r152")
    # The cheapest plan: one 1-core replica per stage; yolo-s costs what yolo-n does at this
    # load (one replica either way), so accuracy still picks it.
    assert picks[-1] == ("yolo-s", "r18")
    assert policy.plans[0].cost_cores == 2
    assert accs == sorted(accs, reverse=True)
    assert accs[-1] < accs[0]


@pytest.mark.skipif(real_trace_path() is None, reason="the real Twitter trace (../shared/traces) is absent")
def test_video_pipeline_on_ipas_steady_low_slice_of_the_real_trace(conserved: Any) -> None:
    # IPA's steady-low slice (20 minutes, rates divided by 8: about 5 requests/s), its video
    # weights and its forecaster (the learned stand-in for its LSTM).
    times = paper_trace("ipa-steady-low").arrivals(1200, np.random.default_rng(0))
    res, policy = run_pipeline(times, 1200, alpha=2.0, beta=1.0, gamma=1e-6, forecaster="learned")
    conserved(res, len(times))
    plans = [p for _, _, _, p in policy.history]
    assert all(p.ok and p.predicted_latency_ms <= VIDEO_SLA_MS for p in plans)
    s = served(res, 0, 1200)
    for k in range(2):
        assert (
            s["stage_batching_ms"].map(lambda x, k=k: x[k]).max()
            <= max(p.stages[k].batch_wait_ms for p in plans) + 1e-6
        )
        assert (
            s["stage_execution_ms"].map(lambda x, k=k: x[k]).max() <= max(p.stages[k].latency_ms for p in plans) + 1e-6
        )
    assert res.summary["rejected"] == 0
    assert res.summary["slo_violation_rate"] < 0.05
    # Accuracy sits between the cheapest pair's mean and the most accurate pair's.
    assert (0.568 + 0.698) / 2 <= res.summary["mean_accuracy"] <= (0.689 + 0.783) / 2


def test_fixed_variant_baseline_only_scales() -> None:
    # IPA's "fixed variant + scaling" baseline: the options restricted to one per stage.
    times = poisson([(0, 40, 30)], seed=13)
    res, policy = run_pipeline(times, 40, variants=["yolo-n", "r18"])
    assert {tuple(v) for v in served(res, 0, 40)["stage_variants"]} == {("yolo-n", "r18")}
    assert all(len(st.options) == 1 for st in policy.stages[0])
    with pytest.raises(ConfigError, match="stage 1 has no CPU variant"):
        run_pipeline(times, 40, variants=["yolo-n"])
    with pytest.raises(ConfigError, match="list of variant ids"):
        make_policy("ipa", variants="yolo-n")


# --- IPA's fixed-variant baselines: variant_policy ---------------------------------------------
# At beta 5 the adaptive plan switches variants on this step.
STEP: list[tuple[float, float, float]] = [(0, 60, 20), (60, 150, 140)]


def test_adaptive_is_the_default_variant_policy_and_switches_on_a_load_step() -> None:
    times = poisson(STEP, seed=4)
    a, default = run(times, 150, beta=5.0)
    b, _ = run(times, 150, beta=5.0, variant_policy="adaptive")
    assert default.variant_policy == "adaptive"
    pd.testing.assert_frame_equal(a.queries, b.queries)
    assert a.actions == b.actions
    assert len(default.stages[0][0].options) == 3  # every CPU family stays an option
    assert len({p.stages[0].variant_id for t, _, _, p in default.history if t >= 30}) > 1


@pytest.mark.parametrize(("variant_policy", "pinned"), [("most_accurate", "r152-2c"), ("cheapest", "r18-1c")])
def test_a_pinned_variant_never_switches_and_only_its_replicas_scale(variant_policy: str, pinned: str,
                                                                    conserved: Any) -> None:  # fmt: skip
    # most_accurate: r152 (0.783) at its base 2 cores; cheapest: r18 and r50 both take 1 core,
    # and r18 is the faster.
    times = poisson(STEP, seed=4)
    res, policy = run(times, 150, beta=5.0, variant_policy=variant_policy)
    conserved(res, len(times))
    assert [o.variant_id for o in policy.stages[0][0].options] == [pinned]
    assert {p.stages[0].variant_id for _, _, _, p in policy.history} == {pinned}
    assert set(served(res, 0, 150)["variant"]) == {pinned}
    loaded = {a.split()[1] for _, a in res.actions if a.startswith("load")}
    assert loaded == {pinned}
    reps = {t: p.stages[0].replicas for t, _, _, p in policy.history}
    assert reps[50.0] < reps[80.0]  # the step buys replicas instead of a switch


def test_pinned_pipelines_keep_the_most_accurate_or_the_cheapest_pair() -> None:
    times = poisson([(0, 40, 30)], seed=13)
    for variant_policy, pair in (("most_accurate", ("yolo-x", "r152")), ("cheapest", ("yolo-n", "r18"))):
        res, policy = run_pipeline(times, 40, variant_policy=variant_policy)
        assert {tuple(v) for v in served(res, 0, 40)["stage_variants"]} == {pair}
        assert {tuple(s.variant_id for s in p.stages) for _, _, _, p in policy.history} == {pair}


def test_an_unknown_variant_policy_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match="policy ipa: variant_policy must be one of adaptive, most_accurate"):
        make_policy("ipa", variant_policy="largest")


ARMS = Path(__file__).resolve().parents[2] / "experiments" / "conf" / "arm"


@pytest.mark.parametrize(
    ("arm", "expected"),
    [
        ("ipa", {"variant_policy": "adaptive", "alpha": 10.0, "beta": 0.5, "gamma": 1e-6}),
        ("ipa_accurate", {"variant_policy": "most_accurate", "alpha": 10.0, "beta": 0.5}),
        ("ipa_cheapest", {"variant_policy": "cheapest", "alpha": 10.0, "beta": 0.5}),
        ("ipa_paper", {"variant_policy": "adaptive", "alpha": 2.0, "beta": 1.0, "gamma": 1e-6}),
    ],
)
def test_ipa_arms_compose_the_policy_with_their_parameters(arm: str, expected: dict[str, Any]) -> None:
    with initialize_config_dir(config_dir=str(ARMS.parent), version_base=None):
        cfg = compose("config", overrides=[f"+arm={arm}"])
    assert cfg.policy.name == "ipa" and dict(cfg.cluster.workers) == {"cpu": "m5.2xlarge"}
    params = OmegaConf.to_container(cfg.policy.params, resolve=True)
    assert isinstance(params, dict)
    assert {k: params[k] for k in expected} == pytest.approx(expected)
    policy = make_policy("ipa", **{str(k): v for k, v in params.items()})
    assert isinstance(policy, IpaPolicy)
    assert (policy.weights.alpha, policy.weights.beta) == (expected["alpha"], expected["beta"])
