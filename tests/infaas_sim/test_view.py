"""What policies read: the per-tick unplaced-load count (overall and per hardware kind), the
running variants, per-instance observed latency and arrival rate, and clear errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from infaas_sim.errors import ConfigError
from infaas_sim.hardware import HardwareKind
from infaas_sim.policy import Load
from infaas_sim.simulation import Fault

CPU, GPU = HardwareKind.CPU, HardwareKind.GPU


def test_unplaced_loads_of_a_tick_show_in_the_next_ticks_view_per_kind(h: Any) -> None:
    # One CPU worker at most: at 1 s five 2-core loads ask for 10 of its 8 cores, so one is
    # unplaced; the view at 2 s says so (for cpu), the view at 3 s no longer does.
    policy = h.Scripted(
        at={1.0: lambda v: [Load("cpu-d10")] * 5},
        watch=lambda v: (v.unplaced(), dict(v.unplaced_loads_by_kind())),
    )
    spec = h.spec(max_workers={CPU: 1})
    h.simulate(h.VARIANTS, h.workload([h.pinned_app("cpu-d10")], np.array([0.5])), policy, 4.0, spec=spec)
    log = dict(policy.log)
    assert log[1.0] == (0, {})
    assert log[2.0] == (1, {CPU: 1})
    assert log[3.0] == (0, {})


def test_running_variants_are_catalog_indices(h: Any, tiny_catalog: Any) -> None:
    policy = h.Scripted(setup=[Load("cpu-batch"), Load("gpu-a")], watch=lambda v: v.running_variants())
    h.simulate(tiny_catalog, h.workload([h.pinned_app("cpu-batch")], np.array([0.5])), policy, 2.0)
    running = dict(policy.log)[1.0]
    assert all(isinstance(vi, int) for vi in running)
    assert sorted(running) == sorted([tiny_catalog.index_of["cpu-batch"], tiny_catalog.index_of["gpu-a"]])


def test_instance_type_for_an_unconfigured_kind_is_a_config_error(h: Any) -> None:
    seen: list[str] = []

    def watch(view: Any) -> None:
        assert view.instance_type_for(CPU).name == "cpu"
        with pytest.raises(ConfigError, match="no instance type is configured for gpu workers") as exc:
            view.instance_type_for(GPU)
        with pytest.raises(KeyError):  # policies that skip a missing kind by KeyError keep working
            view.instance_type_for(GPU)
        seen.append(str(exc.value))

    spec = h.spec(type_by_kind={CPU: "cpu"})
    policy = h.Scripted(setup=[Load("cpu-d10")], watch=watch)
    h.simulate(h.VARIANTS, h.workload([h.pinned_app("cpu-d10")], np.array([0.5])), policy, 1.5, spec=spec)
    assert seen and "\n" not in seen[0] and not seen[0].startswith("'")


def test_observed_latency_follows_a_slowdown_and_the_arrival_rate_is_per_instance(h: Any) -> None:
    # Ten queries a second on one cpu-d10 (10 ms); worker 0 runs 2x slower from 3 s on.
    def watch(view: Any) -> tuple[float, float, float, float, int]:
        inst = view.instance(0)
        return (inst.latency_ratio, inst.observed_latency_ms(1), inst.arrival_rate(2.0), inst.last_batch_ms,
                inst.last_batch_inputs)  # fmt: skip

    policy = h.Scripted(setup=[Load("cpu-d10")], watch=watch)
    t = h.periodic_times(0.1, 10.0, start=0.05)
    h.simulate(h.VARIANTS, h.workload([h.pinned_app("cpu-d10")], t), policy, 10.0,
               faults=[Fault(at_s=3.0, kind="slowdown", worker=0, factor=2.0, length_s=100.0)])  # fmt: skip
    log = dict(policy.log)
    ratio, observed, rate, last_ms, last_inputs = log[2.0]
    assert ratio == pytest.approx(1.0) and observed == pytest.approx(10.0)
    assert rate == pytest.approx(10.0)
    assert last_ms == pytest.approx(10.0) and last_inputs == 1
    ratio, observed, _, last_ms, _ = log[9.0]
    assert ratio == pytest.approx(2.0, rel=1e-3) and observed == pytest.approx(20.0, rel=1e-3)
    assert last_ms == pytest.approx(20.0)
