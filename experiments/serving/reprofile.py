"""Online re-profiling: measured batch latencies update the profile the policy reads.

Static profiles go stale (the INFaaS paper's open question): a runtime, driver or machine
changes, or the profile was taken back to back while served batches also pay the hand-offs
between the loop and the runtime threads. Every served batch reports its execution time as
the cluster measured it (dispatch to completion, as a run records ``execution_ms``). Per
variant and batch size the last ``batches`` of them are kept; when their median differs from
the profiled latency by more than ``margin`` (a fraction) for ``batches`` batches in a row,
that batch size's profile point becomes the median. Updates are applied together, once per
timeline sample, as one new catalog (the same variants at the same indices; the policy
rebinds to it), and each is logged as an action with its old and new figures.

Only instances at their variant's profiled allocation report (a resized CPU replica's table
is interpolated from the core profile, not measured).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from infaas_sim.catalog import Catalog
from infaas_sim.errors import ConfigError


@dataclass(frozen=True)
class Update:
    vi: int
    batch: int
    old_ms: float
    new_ms: float
    samples: int


@dataclass
class _Track:
    recent: deque[float]
    streak: int = 0


@dataclass
class Reprofiler:
    margin: float = 0.5
    batches: int = 20
    _tracks: dict[tuple[int, int], _Track] = field(default_factory=dict)
    pending: dict[tuple[int, int], Update] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.margin > 0 or self.batches < 1:
            raise ConfigError("config: server.reprofile_margin must be > 0 and server.reprofile_batches >= 1")

    def observe(self, vi: int, batch: int, measured_ms: float, profiled_ms: float) -> None:
        """One served batch of ``batch`` inputs of variant ``vi`` took ``measured_ms``."""
        key = (vi, batch)
        t = self._tracks.get(key)
        if t is None:
            t = self._tracks[key] = _Track(deque(maxlen=self.batches))
        t.recent.append(measured_ms)
        if len(t.recent) < self.batches:
            return
        median = float(np.median(t.recent))
        if abs(median / profiled_ms - 1) <= self.margin:
            t.streak = 0
            return
        t.streak += 1
        if t.streak >= self.batches:
            self.pending[key] = Update(vi, batch, profiled_ms, median, len(t.recent))
            t.streak = 0
            t.recent.clear()  # the next decision is on batches measured against the new profile

    def apply(self, catalog: Catalog) -> tuple[Catalog, list[Update]]:
        """The catalog with the pending updates (each batch size's profile point set to its
        measured median), and the updates; the same catalog when there are none."""
        if not self.pending:
            return catalog, []
        updates = list(self.pending.values())
        self.pending.clear()
        variants = list(catalog.variants)
        by_vi: dict[int, dict[int, float]] = {}
        for u in updates:
            by_vi.setdefault(u.vi, {})[u.batch] = u.new_ms
        for vi, points in by_vi.items():
            v = variants[vi]
            # Every batch size's current latency as a point, then the measured ones over them:
            # the rest of the curve stays what it was.
            table = {b: v.latency_by_batch[b] for b in range(1, v.max_batch + 1)}
            table.update(points)
            variants[vi] = dataclasses.replace(v, profile=tuple(sorted(table.items())))
        return Catalog(variants, name=catalog.name), updates
