"""The variant catalog (INFaaS's metadata store): schema, validated loading, hot-path indexes.

A catalog is rows of variants stored as CSV or Parquet. Loading validates every row and names
the row and column of the first problem. Indexes are built once; ``candidates`` answers
"variants meeting this requirement at this batch" from a memo, so the hot path never scans.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from infaas_sim.errors import CatalogError, ConfigError
from infaas_sim.hardware import HardwareKind
from infaas_sim.query import Level, Requirement
from infaas_sim.variant import CoreProfile, Variant

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
    # run-to-run spread of a batch's latency (std / mean), as profiled; the sim executor's
    # default noise. 0 (or absent): no measured spread, the latency is deterministic.
    "latency_cv": (float, False),
}
COLUMNS = list(SCHEMA)

DEFAULT_CATALOG = "default"
# Catalogs embedded in the package, by the name a config gives as its path.
EMBEDDED = {"default": "default.csv", "neuron_batched": "neuron_batched.csv", "cpu_measured": "cpu_measured.csv"}


def _parse_profile(text: str) -> tuple[tuple[int, float], ...]:
    pts = []
    for item in text.split(";"):
        item = item.strip()
        if not item:
            continue
        b, ms = item.split(":")
        pts.append((int(b), float(ms)))
    pts.sort()
    if len({b for b, _ in pts}) != len(pts) or any(b < 1 or not 0 < ms < math.inf for b, ms in pts):
        raise ValueError("batches must be distinct and >= 1, latencies finite and > 0")
    return tuple(pts)


def _cell(value: Any, typ: type, required: bool) -> Any:
    missing = value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""
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
    for col in ("load_latency_ms", "latency_intercept_ms", "latency_slope_ms", "latency_cv"):
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


def _read_csv(path: Path) -> tuple[pd.DataFrame, list[int]]:
    """Read a catalog CSV as strings, skipping lines that start with '#' (notes), and return
    each row's line number in the file. Not pandas' ``comment='#'``: that also cuts a field
    at a '#' inside it (a URL's anchor) and shifts the row numbers that errors report."""
    state = {"line": 0, "start": 0}

    def physical() -> Iterator[str]:
        # utf-8-sig: a header written by a spreadsheet starts with a byte-order mark.
        with path.open(newline="", encoding="utf-8-sig") as f:
            for text in f:
                state["line"] += 1
                if text.startswith("#"):
                    continue
                if state["start"] == 0:
                    state["start"] = state["line"]
                yield text

    reader = csv.reader(physical())
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    for row in reader:
        start, state["start"] = state["start"], 0
        if header is None:
            header = [c.strip() for c in row]
            twice = sorted({c for c in header if header.count(c) > 1})
            if twice:
                named = ", ".join(map(repr, twice))
                raise CatalogError(f"{path.name} row {start}: column(s) {named} appear twice in the header")
            continue
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) != len(header):
            raise CatalogError(f"{path.name} row {start}: {len(row)} fields, the header has {len(header)}")
        rows.append(row)
        lines.append(start)
    if header is None:
        raise CatalogError(f"catalog file {str(path)!r} could not be read: it has no header line")
    return pd.DataFrame(rows, columns=header, dtype=object), lines


