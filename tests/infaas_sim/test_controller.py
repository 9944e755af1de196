"""The model-less query API: validation before a run, and what the controller records for
each decision a policy can return."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from infaas_sim.errors import ConfigError
from infaas_sim.executor import make_executor
from infaas_sim.hardware import HardwareKind
from infaas_sim.policy import AddWorker, Load, LoadThenServe, Reject, Serve, Unload, make_policy
from infaas_sim.query import Application, Level, Requirement
from infaas_sim.simulation import ClusterSpec, Fault, RunSpec, Workload, run_simulation


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text and text.strip() == text
    return text


# --- validation before the run --------------------------------------------------------------------
def test_an_application_nothing_can_serve_is_a_one_line_config_error(h: Any, tiny_catalog: Any) -> None:
    apps = [h.task_app(slo_ms=100, index=0, name="fine"), h.task_app(slo_ms=1.0, index=1, name="greedy")]
    wl = h.workload(apps, np.array([0.1, 0.2]), np.array([0, 1]))
    with pytest.raises(ConfigError) as exc:
        run_simulation(tiny_catalog, wl, make_policy("static"), make_executor("sim"), h.spec(), RunSpec(duration_s=1))
    text = _one_line(exc)
    assert "application 'greedy'" in text
    assert "no variant meets task cls/ds within 1 ms" in text and "gpu-a, takes 2.5 ms" in text


@pytest.mark.parametrize(
    ("app", "fragment"),
    [
        (Application("acc", Requirement(Level.TASK, "cls", "ds", slo_ms=50, min_accuracy=0.95)), "reaches 0.800"),
        (Application("big", Requirement(Level.TASK, "cls", "ds", slo_ms=500), batch=32), "takes a batch of 32"),
        (Application("arch", Requirement(Level.ARCHITECTURE, "r50", slo_ms=2)), "the closest, gpu-a"),
    ],
)
def test_other_impossible_requirements(app: Application, fragment: str, h: Any, tiny_catalog: Any) -> None:
    wl = h.workload([app], np.array([0.1]))
    with pytest.raises(ConfigError) as exc:
        run_simulation(tiny_catalog, wl, make_policy("static"), make_executor("sim"), h.spec(), RunSpec(duration_s=1))
    assert fragment in _one_line(exc)


def test_unknown_names_in_an_application_are_config_errors(h: Any, tiny_catalog: Any) -> None:
    for req in (Requirement(Level.TASK, "det", "coco", slo_ms=10), Requirement(Level.VARIANT, "nope")):
        wl = h.workload([Application("x", req)], np.array([0.1]))
        with pytest.raises(ConfigError):
            run_simulation(
                tiny_catalog, wl, make_policy("static"), make_executor("sim"), h.spec(), RunSpec(duration_s=1)
            )


def test_a_pinned_application_with_a_batch_above_the_variants_max_is_refused(h: Any, tiny_catalog: Any) -> None:
    wl = h.workload([h.pinned_app("cpu-batch", batch=9)], np.array([0.1]))
    with pytest.raises(ConfigError, match="batch of 9"):
        run_simulation(
            tiny_catalog, wl, make_policy("static", replicas=1), make_executor("sim"), h.spec(), RunSpec(duration_s=1)
        )


def test_application_list_is_validated(h: Any, tiny_catalog: Any) -> None:
    a = h.task_app(slo_ms=100, index=0, name="a")
    dup = h.task_app(slo_ms=100, index=1, name="a")
    wl = h.workload([a, dup], np.array([0.1]))
    with pytest.raises(ConfigError, match="defined twice"):
        run_simulation(tiny_catalog, wl, make_policy("static"), make_executor("sim"), h.spec(), RunSpec(duration_s=1))
    misplaced = h.task_app(slo_ms=100, index=3, name="b")
    wl = h.workload([misplaced], np.array([0.1]))
    with pytest.raises(ConfigError, match="does not match its position"):
        run_simulation(tiny_catalog, wl, make_policy("static"), make_executor("sim"), h.spec(), RunSpec(duration_s=1))


def test_specs_and_workloads_validate_themselves(h: Any) -> None:
    app = h.pinned_app("cpu-d10")
    with pytest.raises(ConfigError, match="non-decreasing"):
        Workload([app], np.array([1.0, 0.5]), np.zeros(2, dtype=np.int64))
    with pytest.raises(ConfigError, match="app_index out of range"):
        Workload([app], np.array([1.0]), np.array([1]))
    with pytest.raises(ConfigError, match="differ in length"):
        Workload([app], np.array([1.0]), np.array([0, 0]))
    with pytest.raises(ConfigError, match="duration_s"):
        RunSpec(duration_s=0)
    with pytest.raises(ConfigError, match="max_queue_s"):
        ClusterSpec(max_queue_s=0)
    with pytest.raises(ConfigError):
        ClusterSpec(max_workers={HardwareKind.CPU: -1})
    with pytest.raises(ConfigError, match="fault kind"):
        Fault(at_s=1, kind="meteor")
    with pytest.raises(ConfigError, match=r"unknown policy 'nope'.*static"):
        make_policy("nope")
    with pytest.raises(ConfigError, match="policy 'static'"):
        make_policy("static", bogus=1)
    with pytest.raises(ConfigError, match="replicas"):
        make_policy("static", replicas=0)
    with pytest.raises(ConfigError, match=r"unknown executor 'nope'.*sim"):
        make_executor("nope")
    with pytest.raises(ConfigError, match="noise_cv"):
        make_executor("sim", noise_cv=-1)


def test_a_cluster_spec_naming_an_undefined_or_wrong_kind_type_is_refused(h: Any, tiny_catalog: Any) -> None:
    wl = h.workload([h.pinned_app("cpu-d10")], np.array([0.1]))
    for by_kind in ({HardwareKind.CPU: "nope"}, {HardwareKind.CPU: "gpu"}):
        with pytest.raises(ConfigError, match="instance type"):
            run_simulation(
                tiny_catalog, wl, make_policy("static"), make_executor("sim"),
                h.spec(type_by_kind=by_kind), RunSpec(duration_s=1),
            )  # fmt: skip


# --- decisions ------------------------------------------------------------------------------------------
def test_a_policy_rejection_is_recorded_with_its_reason(h: Any, conserved: Any) -> None:
    def route(query: Any, candidates: Any, view: Any) -> Any:
        return Reject(f"odd query {query.qid}") if query.qid % 2 else h.jsq(view, candidates.indices[0])

    t = h.periodic_times(0.1, 2.0)
    policy = h.Scripted(setup=[Load("gpu-a")], route=route, tick_s=None)
    res = h.simulate(h.VARIANTS, h.workload([h.task_app(slo_ms=50)], t), policy, 2.0)
    q = res.queries
    conserved(res, len(t))
    odd = q[q["qid"] % 2 == 1]
    assert (odd["status"] == "rejected").all()
    assert (odd["reason"] == [f"odd query {i}" for i in odd["qid"]]).all()
    assert np.allclose(odd["completion"], odd["arrival"])  # rejected on arrival
    assert (q.loc[q["qid"] % 2 == 0, "status"] == "served").all()
    assert res.summary["slo_violation_rate"] == pytest.approx(len(odd) / len(q))


def test_the_policy_sees_candidates_fastest_first_and_never_empty(h: Any) -> None:
    seen: list[tuple[int, ...]] = []

    def route(query: Any, candidates: Any, view: Any) -> Any:
        seen.append(candidates.indices)
        return Reject("just looking")

    apps = [h.task_app(slo_ms=5.0, index=0), h.task_app(slo_ms=100, index=1, min_accuracy=0.75)]
    t, idx = h.merge((np.array([0.1, 0.3]), 0), (np.array([0.2]), 1))
    batches = np.array([1, 1, 40])  # the third one fits nothing: the policy never sees it
    res = h.simulate(h.VARIANTS, h.workload(apps, t, idx, batches), h.Scripted(route=route, tick_s=None), 1.0)
    cat = {v.variant_id: i for i, v in enumerate(h.VARIANTS)}
    assert seen == [
        (cat["gpu-a"], cat["inf-a"], cat["gpu-b"]),
        (cat["gpu-a"], cat["gpu-b"]),
    ]
    assert res.queries.set_index("qid").loc[2, "reason"].startswith("no variant")


def test_serving_on_an_instance_that_is_gone_is_a_rejection(h: Any, conserved: Any) -> None:
    kept: dict[str, Any] = {}

    def route(query: Any, candidates: Any, view: Any) -> Any:
        if "inst" not in kept:
            kept["inst"] = view.all_instances()[0]
        return Serve(kept["inst"])

    policy = h.Scripted(setup=[Load("cpu-d10")], route=route, at={2.0: lambda v: [Unload(kept["inst"].iid)]})
    t = h.periodic_times(0.5, 4.0)
    res = h.simulate(h.VARIANTS, h.workload([h.pinned_app("cpu-d10")], t), policy, 4.0)
    q = res.queries
    conserved(res, len(t))
    assert (q.loc[q["arrival"] < 2.0, "status"] == "served").all()
    late = q[q["arrival"] > 2.0]
    assert (late["status"] == "rejected").all()
    assert late["reason"].str.contains("chose instance 0, which is gone").all()


def test_load_then_serve_without_room_is_a_rejection(h: Any, conserved: Any) -> None:
    policy = h.Scripted(route=lambda q, c, v: LoadThenServe("gpu-a"), tick_s=None)
    t = np.array([0.5, 1.0])
    res = h.simulate(
        h.VARIANTS, h.workload([h.pinned_app("gpu-a")], t), policy, 2.0,
        spec=h.spec(max_workers={HardwareKind.GPU: 0}),
    )  # fmt: skip
    q = res.queries
    conserved(res, 2)
    assert (q["status"] == "rejected").all()
    assert q["reason"].str.contains("no room to load gpu-a").all()


def test_an_unknown_action_is_a_config_error(h: Any) -> None:
    policy = h.Scripted(setup=["grow please"])
    with pytest.raises(ConfigError, match="unknown action 'grow please'"):
        h.simulate(h.VARIANTS, h.workload([h.pinned_app("cpu-d10")], np.array([0.5])), policy, 1.0)


def test_an_unknown_instance_type_is_a_config_error(h: Any) -> None:
    policy = h.Scripted(setup=[AddWorker("x9.huge")])
    with pytest.raises(ConfigError, match=r"unknown instance type 'x9\.huge'"):
        h.simulate(h.VARIANTS, h.workload([h.pinned_app("cpu-d10")], np.array([0.5])), policy, 1.0)


def test_admission_control_counts_queued_work_not_queries(h: Any, conserved: Any) -> None:
    # cpu-batch's queue is measured in full batches: 8 inputs per 20 ms. With max_queue_s =
    # 0.1, about 40 queued inputs are admitted; a burst of 100 at once leaves ~61 rejected.
    t = np.full(100, 1.0)
    res = h.simulate(
        h.VARIANTS, h.workload([h.pinned_app("cpu-batch")], t), make_policy("static", replicas=1), 2.0,
        spec=h.spec(max_queue_s=0.1),
    )  # fmt: skip
    q = res.queries
    conserved(res, 100)
    served = int((q["status"] == "served").sum())
    # The first query runs at once (a batch of 1, 6 ms); the expected wait counts that batch's
    # rest and the queue in full batches (8 inputs, 20 ms): 38 more queue before it passes 0.1 s.
    assert served == 39
    assert q.loc[q["status"] == "rejected", "reason"].str.contains("exceeds cluster.max_queue_s 0.1 s").all()


# --- policy choices the controller refuses ------------------------------------------------------------
def test_serving_on_a_variant_that_does_not_meet_the_requirement_is_rejected(h: Any, conserved: Any) -> None:
    # The application needs 8 ms; cpu-d10 (10 ms) is loaded and the policy sends everything to it.
    policy = h.Scripted(setup=[Load("cpu-d10")], route=lambda q, c, v: Serve(v.all_instances()[0]), tick_s=None)
    res = h.simulate(h.VARIANTS, h.workload([h.task_app(slo_ms=8)], np.array([0.1, 0.2])), policy, 1.0)
    conserved(res, 2)
    q = res.queries
    assert (q["status"] == "rejected").all()
    assert (
        q["reason"]
        .str.contains("policy test-scripted chose variant cpu-d10 which does not meet the query's requirement")
        .all()
    )


def test_a_query_above_the_chosen_variants_max_batch_is_rejected_not_run(h: Any, conserved: Any) -> None:
    policy = h.Scripted(setup=[Load("cpu-batch")], route=lambda q, c, v: Serve(v.all_instances()[0]), tick_s=None)
    app = h.task_app(slo_ms=100)
    wl = h.workload([app], np.array([0.1, 0.2]), batches=np.array([1, 9]))
    res = h.simulate(h.VARIANTS, wl, policy, 1.0)
    conserved(res, 2)
    q = res.queries.set_index("qid")
    assert q.loc[0, "status"] == "served"
    assert q.loc[1, "status"] == "rejected" and "batch 9" in q.loc[1, "reason"]


def test_load_then_serve_carries_cores_and_max_batch(h: Any) -> None:
    policy = h.Scripted(
        route=lambda q, c, v: LoadThenServe("cpu-batch", cores=4, max_batch=2),
        watch=lambda v: [(i.cores, i.max_batch) for i in v.all_instances()],
    )
    h.simulate(h.VARIANTS, h.workload([h.pinned_app("cpu-batch")], np.array([0.1])), policy, 1.5)
    assert dict(policy.log)[1.0] == [(4.0, 2)]


def test_load_then_serve_of_a_variant_that_does_not_meet_the_requirement_loads_nothing(h: Any) -> None:
    policy = h.Scripted(route=lambda q, c, v: LoadThenServe("gpu-b"), watch=lambda v: len(v.all_instances()))
    res = h.simulate(h.VARIANTS, h.workload([h.pinned_app("cpu-batch")], np.array([0.1])), policy, 1.5)
    assert res.queries["reason"].iloc[0].startswith("policy test-scripted chose variant gpu-b which does not meet")
    assert dict(policy.log)[1.0] == 0
