"""The simulated executor: loads and batches take their profiled latency.

An optional noise model multiplies each batch's latency by a log-normal factor with mean 1
and coefficient of variation ``noise_cv`` (fit it to real measurements: the profiler's p99 /
p50 ratio gives the spread). Draws come in blocks from one seeded generator, so a run is
reproducible bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import simpy

from infaas_sim.errors import ConfigError
from infaas_sim.executor import Executor, register_executor

if TYPE_CHECKING:
    from infaas_sim.cluster import Instance
    from infaas_sim.query import Query

_BLOCK = 4096


@register_executor("sim")
class SimExecutor(Executor):
    def __init__(self, noise_cv: float = 0.0) -> None:
        if noise_cv < 0:
            raise ConfigError(f"executor sim: noise_cv must be >= 0, got {noise_cv}")
        self.noise_cv = noise_cv
        self._noise: list[float] = []

    def bind(self, env: simpy.Environment, seed: int) -> None:
        super().bind(env, seed)
        self._rng = np.random.default_rng([seed, 0x51A])
        self._noise = []

    def _factor(self) -> float:
        if not self._noise:
            s2 = math.log1p(self.noise_cv**2)
            self._noise = self._rng.lognormal(-s2 / 2, math.sqrt(s2), _BLOCK).tolist()
        return self._noise.pop()

    def load(self, instance: Instance) -> simpy.Event:
        return self.env.timeout(instance.variant.load_latency_ms / 1000)

    def run(self, instance: Instance, inputs: int, queries: Sequence[Query]) -> simpy.Event:
        ms = instance.latency_table[inputs] * instance.worker.slowdown
        if self.noise_cv:
            ms *= self._factor()
        return self.env.timeout(ms / 1000)
