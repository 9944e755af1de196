"""Cost and capacity arithmetic shared by policies: what a replica costs, what it serves.

A replica's cost is the share of its worker's price it occupies: cores / vCPUs on CPU,
NeuronCores / NeuronCores per worker on Inferentia, and a whole device on GPU (a replica
that needs a GPU's throughput holds it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from infaas_sim.catalog import Catalog
from infaas_sim.hardware import HardwareKind, InstanceType
from infaas_sim.variant import Variant

# A batch may use at most this share of the SLO: the rest is left for queueing and batching.
BATCH_SLO_SHARE = 0.5


def replica_cost_per_hour(variant: Variant, itype: InstanceType) -> float:
    if variant.hardware is HardwareKind.CPU:
        return itype.price_per_hour * variant.allocation / itype.vcpus
    if variant.hardware is HardwareKind.INFERENTIA:
        return itype.price_per_hour * variant.allocation / itype.accelerators
    return itype.price_per_hour / itype.accelerators


def serving_batch(variant: Variant, slo_ms: float | None, share: float = BATCH_SLO_SHARE) -> int:
    """The largest batch whose latency fits in ``share`` of the SLO (at least 1)."""
    if slo_ms is None:
        return variant.max_batch
    budget = slo_ms * share
    best = 1
    for b in range(1, variant.max_batch + 1):
        if variant.latency_by_batch[b] <= budget:
            best = b
    return best


def replica_throughput(variant: Variant, slo_ms: float | None) -> float:
    """Inputs per second one replica sustains at its serving batch."""
    return variant.throughput_qps(serving_batch(variant, slo_ms))


def replicas_needed(variant: Variant, input_qps: float, slo_ms: float | None, target_util: float = 0.8) -> int:
    if input_qps <= 0:
        return 1
    return max(1, math.ceil(input_qps / (replica_throughput(variant, slo_ms) * target_util)))


def cheapest_variant(
    catalog: Catalog,
    indices: Iterable[int],
    input_qps: float,
    slo_ms: float | None,
    instance_types: Mapping[str, InstanceType],
    type_by_kind: Mapping[HardwareKind, str],
    target_util: float = 0.8,
) -> tuple[int, int]:
    """(variant index, replicas) of the cheapest way to serve ``input_qps`` with one variant;
    ties go to the faster variant."""
    best: tuple[float, float, int, int] | None = None
    for vi in indices:
        v = catalog.variants[vi]
        tname = type_by_kind.get(v.hardware)
        if tname is None:
            continue
        n = replicas_needed(v, input_qps, slo_ms, target_util)
        key = (n * replica_cost_per_hour(v, instance_types[tname]), v.latency_by_batch[1], vi, n)
        if best is None or key < best:
            best = key
    if best is None:
        raise ValueError("no candidate variant runs on a configured worker type")
    return best[2], best[3]
