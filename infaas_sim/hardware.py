"""Instance types (VMs) the cluster can rent, with their on-demand prices.

Prices are AWS EC2 on-demand list prices, Linux, us-east-1, as published on
https://aws.amazon.com/ec2/pricing/on-demand/ (the INFaaS evaluation's instances:
m5.2xlarge CPU workers, p3.2xlarge V100 GPU workers, inf1.2xlarge Inferentia workers).
Start-up latencies are not published by AWS; the defaults (time from request until the
VM can load models) are our assumption from common EC2 boot times and are config values.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from infaas_sim.errors import ConfigError


class HardwareKind(StrEnum):
    CPU = "cpu"
    GPU = "gpu"
    INFERENTIA = "inferentia"


@dataclass(frozen=True, slots=True)
class InstanceType:
    """A rentable VM type.

    ``accelerators`` counts devices that variants of ``kind`` run on: GPUs for gpu workers,
    NeuronCores for inferentia workers (an Inferentia chip has 4), 0 for cpu workers.
    ``accelerator_memory_mb`` is per device (GPU memory); 0 where not applicable.
    """

    name: str
    kind: HardwareKind
    vcpus: int
    memory_mb: int
    price_per_hour: float
    startup_s: float = 60.0
    accelerators: int = 0
    accelerator_memory_mb: int = 0
    source: str = ""

    def __post_init__(self) -> None:
        if self.vcpus <= 0 or self.memory_mb <= 0:
            raise ConfigError(f"instance type {self.name!r}: vcpus and memory must be positive")
        if self.price_per_hour < 0 or self.startup_s < 0:
            raise ConfigError(f"instance type {self.name!r}: price and start-up must be >= 0")
        if self.kind is not HardwareKind.CPU and self.accelerators <= 0:
            raise ConfigError(f"instance type {self.name!r}: a {self.kind.value} type needs accelerators > 0")

    @property
    def price_per_second(self) -> float:
        return self.price_per_hour / 3600.0

    @property
    def capacity_units(self) -> int:
        """What utilisation is measured against: vCPUs on CPU, devices on accelerators."""
        return self.vcpus if self.kind is HardwareKind.CPU else self.accelerators


_AWS = "AWS EC2 on-demand, Linux, us-east-1 list price"

DEFAULT_INSTANCE_TYPES: dict[str, InstanceType] = {
    t.name: t
    for t in (
        InstanceType("m5.2xlarge", HardwareKind.CPU, 8, 32 * 1024, 0.384, 60.0, source=_AWS),
        InstanceType("c5.2xlarge", HardwareKind.CPU, 8, 16 * 1024, 0.340, 60.0, source=_AWS),
        InstanceType("c5.4xlarge", HardwareKind.CPU, 16, 32 * 1024, 0.680, 60.0, source=_AWS),
        # One V100 with 16 GB: the INFaaS GPU worker.
        InstanceType("p3.2xlarge", HardwareKind.GPU, 8, 61 * 1024, 3.060, 90.0, 1, 16 * 1024, _AWS),
        # One Inferentia chip = 4 NeuronCores: the INFaaS Inferentia worker.
        InstanceType("inf1.2xlarge", HardwareKind.INFERENTIA, 8, 16 * 1024, 0.362, 90.0, 4, 8 * 1024, _AWS),
    )
}

DEFAULT_TYPE_BY_KIND: dict[HardwareKind, str] = {
    HardwareKind.CPU: "m5.2xlarge",
    HardwareKind.GPU: "p3.2xlarge",
    HardwareKind.INFERENTIA: "inf1.2xlarge",
}


def parse_kind(value: str) -> HardwareKind:
    try:
        return HardwareKind(value)
    except ValueError:
        allowed = ", ".join(k.value for k in HardwareKind)
        raise ConfigError(f"unknown hardware kind {value!r} (expected one of: {allowed})") from None
