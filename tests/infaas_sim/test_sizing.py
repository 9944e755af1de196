"""Cost and capacity arithmetic on the tiny catalog (prices of the test instance types:
cpu 0.384 $/h for 8 vCPUs, gpu 3.06 $/h for 1 device, inf 0.362 $/h for 4 NeuronCores)."""

from __future__ import annotations

from typing import Any

import pytest

from infaas_sim.catalog import Catalog
from infaas_sim.hardware import HardwareKind
from infaas_sim.sizing import (
    BATCH_SLO_SHARE,
    cheapest_variant,
    replica_cost_per_hour,
    replica_throughput,
    replicas_needed,
    serving_batch,
)


def test_replica_cost_is_the_share_of_the_worker_it_holds(tiny_catalog: Catalog, h: Any) -> None:
    types = h.TYPES
    assert replica_cost_per_hour(tiny_catalog["cpu-d10"], types["cpu"]) == pytest.approx(0.384 * 2 / 8)
    assert replica_cost_per_hour(tiny_catalog["inf-a"], types["inf"]) == pytest.approx(0.362 / 4)
    # A GPU replica holds a whole device, whatever its allocation says.
    assert replica_cost_per_hour(tiny_catalog["gpu-a"], types["gpu"]) == pytest.approx(3.06)


def test_serving_batch_is_the_largest_within_the_slo_share(tiny_catalog: Catalog) -> None:
    v = tiny_catalog["cpu-batch"]  # 4 + 2b ms, max batch 8
    assert BATCH_SLO_SHARE == 0.5
    assert serving_batch(v, 40.0) == 8  # budget 20 ms: latency(8) = 20
    assert serving_batch(v, 39.9) == 7
    assert serving_batch(v, 20.0) == 3  # budget 10 ms: latency(3) = 10
    assert serving_batch(v, 5.0) == 1  # nothing fits: at least 1
    assert serving_batch(v, None) == 8
    assert serving_batch(v, 20.0, share=1.0) == 8
    assert serving_batch(tiny_catalog["cpu-d10"], 1000.0) == 1


def test_replica_throughput_and_replicas_needed(tiny_catalog: Catalog) -> None:
    v = tiny_catalog["cpu-batch"]
    assert replica_throughput(v, 40.0) == pytest.approx(400.0)  # 8 per 20 ms
    assert replica_throughput(v, 20.0) == pytest.approx(300.0)  # 3 per 10 ms
    # 1000/s at 80 % of 400/s: ceil(3.125) = 4.
    assert replicas_needed(v, 1000.0, 40.0) == 4
    assert replicas_needed(v, 960.0, 40.0) == 3  # exactly 3 x 320
    assert replicas_needed(v, 1000.0, 40.0, target_util=1.0) == 3
    assert replicas_needed(v, 0.0, 40.0) == 1
    assert replicas_needed(v, 1.0, 40.0) == 1


def test_cheapest_variant_for_light_and_heavy_load(tiny_catalog: Catalog, h: Any) -> None:
    all_idx = range(len(tiny_catalog))

    def pick(qps: float, slo: float) -> tuple[str, int]:
        vi, n = cheapest_variant(tiny_catalog, all_idx, qps, slo, h.TYPES, h.BY_KIND)
        return tiny_catalog.variants[vi].variant_id, n

    # 50/s: one replica of anything; inf-a (0.0905 $/h) undercuts the CPU ones (0.096).
    assert pick(50.0, 100.0) == ("inf-a", 1)
    # 2000/s within 100 ms: inf-a runs 8 in 9.4 ms = 851/s, 681/s at 80 % -> 3 replicas
    # (0.27 $/h); cpu-batch needs 7 (0.67), cpu-d10 25 (2.4), gpu-a 2 (6.12).
    assert pick(2000.0, 100.0) == ("inf-a", 3)


def test_cheapest_variant_breaks_cost_ties_by_speed(tiny_catalog: Catalog, h: Any) -> None:
    # cpu-d10 and cpu-batch both cost 0.096 $/h for one replica; cpu-batch is faster (6 ms).
    idx = [tiny_catalog.index_of["cpu-d10"], tiny_catalog.index_of["cpu-batch"]]
    vi, n = cheapest_variant(tiny_catalog, idx, 10.0, 100.0, h.TYPES, h.BY_KIND)
    assert tiny_catalog.variants[vi].variant_id == "cpu-batch" and n == 1


def test_cheapest_variant_skips_hardware_without_a_worker_type(tiny_catalog: Catalog, h: Any) -> None:
    gpu_only = {HardwareKind.GPU: "gpu"}
    vi, _ = cheapest_variant(tiny_catalog, range(len(tiny_catalog)), 50.0, 100.0, h.TYPES, gpu_only)
    # gpu-a and gpu-b both hold one device (3.06 $/h) for 50/s: the faster one, gpu-a, wins.
    assert tiny_catalog.variants[vi].variant_id == "gpu-a"
    with pytest.raises(ValueError, match="no candidate"):
        cheapest_variant(tiny_catalog, [tiny_catalog.index_of["cpu-d10"]], 50.0, 100.0, h.TYPES, gpu_only)
