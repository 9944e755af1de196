"""Online re-profiling: measured batch latencies update the profile the policy reads.

Static profiles go stale (the INFaaS paper's open question): hardware, a driver or a runtime
changes (in simulation: a ``drift`` fault), or a served batch also pays hand-offs a back-to-back
profile never saw. Every completed batch reports its execution time as the cluster measured it
(dispatch to completion: what a run records as ``execution_ms``; in simulation the executor's
time, noise and drift included). Per variant and batch size the last ``batches`` of them are
kept; when their median differs from the profile the policy reads by more than ``margin`` (a
fraction) for ``batches`` batches in a row, that variant's profile is updated: the measured
batch size's point becomes the median and the rest of its table is scaled by the same ratio
(a slower machine is slower at every batch size; a batch size measured later corrects its own
point). Updates are applied together (once per timeline sample) as one new catalog: the same
variants at the same indices, which the policy rebinds to; :meth:`Cluster.reprofile` gives its
instances the new tables and logs each update as an action with its old and new figures.

Only instances at their variant's profiled allocation report: a resized CPU replica's table is
interpolated from the core profile, not measured.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from infaas_sim.catalog import Catalog
from infaas_sim.errors import ConfigError


@dataclass(frozen=True)
class ReprofileSpec:
    """``run.reprofile``: off by default, so that a run reads its static profile as INFaaS does."""

    enabled: bool = False
    margin: float = 0.2  # the median may differ from the profile by this fraction before it counts
    batches: int = 20  # the window of batches per (variant, batch size), and the streak that updates

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"config: run.reprofile.enabled must be true or false, got {self.enabled!r}")
        if isinstance(self.margin, bool) or not isinstance(self.margin, int | float) or not self.margin > 0:
            raise ConfigError(f"config: run.reprofile.margin must be a number > 0, got {self.margin!r}")
        if isinstance(self.batches, bool) or not isinstance(self.batches, int) or self.batches < 1:
            raise ConfigError(f"config: run.reprofile.batches must be an integer >= 1, got {self.batches!r}")


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
    margin: float = ReprofileSpec.margin
    batches: int = ReprofileSpec.batches
    _tracks: dict[tuple[int, int], _Track] = field(default_factory=dict)
    pending: dict[tuple[int, int], Update] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ReprofileSpec(True, self.margin, self.batches)  # the same checks, one place

    def observe(self, vi: int, batch: int, measured_ms: float, profiled_ms: float) -> None:
        """One batch of ``batch`` inputs of variant ``vi`` took ``measured_ms``; the profile the
        policy reads says ``profiled_ms``."""
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
        """The catalog with the pending updates, and the updates (each with its batch size's
        old and new figure); the same catalog and no updates when none are pending."""
        if not self.pending:
            return catalog, []
        updates = list(self.pending.values())
        self.pending.clear()
        variants = list(catalog.variants)
        by_vi: dict[int, dict[int, float]] = {}
        for u in updates:
            by_vi.setdefault(u.vi, {})[u.batch] = u.new_ms
        out = []
        for vi, points in by_vi.items():
            v = variants[vi]
            old = v.latency_by_batch
            # One ratio for the rest of the table: the median of the measured batch sizes' ratios.
            ratio = float(np.median([ms / old[b] for b, ms in points.items()]))
            table = {b: old[b] * ratio for b in range(1, v.max_batch + 1)}
            table.update(points)  # the measured points exactly
            variants[vi] = dataclasses.replace(v, profile=tuple(sorted(table.items())))
        for u in updates:
            out.append(dataclasses.replace(u, new_ms=variants[u.vi].latency_by_batch[u.batch]))
        return Catalog(variants, name=catalog.name), out
