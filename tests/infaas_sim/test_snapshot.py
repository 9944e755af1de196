"""``view_from``: a policy's view built from plain data, with the cluster's own answers."""

from __future__ import annotations

import pytest

from infaas_sim.catalog import Catalog
from infaas_sim.errors import ConfigError
from infaas_sim.hardware import HardwareKind
from infaas_sim.snapshot import InstanceData, Rates, WorkerData, view_from
from infaas_sim.view import InstanceState, WorkerState
from tests.conftest import make_spec

CPU, GPU = HardwareKind.CPU, HardwareKind.GPU


def test_the_view_shows_the_workers_and_instances_the_data_describe(tiny_catalog: Catalog) -> None:
    cpu = next(v for v in tiny_catalog.variants if v.hardware is CPU)
    view = view_from(
        tiny_catalog,
        [WorkerData("cpu"), WorkerData("cpu", starting=True)],
        [InstanceData(cpu.variant_id, 0), InstanceData(cpu.variant_id, 0, loading=True)],
        now=10.0,
        spec=make_spec(),
    )
    assert view.now == 10.0
    ready, starting = sorted(view.workers(CPU), key=lambda w: w.wid)
    assert ready.state is WorkerState.READY and starting.state is WorkerState.STARTING
    assert starting.ready_at == 10.0 + starting.itype.startup_s
    a, b = view.instances_of(tiny_catalog.index_of[cpu.variant_id])
    assert a.state is InstanceState.READY and b.state is InstanceState.LOADING
    assert b.ready_at == pytest.approx(10.0 + cpu.load_latency_ms / 1000)
    assert ready.free_units() == ready.itype.capacity_units - 2 * cpu.allocation


def test_queries_given_to_a_ready_replica_run_a_batch_and_queue_the_rest(tiny_catalog: Catalog) -> None:
    cpu = next(v for v in tiny_catalog.variants if v.hardware is CPU)
    view = view_from(tiny_catalog, [WorkerData("cpu")], [InstanceData(cpu.variant_id, 0, max_batch=1, queries=3)],
                     spec=make_spec())  # fmt: skip
    (inst,) = view.all_instances()
    assert inst.busy and inst.inflight_inputs == 1 and inst.queued_inputs == 2
    # the running batch, then two more at batch 1: the cluster's own backlog estimate
    assert inst.backlog_s(0.0) == pytest.approx(3 * cpu.latency_ms(1) / 1000)


def test_recent_rates_are_read_over_the_seconds_before_now(tiny_catalog: Catalog) -> None:
    vid = tiny_catalog.variants[0].variant_id
    view = view_from(tiny_catalog, [], now=30.0, rates=Rates(apps={0: 50.0}, variants={vid: 20.0}, history_s=10),
                     spec=make_spec())  # fmt: skip
    assert view.app_rate(0, 10) == pytest.approx(50.0)
    assert view.app_rate(0, 20) == pytest.approx(25.0)  # only the last 10 s had traffic
    assert view.variant_input_rate(0, 5) == pytest.approx(20.0)
    assert view.total_rate_series(3) == [50.0, 50.0, 50.0]


def test_a_snapshot_that_cannot_be_built_says_why(tiny_catalog: Catalog) -> None:
    cpu = next(v for v in tiny_catalog.variants if v.hardware is CPU)
    with pytest.raises(ConfigError, match="instance 0 is on worker 1, not one of the 1 given"):
        view_from(tiny_catalog, [WorkerData("cpu")], [InstanceData(cpu.variant_id, 1)], spec=make_spec())
    with pytest.raises(ConfigError, match="unknown variant 'nope'"):
        view_from(tiny_catalog, [], rates=Rates(variants={"nope": 1.0}), spec=make_spec())
    with pytest.raises(ConfigError, match="does not fit on worker 0"):
        view_from(tiny_catalog, [WorkerData("cpu")], [InstanceData(cpu.variant_id, 0)] * 100, spec=make_spec())


def test_what_the_view_hands_out_cannot_change_the_cluster(tiny_catalog: Catalog) -> None:
    cpu = next(v for v in tiny_catalog.variants if v.hardware is CPU)
    view = view_from(tiny_catalog, [WorkerData("cpu")], [InstanceData(cpu.variant_id, 0)], spec=make_spec())
    vi = tiny_catalog.index_of[cpu.variant_id]
    with pytest.raises(TypeError):
        view.routable_map()[vi] = []  # type: ignore[index]
    with pytest.raises(TypeError):
        view.instance_types["cpu"] = view.instance_types["cpu"]  # type: ignore[index]
    assert len(view.routable_map()[vi]) == 1  # a read-only view of the live mapping