@dataclass(frozen=True, slots=True)
class Candidates:
    """Variant indices meeting a requirement at a batch, fastest first."""

    indices: tuple[int, ...]
    # Why nothing fits, when nothing does (the closest variant and its latency).
    reason: str = ""
    # The same indices as a set: the controller checks a policy's choice against it per query.
    members: frozenset[int] = field(default=frozenset(), init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", frozenset(self.indices))


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
        # (id(requirement), batch) -> (requirement, candidates): queries share their
        # application's requirement objects, so identity finds the memo entry without hashing
        # the frozen dataclass per query; the requirement is kept so that its id is not reused.
        self._by_id: dict[tuple[int, int], tuple[Requirement, Candidates]] = {}
        self._core_profiles: dict[int, CoreProfile] = {}
        self._core_tables: dict[tuple[int, float], tuple[float, ...]] = {}
        # CPU models: variants alike but for their core allocation are one model's profile.
        self._cpu_models: dict[tuple[str, ...], list[int]] = {}
        for i, v in enumerate(self.variants):
            if v.hardware is HardwareKind.CPU:
                self._cpu_models.setdefault(self._cpu_model_key(v), []).append(i)

    # --- construction -------------------------------------------------------------------
    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        name: str = "catalog",
        first_line: int = 2,
        line_numbers: Sequence[int] | None = None,
    ) -> Catalog:
        """Build a catalog from a frame of rows; errors name ``{name} row N, column C``, with N
        the row's line in its file (``line_numbers[i]``, else ``first_line + i``)."""
        missing = [c for c, (_, req) in SCHEMA.items() if req and c not in frame.columns]
        if missing:
            raise CatalogError(f"{name}: missing column(s) {', '.join(missing)}")
        records = frame.to_dict("records")
        if line_numbers is not None and len(line_numbers) != len(records):
            raise ValueError("line_numbers must have one entry per row")
        variants: list[Variant] = []
        seen: dict[str, int] = {}
        for i, r in enumerate(records):
            line = line_numbers[i] if line_numbers is not None else i + first_line
            v = variant_from_row({str(k): x for k, x in r.items()}, f"{name} row {line}")
            if v.variant_id in seen:
                raise CatalogError(
                    f"{name} row {line}, column 'variant_id': duplicate variant_id {v.variant_id!r} "
                    f"(first on row {seen[v.variant_id]})"
                )
            seen[v.variant_id] = line
            variants.append(v)
        return cls(variants, name=name)

    @classmethod
    def load(cls, path: str | Path) -> Catalog:
        """Load a catalog from CSV or Parquet; ``default``, ``neuron_batched`` and ``cpu_measured``
        name the embedded catalogs (docs/catalog.md)."""
        if str(path) in EMBEDDED:
            ref = resources.files("infaas_sim") / "catalogs" / EMBEDDED[str(path)]
            with resources.as_file(ref) as p:
                return cls.load(p)
        p = Path(path)
        if not p.is_file():
            raise CatalogError(f"catalog file {str(p)!r} not found")
        lines: list[int] | None = None
        try:
            if p.suffix == ".parquet":
                frame = pd.read_parquet(p)
                first = 1  # Parquet rows are counted from 1
            else:
                frame, lines = _read_csv(p)
                first = 2
        except CatalogError:
            raise
        except Exception as exc:
            raise CatalogError(f"catalog file {str(p)!r} could not be read: {exc}") from None
        return cls.from_frame(frame, name=p.name, first_line=first, line_numbers=lines)

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
        """Variants meeting ``req`` for a query of ``batch`` inputs, fastest first (memoised;
        the same object for equal requirements)."""
        fast = self._by_id.get((id(req), batch))
        if fast is not None and fast[0] is req:
            return fast[1]
        key = (req, batch)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self._compute_candidates(req, batch)
        if len(self._by_id) >= 4096:  # bounded, should anything build requirements per query
            self._by_id.clear()
        self._by_id[(id(req), batch)] = (req, hit)
        return hit

    def _compute_candidates(self, req: Requirement, batch: int) -> Candidates:
        group = self.group(req)
        if batch > self.max_batch:
            return Candidates((), f"no variant for {req.describe()} takes a batch of {batch} inputs")
        lat = self.latency[group, batch]
        acc_ok = self.accuracy[group] >= req.min_accuracy
        slo = math.inf if req.slo_ms is None else req.slo_ms
        # A NaN or infinite latency (a batch above a variant's max) never passes, even
        # against the infinite SLO of a pinned variant (inf <= inf is True).
        ok = acc_ok & np.isfinite(lat) & (lat <= slo)
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

    # --- CPU core profiles ----------------------------------------------------------------
    @staticmethod
    def _cpu_model_key(v: Variant) -> tuple[str, ...]:
        # max batch is part of the key: a variant with another max batch is another build.
        return (v.architecture, v.task, v.dataset, v.framework, v.precision, str(v.max_batch))

    def _vi(self, variant: Variant | str | int) -> int:
        if isinstance(variant, int):
            return variant
        vid = variant if isinstance(variant, str) else variant.variant_id
        if vid not in self.index_of:
            raise ConfigError(f"unknown variant {vid!r} in catalog {self.name}")
        return self.index_of[vid]

    def core_profile(self, variant: Variant | str | int) -> CoreProfile:
        """The core profile of a CPU variant: its own row plus the catalog's rows of the same
        model (architecture, task, data set, framework, precision, max batch) at other core
        counts. A core count with more than one such row (ambiguous) is left out."""
        vi = self._vi(variant)
        hit = self._core_profiles.get(vi)
        if hit is not None:
            return hit
        v = self.variants[vi]
        if v.hardware is not HardwareKind.CPU:
            raise ConfigError(f"variant {v.variant_id!r} is not a CPU variant: it has no core profile")
        by_cores: dict[float, list[int]] = {}
        for j in self._cpu_models[self._cpu_model_key(v)]:
            by_cores.setdefault(self.variants[j].allocation, []).append(j)
        points = [(v.allocation, v.latency_by_batch)]
        for c, js in by_cores.items():
            if c != v.allocation and len(js) == 1:
                points.append((c, self.variants[js[0]].latency_by_batch))
        prof = self._core_profiles[vi] = CoreProfile(tuple(sorted(points)))
        return prof

    def cpu_latency_ms(self, variant: Variant | str | int, cores: float, batch: int) -> float:
        """Predicted latency (ms) of a CPU variant's batch of ``batch`` inputs on ``cores``
        cores: what a resized replica of it runs at (see :class:`CoreProfile`)."""
        v = self.variants[self._vi(variant)]
        if not 1 <= batch <= v.max_batch:
            raise ConfigError(f"variant {v.variant_id!r} takes batches of 1..{v.max_batch}, not {batch}")
        if not cores > 0:
            raise ConfigError(f"variant {v.variant_id!r}: cores must be > 0, got {cores}")
        return self.cpu_latency_table(variant, cores)[batch]

    def cpu_latency_table(self, variant: Variant | str | int, cores: float) -> tuple[float, ...]:
        """``latency_by_batch`` of a CPU variant on ``cores`` cores (memoised)."""
        vi = self._vi(variant)
        key = (vi, float(cores))
        hit = self._core_tables.get(key)
        if hit is None:
            v = self.variants[vi]
            hit = v.latency_by_batch if cores == v.allocation else self.core_profile(vi).table(cores, v.max_batch)
            self._core_tables[key] = hit
        return hit

    def variants_of(self, indices: Sequence[int]) -> list[Variant]:
        return [self.variants[i] for i in indices]
