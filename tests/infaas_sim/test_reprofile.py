"""The ``drift`` fault and online re-profiling (infaas_sim/reprofile.py) in simulation.

The tiny catalog's ``cpu-d10`` runs a deterministic 10 ms per batch of one, so a drift's
factor and a re-profile's new figure show exactly in each query's ``execution_ms``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from infaas_sim.catalog import Catalog
from infaas_sim.errors import ConfigError
from infaas_sim.experiment import build_run
from infaas_sim.policy import Load, make_policy
from infaas_sim.reprofile import Reprofiler, ReprofileSpec
from infaas_sim.simulation import Fault, RunResult
from infaas_sim.view import ClusterView


def _started(res: RunResult) -> Any:
    q = res.queries[res.queries["status"] == "served"]
    return q, q["completion"] - q["execution_ms"] / 1000


def _actions(res: RunResult, word: str) -> list[tuple[float, str]]:
    return [(t, a) for t, a in res.actions if a.startswith(word)]


def _profile(view: ClusterView) -> tuple[float, list[float]]:
    """What the policy reads for cpu-d10 at batch 1: the catalog's figure and its replicas'."""
    vi = view.catalog.index_of["cpu-d10"]
    return view.catalog.variants[vi].latency_by_batch[1], [i.latency_ms(1) for i in view.instances_of(vi)]


def _drift_run(h: Any, conserved: Any, reprofile: ReprofileSpec | None, factor: float = 2.0, **fault: Any) -> Any:
    t = h.periodic_times(0.05, 20.0)
    policy = h.Scripted(setup=[Load("cpu-d10")], watch=_profile)
    faults = [Fault(at_s=5.0, kind="drift", factor=factor, **(fault or {"hardware": "cpu"}))]
    kw: dict[str, Any] = {} if reprofile is None else {"reprofile": reprofile}
    res = h.simulate(h.VARIANTS, h.workload([h.pinned_app("cpu-d10")], t), policy, 20.0, faults=faults, **kw)
    conserved(res, len(t))
    return res, policy.log


@pytest.mark.parametrize("target", [{"hardware": "cpu"}, {"variant": "cpu-d10"}])
@pytest.mark.parametrize("factor", [3.0, 0.5])
def test_drift_runs_batches_factor_times_their_profile_from_its_time(
    h: Any, conserved: Any, target: dict[str, str], factor: float
) -> None:
    res, log = _drift_run(h, conserved, None, factor, **target)
    q, start = _started(res)
    assert np.allclose(q.loc[start > 5.0 + 1e-6, "execution_ms"], 10.0 * factor)
    assert np.allclose(q.loc[start < 5.0 - 1e-6, "execution_ms"], 10.0)
    assert len(_actions(res, "drift")) == 1 and _actions(res, "drift")[0][0] == 5.0
    # The policy keeps reading the stale profile.
    assert all(p == (10.0, [10.0]) for _, p in log)


def test_a_drift_of_one_hardware_kind_leaves_the_others_alone(h: Any, conserved: Any) -> None:
    t, idx = h.merge((h.periodic_times(0.05, 10.0), 0), (h.periodic_times(0.05, 10.0), 1))
    apps = [h.pinned_app("cpu-d10", 0), h.pinned_app("gpu-a", 1)]
    policy = h.Scripted(setup=[Load("cpu-d10"), Load("gpu-a")])
    res = h.simulate(h.VARIANTS, h.workload(apps, t, idx), policy, 10.0,
                     faults=[Fault(at_s=2.0, kind="drift", hardware="gpu", factor=4.0)])  # fmt: skip
    conserved(res, len(t))
    q, start = _started(res)
    late, early = start > 2.0 + 1e-6, start < 2.0 - 1e-6  # a batch starting at 2.0 may be either
    assert np.allclose(q.loc[(q["variant"] == "cpu-d10"), "execution_ms"], 10.0)
    gpu = q["variant"] == "gpu-a"
    assert np.allclose(q.loc[gpu & late, "execution_ms"], 4 * 2.5)
    assert np.allclose(q.loc[gpu & early, "execution_ms"], 2.5)


def test_reprofiling_updates_the_profile_after_its_batches_and_logs_it(h: Any, conserved: Any) -> None:
    res, log = _drift_run(h, conserved, ReprofileSpec(enabled=True, margin=0.2, batches=5))
    (when, line), *more = _actions(res, "reprofile")
    assert not more  # once the profile says 20 ms, 20 ms batches are on profile
    assert line == "reprofile cpu-d10 batch 1: 10 ms -> 20 ms (median of 5 served batches); table x2"
    # Seven drifted batches (3 to tip the median of 5, then 5 in a row), one every 0.05 s from
    # 5 s: pending at 5.3 s, applied at the next timeline sample.
    assert when == 6.0
    # The catalog the policy reads and the replica's table agree, before and after.
    assert all(p == (10.0, [10.0]) for t, p in log if t <= 6.0)
    # (20 ms as the cluster measured it: a difference of two clock readings)
    assert all(p == (pytest.approx(20.0), [pytest.approx(20.0)]) for t, p in log if t > 6.0)
    # The hardware did not change: batches still take the drifted 20 ms, not 40.
    q, start = _started(res)
    assert np.allclose(q.loc[start > 5.0 + 1e-6, "execution_ms"], 20.0)


def test_reprofiler_fires_after_half_a_window_then_a_streak_of_batches() -> None:
    rp = Reprofiler(margin=0.2, batches=5)
    for _ in range(10):
        rp.observe(0, 1, 10.0, 10.0)
    fired = []
    for k in range(1, 10):
        rp.observe(0, 1, 20.0, 10.0)
        if rp.pending:
            fired.append(k)
            break
    assert fired == [7]
    rp2 = Reprofiler(margin=0.2, batches=5)
    for _ in range(50):
        rp2.observe(0, 1, 11.9, 10.0)  # within the margin: never
    assert not rp2.pending


def test_an_update_scales_the_whole_table_and_sets_the_measured_point(tiny_catalog: Catalog) -> None:
    vi = tiny_catalog.index_of["cpu-batch"]  # 4 + 2 b ms
    rp = Reprofiler(margin=0.2, batches=1)
    rp.observe(vi, 4, 24.0, 12.0)
    cat, (u,) = rp.apply(tiny_catalog)
    new = cat.variants[vi].latency_by_batch
    assert (u.old_ms, u.new_ms, u.batch) == (12.0, 24.0, 4)
    assert new[4] == 24.0
    assert np.allclose(new[1:], 2 * np.array(tiny_catalog.variants[vi].latency_by_batch[1:]))
    assert [v.variant_id for v in cat.variants] == [v.variant_id for v in tiny_catalog.variants]
    assert cat.variants[vi - 1] is tiny_catalog.variants[vi - 1]  # the others untouched
    assert rp.apply(cat) == (cat, [])


def test_disabled_nothing_changes(h: Any, conserved: Any) -> None:
    off, log = _drift_run(h, conserved, None)
    assert not _actions(off, "reprofile") and all(p == (10.0, [10.0]) for _, p in log)
    explicit, _ = _drift_run(h, conserved, ReprofileSpec(enabled=False, margin=0.01, batches=1))
    assert off.queries.equals(explicit.queries) and off.actions == explicit.actions
    # On but with nothing to correct (no drift, a deterministic profile): the same run.
    t = h.periodic_times(0.05, 10.0)
    runs = [
        h.simulate(
            h.VARIANTS,
            h.workload([h.pinned_app("cpu-d10")], t),
            make_policy("static", replicas=1),
            10.0,
            reprofile=spec,
        )
        for spec in (ReprofileSpec(), ReprofileSpec(enabled=True, batches=2))
    ]
    assert runs[0].queries.equals(runs[1].queries) and runs[0].actions == runs[1].actions


def _run_cfg(**fault: Any) -> dict[str, Any]:
    return {"duration_s": 10, "faults": [{"at_s": 1.0, "kind": "drift", **fault}]}


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (_run_cfg(), "fault drift needs one of hardware"),
        (_run_cfg(hardware="cpu", variant="cpu-d10"), "fault drift needs one of hardware"),
        (_run_cfg(hardware="tpu"), "fault drift hardware must be one of cpu, gpu, inferentia, got 'tpu'"),
        (_run_cfg(variant=""), "fault drift variant must be a variant id"),
        (_run_cfg(hardware="cpu", worker=0), "fault drift: worker does not apply"),
        (_run_cfg(hardware="cpu", length_s=5), "a drift has no length_s"),
        (_run_cfg(hardware="cpu", factor=0), "factor and length_s > 0"),
        (_run_cfg(hardware="cpu", factor="2x"), "fault factor must be a finite number"),
        (_run_cfg(hardware="cpu", at_s=-1), "fault at_s must be >= 0"),
        (_run_cfg(hardware="cpu", speed=2), r"unknown key\(s\) \['speed'\] in run.faults"),
        (
            {"duration_s": 10, "faults": [{"at_s": 1, "kind": "slowdown", "hardware": "cpu"}]},
            "fault slowdown: hardware applies to drift faults only",
        ),
        ({"duration_s": 10, "reprofile": {"margin": 0}}, "run.reprofile.margin must be a number > 0"),
        ({"duration_s": 10, "reprofile": {"batches": 0}}, "run.reprofile.batches must be an integer >= 1"),
        ({"duration_s": 10, "reprofile": {"batches": 2.5}}, "run.reprofile.batches must be a int"),
        ({"duration_s": 10, "reprofile": {"enabled": "yes"}}, "run.reprofile.enabled must be true or false"),
        ({"duration_s": 10, "reprofile": {"window": 3}}, r"unknown key\(s\) \['window'\] in run.reprofile"),
        ({"duration_s": 10, "reprofile": True}, "run.reprofile must be a mapping"),
    ],
)
def test_bad_drift_and_reprofile_fields_are_one_line_errors(cfg: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as exc:
        build_run(cfg)
    assert "\n" not in str(exc.value)


def test_a_drift_of_an_unknown_variant_is_refused_before_the_run(h: Any) -> None:
    t = h.periodic_times(0.5, 5.0)
    with pytest.raises(ConfigError, match="fault drift: unknown variant 'nope' in catalog tiny") as exc:
        h.simulate(h.VARIANTS, h.workload([h.pinned_app("cpu-d10")], t), make_policy("static", replicas=1), 5.0,
                   faults=[Fault(at_s=1.0, kind="drift", variant="nope")])  # fmt: skip
    assert "\n" not in str(exc.value)


def test_the_run_config_reads_reprofile_and_drift() -> None:
    run = build_run({"duration_s": 10, "reprofile": {"enabled": True, "batches": 5},
                     "faults": [{"at_s": 1, "kind": "drift", "hardware": "gpu", "factor": 0.5}]})  # fmt: skip
    assert run.reprofile == ReprofileSpec(enabled=True, margin=0.2, batches=5)
    assert run.faults == (Fault(at_s=1, kind="drift", factor=0.5, hardware="gpu"),)
    assert build_run({"duration_s": 10}).reprofile == ReprofileSpec()
