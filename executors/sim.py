"""The simulated executor: loads and batches take their profiled latency.

The profiled latency is the one the run started with (``Instance.run_table``), times the
worker's slowdown and the replica's ``drift`` (the run's ``drift`` faults): what the policy
reads may since have been re-profiled, the simulated hardware has not changed.

Each batch's latency is multiplied by a log-normal factor with mean 1 and coefficient of
variation (std / mean) the variant's measured run-to-run spread, the catalog's ``latency_cv``
(the profiler's; 0 where a row has none, as the modelled accelerator rows: deterministic).
``noise_cv`` set to a number uses that spread for every variant instead (0: no noise). Draws
come in blocks from one seeded generator, so a run is reproducible bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from infaas_sim.clock import Clock, Completion
from infaas_sim.errors import ConfigError
from infaas_sim.executor import Executor, register_executor

if TYPE_CHECKING:
    from infaas_sim.cluster import Instance
    from infaas_sim.query import Query

_BLOCK = 4096


@register_executor("sim")
class SimExecutor(Executor):
    def __init__(self, noise_cv: float | None = None) -> None:
        if noise_cv is not None and (isinstance(noise_cv, bool) or not isinstance(noise_cv, int | float)):
            raise ConfigError(f"executor sim: noise_cv must be a number or null (the catalog's), got {noise_cv!r}")
        if noise_cv is not None and not noise_cv >= 0:
            raise ConfigError(f"executor sim: noise_cv must be >= 0, got {noise_cv}")
        self.noise_cv = noise_cv
        self._normals: list[float] = []
        # cv -> (mu, sigma) of the log-normal with mean 1 and that coefficient of variation
        self._shape: dict[float, tuple[float, float]] = {}

    def bind(self, clock: Clock, seed: int) -> None:
        super().bind(clock, seed)
        self._rng = np.random.default_rng([seed, 0x51A])
        self._normals = []

    def _factor(self, cv: float) -> float:
        shape = self._shape.get(cv)
        if shape is None:
            s2 = math.log1p(cv**2)
            shape = self._shape[cv] = (-s2 / 2, math.sqrt(s2))
        if not self._normals:
            self._normals = self._rng.standard_normal(_BLOCK).tolist()
        return math.exp(shape[0] + shape[1] * self._normals.pop())

    def load(self, instance: Instance) -> Completion:
        return self.clock.after(instance.variant.load_latency_ms / 1000)

    def run(self, instance: Instance, inputs: int, queries: Sequence[Query]) -> Completion:
        # The hardware's table and drift, not the profile the policy reads (re-profiling may
        # have updated that): x * 1.0 is exact, so runs without drift are unchanged.
        ms = instance.run_table[inputs] * instance.worker.slowdown * instance.drift
        cv = instance.variant.latency_cv if self.noise_cv is None else self.noise_cv
        if cv:
            ms *= self._factor(cv)
        return self.clock.after(ms / 1000)
