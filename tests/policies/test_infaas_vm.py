"""INFaaS's VM autoscaler (policies/infaas_vm.py), on views built from plain data."""

from __future__ import annotations

from infaas_sim.catalog import Catalog
from infaas_sim.hardware import HardwareKind
from infaas_sim.policy import Action, AddWorker, RemoveWorker
from infaas_sim.snapshot import InstanceData, WorkerData, view_from
from infaas_sim.view import ClusterView
from policies.infaas_vm import VmAutoscaler
from tests.conftest import make_spec

CPU = HardwareKind.CPU
HIGH = {CPU: 0.8, HardwareKind.GPU: 0.8, HardwareKind.INFERENTIA: 0.7}


def vm(scale_out: str = "one", quiet: int = 3) -> VmAutoscaler:
    return VmAutoscaler(2.0, HIGH, 0.1, quiet, 30.0, scale_out)


def check(a: VmAutoscaler, view: ClusterView) -> list[Action]:
    out: list[Action] = []
    a.run(view, [CPU], out, True, lambda w: True)
    return out


def test_a_replica_without_room_adds_one_worker_then_the_kind_backs_off(tiny_catalog: Catalog) -> None:
    a = vm()
    view = view_from(tiny_catalog, [WorkerData("cpu")], spec=make_spec())
    a.want_room(CPU)
    a.want_room(CPU)
    assert check(a, view) == [AddWorker("cpu")]  # the released rule: one per action
    a.want_room(CPU)
    assert check(a, view) == []  # within the 30 s back-off: the ask is kept for later
    later = view_from(tiny_catalog, [WorkerData("cpu")], now=30.0, spec=make_spec())
    assert check(a, later) == [AddWorker("cpu")]


def test_demand_adds_the_workers_the_unplaced_replicas_need_in_one_step(tiny_catalog: Catalog) -> None:
    a = vm("demand")
    a.want_room(CPU)
    a.want_workers(CPU, 2.5)  # 2.5 workers' worth of replicas found no room this tick
    a.end_tick()
    view = view_from(tiny_catalog, [WorkerData("cpu")], spec=make_spec())
    assert check(a, view) == [AddWorker("cpu")] * 3
    first, step = a.first_worker_in(CPU, 0.0, 5.0)
    assert (first, step) == (35.0, 0.0)  # after the back-off and a start-up; the rest at once


def test_a_quiet_worker_is_released_after_its_checks_but_never_below_the_minimum(tiny_catalog: Catalog) -> None:
    cpu = next(v for v in tiny_catalog.variants if v.hardware is CPU)
    workers = [WorkerData("cpu"), WorkerData("cpu")]
    view = view_from(tiny_catalog, workers, [InstanceData(cpu.variant_id, 0)], now=10.0, spec=make_spec())
    a = vm(quiet=3)
    assert check(a, view) == [] and check(a, view) == []
    (removal,) = check(a, view)  # the third quiet check: the emptier worker goes
    assert isinstance(removal, RemoveWorker) and removal.worker_id == max(w.wid for w in view.workers(CPU))
    floor = view_from(tiny_catalog, workers, now=10.0, spec=make_spec(min_workers={CPU: 2}))
    b = vm(quiet=1)
    assert check(b, floor) == []


def test_a_worker_the_policy_holds_is_not_released(tiny_catalog: Catalog) -> None:
    view = view_from(tiny_catalog, [WorkerData("cpu"), WorkerData("cpu")], now=10.0, spec=make_spec())
    a = vm(quiet=1)
    out: list[Action] = []
    a.run(view, [CPU], out, True, lambda w: False)
    assert out == []


def test_a_check_is_due_every_period() -> None:
    a = vm()
    assert a.due(2.0) and not a.due(3.0) and a.due(4.0)
