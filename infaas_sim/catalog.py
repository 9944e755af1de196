"""The variant catalog (INFaaS's metadata store): schema, validated loading, hot-path indexes.

A catalog is rows of variants stored as CSV or Parquet. Loading validates every row and names
the row and column of the first problem. Indexes are built once; ``candidates`` answers
"variants meeting this requirement at this batch" from a memo, so the hot path never scans.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from infaas_sim.errors import CatalogError, ConfigError
from infaas_sim.hardware import HardwareKind
from infaas_sim.query import Level, Requirement
from infaas_sim.variant import Variant

# column -> (python type, required)
SCHEMA: dict[str, tuple[type, bool]] = {
    "variant_id": (str, True),
    "architecture": (str, True),
    "task": (str, True),
    "dataset": (str, True),
    "framework": (str, True),
    "hardware": (str, True),
    "precision": (str, True),
    "allocation": (float, True),
    "max_batch": (int, True),
    "accuracy": (float, True),
    "load_latency_ms": (float, True),
    "memory_mb": (float, True),
    "latency_intercept_ms": (float, True),
    "latency_slope_ms": (float, True),
    "profile": (str, False),  # "batch:ms;batch:ms" measured points
    "gflops": (float, False),
    "source": (str, False),
}
COLUMNS = list(SCHEMA)

DEFAULT_CATALOG = "default"


def _parse_profile(text: str) -> tuple[tuple[int, float], ...]:
    pts = []
    for item in text.split(";"):
        item = item.strip()
        if not item:
            continue
        b, ms = item.split(":")
        pts.append((int(b), float(ms)))
    pts.sort()
    if len({b for b, _ in pts}) != len(pts) or any(b < 1 or ms <= 0 for b, ms in pts):
        raise ValueError("batches must be distinct and >= 1, latencies > 0")
    return tuple(pts)


def _cell(value: Any, typ: type, required: bool) -> Any:
    missing = value is None or (isinstance(value, float) and math.isnan(value)) or value == ""
    if missing:
        if required:
            raise ValueError("missing value")
        return typ()
    if typ is str:
        return str(value).strip()
    if typ is int:
        f = float(value)
        if not f.is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        return int(f)
    f = float(value)
    if not math.isfinite(f):
        raise ValueError(f"expected a finite number, got {value!r}")
    return f


def variant_from_row(row: dict[str, Any], where: str) -> Variant:
    """Build one variant from a row dict; errors name ``where`` and the column."""
    values: dict[str, Any] = {}
    for col, (typ, required) in SCHEMA.items():
        try:
            values[col] = _cell(row.get(col), typ, required)
        except (TypeError, ValueError) as exc:
            raise CatalogError(f"{where}, column {col!r}: {exc}") from None

    def bad(col: str, msg: str) -> CatalogError:
        return CatalogError(f"{where}, column {col!r}: {msg}, got {row.get(col)!r}")

    try:
        hardware = HardwareKind(values["hardware"])
    except ValueError:
        raise bad("hardware", "expected one of cpu, gpu, inferentia") from None
    if not 0.0 <= values["accuracy"] <= 1.0:
        raise bad("accuracy", "expected a fraction in [0, 1]")
    if values["max_batch"] < 1:
        raise bad("max_batch", "expected an integer >= 1")
    for col in ("allocation", "memory_mb"):
        if values[col] <= 0:
            raise bad(col, "expected a positive number")
    for col in ("load_latency_ms", "latency_intercept_ms", "latency_slope_ms"):
        if values[col] < 0:
            raise bad(col, "expected a number >= 0")
    try:
        profile = _parse_profile(values["profile"]) if values["profile"] else ()
    except ValueError as exc:
        raise bad("profile", f"expected 'batch:ms;batch:ms' ({exc})") from None
    if not profile and values["latency_intercept_ms"] + values["latency_slope_ms"] <= 0:
        raise bad("latency_intercept_ms", "batch-1 latency must be positive")
    values["hardware"] = hardware
    values["profile"] = profile
    try:
        return Variant(**values)
    except CatalogError as exc:
        raise CatalogError(f"{where}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Candidates:
    """Variant indices meeting a requirement at a batch, fastest first."""

    indices: tuple[int, ...]
    # Why nothing fits, when nothing does (the closest variant and its latency).
    reason: str = ""


class Catalog:
    """An immutable set of variants with indexes for the hot path."""

    def __init__(self, variants: Iterable[Variant], name: str = "catalog") -> None:
        self.name = name
        self.variants: tuple[Variant, ...] = tuple(variants)
        if not self.variants:
            raise CatalogError(f"{name}: the catalog has no variants")
        self.index_of: dict[str, int] = {}
        for i, v in enumerate(self.variants):
            if v.variant_id in self.index_of:
                raise CatalogError(f"{name}: duplicate variant_id {v.variant_id!r}")
            self.index_of[v.variant_id] = i
        n = len(self.variants)
        self.max_batch = max(v.max_batch for v in self.variants)
        # latency[i, b]: batch-b latency of variant i, inf where b > its max batch.
        self.latency = np.full((n, self.max_batch + 1), np.inf)
        for i, v in enumerate(self.variants):
            self.latency[i, 1 : v.max_batch + 1] = v.latency_by_batch[1:]
        self.accuracy = np.array([v.accuracy for v in self.variants])
        self._by_task: dict[tuple[str, str], np.ndarray] = {}
        self._by_arch: dict[str, np.ndarray] = {}
        by_task: dict[tuple[str, str], list[int]] = {}
        by_arch: dict[str, list[int]] = {}
        for i, v in enumerate(self.variants):
            by_task.setdefault((v.task, v.dataset), []).append(i)
            by_arch.setdefault(v.architecture, []).append(i)
        self._by_task = {k: np.array(v) for k, v in by_task.items()}
        self._by_arch = {k: np.array(v) for k, v in by_arch.items()}
        self._memo: dict[tuple[Requirement, int], Candidates] = {}

    # --- construction -------------------------------------------------------------------
    @classmethod
    def from_frame(cls, frame: pd.DataFrame, name: str = "catalog", first_line: int = 2) -> Catalog:
        missing = [c for c, (_, req) in SCHEMA.items() if req and c not in frame.columns]
        if missing:
            raise CatalogError(f"{name}: missing column(s) {', '.join(missing)}")
        records = frame.to_dict("records")
        return cls(
            (
                variant_from_row({str(k): x for k, x in r.items()}, f"{name} row {i + first_line}")
                for i, r in enumerate(records)
            ),
            name=name,
        )

    @classmethod
    def load(cls, path: str | Path) -> Catalog:
        """Load a catalog from CSV or Parquet; ``default`` is the embedded default catalog."""
        if str(path) == DEFAULT_CATALOG:
            ref = resources.files("infaas_sim") / "catalogs" / "default.csv"
            with resources.as_file(ref) as p:
                return cls.load(p)
        p = Path(path)
        if not p.is_file():
            raise CatalogError(f"catalog file {str(p)!r} not found")
        try:
            if p.suffix == ".parquet":
                frame = pd.read_parquet(p)
                first = 1  # Parquet rows are counted from 1
            else:
                frame = pd.read_csv(p, comment="#", dtype=str, keep_default_na=False)
                first = 2  # data starts on line 2 of a CSV file, after the header
        except Exception as exc:
            raise CatalogError(f"catalog file {str(p)!r} could not be read: {exc}") from None
        return cls.from_frame(frame, name=p.name, first_line=first)

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for v in self.variants:
            row = {c: getattr(v, c) for c in COLUMNS}
            row["hardware"] = v.hardware.value
            row["profile"] = ";".join(f"{b}:{ms:g}" for b, ms in v.profile)
            rows.append(row)
        return pd.DataFrame(rows, columns=COLUMNS)

    def save(self, path: str | Path) -> None:
        p = Path(path)
        frame = self.to_frame()
        if p.suffix == ".parquet":
            frame.to_parquet(p, index=False)
        else:
            frame.to_csv(p, index=False)

    # --- lookups ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.variants)

    def __getitem__(self, variant_id: str) -> Variant:
        try:
            return self.variants[self.index_of[variant_id]]
        except KeyError:
            raise ConfigError(f"unknown variant {variant_id!r} in catalog {self.name}") from None

    @property
    def tasks(self) -> list[tuple[str, str]]:
        return sorted(self._by_task)

    @property
    def architectures(self) -> list[str]:
        return sorted(self._by_arch)

    def group(self, req: Requirement) -> np.ndarray:
        """Indices of the variants a requirement may use, ignoring SLO and accuracy."""
        if req.level is Level.VARIANT:
            if req.target not in self.index_of:
                raise ConfigError(f"unknown variant {req.target!r} in catalog {self.name}")
            return np.array([self.index_of[req.target]])
        if req.level is Level.ARCHITECTURE:
            if req.target not in self._by_arch:
                raise ConfigError(f"unknown architecture {req.target!r} in catalog {self.name}")
            return self._by_arch[req.target]
        key = (req.target, req.dataset)
        if key not in self._by_task:
            known = ", ".join(f"{t}/{d}" for t, d in self.tasks)
            raise ConfigError(f"unknown task {req.target}/{req.dataset} in catalog {self.name} (known: {known})")
        return self._by_task[key]

    def candidates(self, req: Requirement, batch: int) -> Candidates:
        """Variants meeting ``req`` for a query of ``batch`` inputs, fastest first (memoised)."""
        key = (req, batch)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self._compute_candidates(req, batch)
        return hit

    def _compute_candidates(self, req: Requirement, batch: int) -> Candidates:
        group = self.group(req)
        if batch > self.max_batch:
            return Candidates((), f"no variant for {req.describe()} takes a batch of {batch} inputs")
        lat = self.latency[group, batch]
        acc_ok = self.accuracy[group] >= req.min_accuracy
        slo = math.inf if req.slo_ms is None else req.slo_ms
        ok = acc_ok & (lat <= slo)
        chosen = group[ok]
        if chosen.size:
            order = np.argsort(self.latency[chosen, batch], kind="stable")
            return Candidates(tuple(int(i) for i in chosen[order]))
        # Nothing fits: name the variant that comes closest, as INFaaS does.
        if not acc_ok.any():
            best = int(group[np.argmax(self.accuracy[group])])
            return Candidates(
                (),
                f"no variant meets {req.describe()} for batch {batch}: the most accurate, "
                f"{self.variants[best].variant_id}, reaches {self.accuracy[best]:.3f}",
            )
        fits = group[acc_ok]
        best = int(fits[np.argmin(self.latency[fits, batch])])
        best_lat = self.latency[best, batch]
        if not math.isfinite(best_lat):
            return Candidates((), f"no variant for {req.describe()} takes a batch of {batch} inputs")
        return Candidates(
            (),
            f"no variant meets {req.describe()} for batch {batch}: the closest, "
            f"{self.variants[best].variant_id}, takes {best_lat:.1f} ms",
        )

    def variants_of(self, indices: Sequence[int]) -> list[Variant]:
        return [self.variants[i] for i in indices]
