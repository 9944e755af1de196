"""``replay``: arrivals from a trace file, sliced, scaled and time-compressed.

The file holds either **counts** (arrivals per second: integers separated by any whitespace,
e.g. the real Twitter trace's one line of 1.9M space-separated integers) or **timestamps**
(arrival times in seconds on the trace's own clock, one per line, non-decreasing, >= 0). It may
be plain or compressed; ``.bz2``, ``.gz`` and ``.xz`` are recognised by suffix. With
``format="auto"`` a file whose values are all integers is read as counts, and a file with a
decimal point or exponent anywhere as timestamps (integer timestamps need
``format="timestamps"``).

Parameters:

- ``start_s``, ``length_s``: the slice ``[start_s, start_s + length_s)`` of the trace, in trace
  seconds (``length_s=None``: to the end of the file); whole seconds for counts. A counts file
  of ``n`` values covers ``[0, n)``; a timestamps file covers ``[0, floor(last) + 1)``. A slice
  that reaches beyond the file's end is a TraceError, never a silent truncation, and so is a run
  longer than the slice. ``segments=[[start, length], ...]`` instead replays several slices one
  after the other (IPA's "fluctuating" pattern is two 600 s windows back to back).
- ``scale``: multiplies the rate (``1/8`` is IPA's damping). For counts, each second's scaled
  rate ``max(scale * count, min_rate)`` is turned into a whole number of arrivals by
  ``rounding``: ``"stochastic"`` (default: ``floor`` plus one more with probability equal to
  the fractional part, which keeps the mean), ``"floor"`` (IPA's ``int(x / 8)``) or ``"round"``
  (half up). For timestamps each arrival is kept ``floor(scale)`` times plus once more with
  probability equal to the fractional part of ``scale`` (copies share the arrival's instant).
- ``compression``: time compression; one trace second lasts ``1 / compression`` simulated
  seconds (the rate per simulated second grows by the same factor).
- ``min_rate``: a floor on each trace second's scaled rate (Themis's "at least 1"); counts only.

Counts replay places each (compressed) second's arrivals uniformly at random within it, sorted.
Relative paths are looked up from the working directory, then from the repository root (the
directory holding ``pyproject.toml``), then by file name in ``$INFAAS_TRACE_DIR``.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import lzma
import math
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from infaas_sim.errors import TraceError
from traces.base import (
    FloatArray,
    IntArray,
    Trace,
    check_duration,
    choice,
    expected_per_second,
    number,
    place_uniformly,
)
from traces.registry import register_trace

FORMATS = ("auto", "counts", "timestamps")
ROUNDINGS = ("stochastic", "floor", "round")
TRACE_DIR_ENV = "INFAAS_TRACE_DIR"
# The history an operator sizes a fixed deployment from: the hour before the slice.
HISTORY_S = 3600.0

_WHITESPACE = b" \t\n\r\v\f"
_DIGITS = b"0123456789"


def repo_root() -> Path | None:
    """The repository root: the nearest directory above this package holding ``pyproject.toml``."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    return None


def resolve_trace_path(path: str | os.PathLike[str]) -> Path:
    """Find a trace file: as given (from the working directory), else relative to the repository
    root, else by name in ``$INFAAS_TRACE_DIR``. Raises TraceError if none exists."""
    given = Path(path).expanduser()
    candidates = [given]
    root = repo_root()
    if not given.is_absolute() and root is not None:
        candidates.append(root / given)
    env = os.environ.get(TRACE_DIR_ENV)
    if env:
        candidates.append(Path(env).expanduser() / given.name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if given.exists():
        raise TraceError(f"trace file {path}: not a regular file")
    looked = ", ".join(dict.fromkeys(str(c) for c in candidates))
    raise TraceError(f"trace file {path}: not found (looked in: {looked})")


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class TraceData:
    """A parsed trace file: ``kind`` is ``"counts"`` (int64 per second) or ``"timestamps"``
    (float64 seconds, non-decreasing)."""

    path: str
    kind: str
    values: npt.NDArray[Any]

    @property
    def extent_s(self) -> int:
        """Trace seconds the file covers: ``[0, extent_s)``."""
        if self.kind == "counts":
            return len(self.values)
        return math.floor(float(self.values[-1])) + 1


def read_trace_file(path: str | os.PathLike[str], format: str = "auto") -> TraceData:
    """Read and validate a counts or timestamps file (cached by path, size and modification time).
    Raises TraceError naming the file and line for anything malformed."""
    if format not in FORMATS:
        raise TraceError(f"trace file {path}: format must be one of {', '.join(FORMATS)}, got {format!r}")
    resolved = resolve_trace_path(path)
    st = resolved.stat()
    return _read_cached(str(resolved), st.st_mtime_ns, st.st_size, format)


@functools.lru_cache(maxsize=4)
def _read_cached(path: str, mtime_ns: int, size: int, format: str) -> TraceData:
    data = _read_bytes(path)
    buf = np.frombuffer(data, dtype=np.uint8)
    kind = format
    if kind == "auto":
        kind = "timestamps" if _has_any(buf, b".eE") else "counts"
    values = _parse_counts(path, data, buf) if kind == "counts" else _parse_timestamps(path, data, buf)
    values.flags.writeable = False
    return TraceData(path, kind, values)


def _read_bytes(path: str) -> bytes:
    suffix = Path(path).suffix.lower()
    opener: Any = {".bz2": bz2.open, ".gz": gzip.open, ".xz": lzma.open, ".lzma": lzma.open}.get(suffix, open)
    try:
        with opener(path, "rb") as f:
            return bytes(f.read())
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
        what = "cannot decompress" if opener is not open else "cannot read"
        raise TraceError(f"trace file {path}: {what} ({exc})") from None


def _table(allowed: bytes) -> npt.NDArray[np.bool_]:
    table = np.zeros(256, dtype=bool)
    table[np.frombuffer(allowed, dtype=np.uint8)] = True
    return table


def _has_any(buf: npt.NDArray[np.uint8], chars: bytes) -> bool:
    return bool(_table(chars)[buf].any())


def _token_starts(buf: npt.NDArray[np.uint8]) -> IntArray:
    ws = _table(_WHITESPACE)[buf]
    prev_ws = np.concatenate([[True], ws[:-1]])
    return np.flatnonzero(~ws & prev_ws).astype(np.int64)


def _token_at(data: bytes, offset: int) -> tuple[int, int]:
    """The byte range of the token holding byte ``offset``."""
    ws = set(_WHITESPACE)
    start = offset
    while start > 0 and data[start - 1] not in ws:
        start -= 1
    end = offset
    while end < len(data) and data[end] not in ws:
        end += 1
    return start, end


def _where(path: str, data: bytes, offset: int, problem: str) -> TraceError:
    """A one-line error for the token around byte ``offset``: file, line, position on the line."""
    start, end = _token_at(data, offset)
    line_no = data.count(b"\n", 0, start) + 1
    line_start = data.rfind(b"\n", 0, start) + 1
    line_end = data.find(b"\n", start)
    line = data[line_start : len(data) if line_end < 0 else line_end]
    n_on_line = len(line.split())
    position = len(data[line_start:start].split()) + 1
    token = data[start:end].decode("utf-8", errors="replace")
    if len(token) > 30:
        token = token[:27] + "..."
    where = f"line {line_no}" + (f", value {position} of {n_on_line}" if n_on_line > 1 else "")
    return TraceError(f"trace file {path}: {where}: {token!r} {problem}")


def _where_index(path: str, data: bytes, buf: npt.NDArray[np.uint8], index: int, problem: str) -> TraceError:
    return _where(path, data, int(_token_starts(buf)[index]), problem)


def _empty(path: str, data: bytes) -> None:
    if not data.split():
        raise TraceError(f"trace file {path}: line 1: empty file (no values)")


def _parse_counts(path: str, data: bytes, buf: npt.NDArray[np.uint8]) -> IntArray:
    _empty(path, data)
    bad = np.flatnonzero(~_table(_DIGITS + _WHITESPACE)[buf])
    if bad.size:
        offset = int(bad[0])
        start, end = _token_at(data, offset)
        token = data[start:end]
        negative = token.startswith(b"-") and token[1:].isdigit()
        raise _where(path, data, offset, "is a negative count" if negative else "is not a non-negative integer count")
    tokens = data.split()
    try:
        return np.array(tokens).astype(np.int64)
    except (ValueError, OverflowError):
        index = next(i for i, t in enumerate(tokens) if int(t) >= 2**63)
        raise _where_index(path, data, buf, index, "is too large for a count") from None


def _parse_timestamps(path: str, data: bytes, buf: npt.NDArray[np.uint8]) -> FloatArray:
    _empty(path, data)
    bad = np.flatnonzero(~_table(_DIGITS + _WHITESPACE + b".eE+-")[buf])
    if bad.size:
        raise _where(path, data, int(bad[0]), "is not a timestamp in seconds")
    tokens = data.split()
    try:
        values = np.array(tokens).astype(np.float64)
    except ValueError:
        index = next(i for i, t in enumerate(tokens) if not _is_float(t))
        raise _where_index(path, data, buf, index, "is not a timestamp in seconds") from None
    not_finite = np.flatnonzero(~np.isfinite(values))
    if not_finite.size:
        raise _where_index(path, data, buf, int(not_finite[0]), "is not a finite timestamp")
    negative = np.flatnonzero(values < 0)
    if negative.size:
        raise _where_index(path, data, buf, int(negative[0]), "is a negative timestamp")
    decreasing = np.flatnonzero(np.diff(values) < 0)
    if decreasing.size:
        i = int(decreasing[0]) + 1
        raise _where_index(path, data, buf, i, f"is smaller than the timestamp before it ({values[i - 1]:g})")
    return values


def _is_float(token: bytes) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# The trace


def resolve_counts(rate: FloatArray, rounding: str, rng: np.random.Generator) -> IntArray:
    """Whole arrivals from fractional per-second rates: ``floor``, ``round`` (half up) or
    ``stochastic`` (floor plus a Bernoulli of the fractional part: unbiased)."""
    base = np.floor(rate)
    if rounding == "floor":
        out = base
    elif rounding == "round":
        out = np.floor(rate + 0.5)
    else:
        out = base + (rng.random(len(rate)) < rate - base)
    return out.astype(np.int64)


@register_trace("replay")
@dataclass(frozen=True)
class ReplayTrace(Trace):
    path: str
    format: str = "auto"
    start_s: float = 0.0
    length_s: float | None = None
    scale: float = 1.0
    compression: float = 1.0
    min_rate: float = 0.0
    rounding: str = "stochastic"
    segments: Sequence[Sequence[float]] | None = None
    _data: TraceData = field(init=False, repr=False, compare=False)
    _slices: tuple[tuple[float, float], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, os.PathLike)) or not str(self.path):
            raise self._fail("path", f"must be a file path, got {self.path!r}")
        set_ = functools.partial(object.__setattr__, self)
        set_("path", str(self.path))
        set_("format", choice(self, "format", self.format, FORMATS))
        set_("rounding", choice(self, "rounding", self.rounding, ROUNDINGS))
        set_("start_s", number(self, "start_s", self.start_s, low=0.0))
        if self.length_s is not None:
            set_("length_s", number(self, "length_s", self.length_s, low=0.0, low_open=True))
        set_("scale", number(self, "scale", self.scale, low=0.0, low_open=True))
        set_("compression", number(self, "compression", self.compression, low=0.0, low_open=True))
        set_("min_rate", number(self, "min_rate", self.min_rate, low=0.0))
        slices = self._check_segments()

        data = read_trace_file(self.path, self.format)
        set_("_data", data)
        if data.kind == "timestamps" and self.min_rate > 0:
            raise self._fail("min_rate", "applies to counts traces only (this file holds timestamps)")
        resolved: list[tuple[float, float]] = []
        for i, (start, given) in enumerate(slices):
            name = "start_s / length_s" if self.segments is None else f"segments[{i}]"
            if data.kind == "counts" and (start != int(start) or (given is not None and given != int(given))):
                raise self._fail(name, f"must be whole seconds for a counts trace, got ({start:g}, {given})")
            length = data.extent_s - start if given is None else given
            if length <= 0:
                raise TraceError(
                    f"trace file {data.path}: start_s = {start:g} is at or beyond the file's end ({data.extent_s} s)"
                )
            if start + length > data.extent_s:
                raise TraceError(
                    f"trace file {data.path}: slice [{start:g}, {start + length:g}) goes beyond the file's end"
                    f" ({data.extent_s} s)"
                )
            resolved.append((start, float(length)))
        set_("_slices", tuple(resolved))

    def _check_segments(self) -> list[tuple[float, float | None]]:
        if self.segments is None:
            return [(self.start_s, self.length_s)]
        if self.start_s != 0.0 or self.length_s is not None:
            raise self._fail("segments", "cannot be combined with start_s / length_s")
        if isinstance(self.segments, (str, bytes)) or not hasattr(self.segments, "__iter__"):
            raise self._fail("segments", f"must be a list of [start_s, length_s] pairs, got {self.segments!r}")
        out: list[tuple[float, float | None]] = []
        for i, seg in enumerate(self.segments):
            pair = list(seg) if hasattr(seg, "__iter__") and not isinstance(seg, (str, bytes)) else []
            if len(pair) != 2:
                raise self._fail(f"segments[{i}]", f"must be a [start_s, length_s] pair, got {seg!r}")
            start = number(self, f"segments[{i}] start", pair[0], low=0.0)
            length = number(self, f"segments[{i}] length", pair[1], low=0.0, low_open=True)
            out.append((start, length))
        if not out:
            raise self._fail("segments", "must list at least one [start_s, length_s] pair")
        object.__setattr__(self, "segments", tuple((start, length) for start, length in out))
        return out

    # -----------------------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """``"counts"`` or ``"timestamps"`` (as read, after ``format="auto"``)."""
        return self._data.kind

    @property
    def slice_length_s(self) -> float:
        """Trace seconds in the slice (all segments)."""
        return float(sum(length for _, length in self._slices))

    @property
    def span_s(self) -> float:
        """Simulated seconds the slice lasts: ``slice_length_s / compression``."""
        return self.slice_length_s / self.compression

    def _check_run(self, duration: float) -> None:
        if duration > self.span_s * (1 + 1e-12) + 1e-9:
            raise TraceError(
                f"trace file {self._data.path}: a run of {duration:g} s needs {duration * self.compression:g} trace"
                f" seconds at compression {self.compression:g}, but the slice holds {self.slice_length_s:g}"
            )

    def _count_rates(self, duration: float) -> FloatArray:
        """Scaled rate of each trace second of the slice that the run reaches."""
        counts = np.concatenate([self._data.values[int(s) : int(s + n)] for s, n in self._slices])
        needed = min(len(counts), math.ceil(duration * self.compression - 1e-9))
        return np.maximum(counts[:needed] * self.scale, self.min_rate)

    def _timestamps(self, duration: float) -> FloatArray:
        """Slice timestamps shifted to the slice's clock, compressed, cut to the run."""
        values = self._data.values
        parts, offset = [], 0.0
        for start, length in self._slices:
            lo, hi = np.searchsorted(values, [start, start + length], side="left")
            parts.append(values[lo:hi] - start + offset)
            offset += length
        times = np.concatenate(parts) / self.compression
        return times[: int(np.searchsorted(times, duration, side="left"))]

    def expected_rate(self, duration_s: float) -> tuple[float, float] | None:
        """The history an operator has: the mean and peak per-second rate of the hour of the
        trace before the slice (scaled and compressed as the slice is), or of as much of it as
        the file holds; None when the slice starts at the file's beginning."""
        start = self._slices[0][0]
        lo = max(0.0, start - HISTORY_S)
        if start - lo < 1.0:
            return None
        if self.kind == "counts":
            rates = np.maximum(self._data.values[int(lo) : int(start)] * self.scale, self.min_rate)
        else:
            values = self._data.values
            a, b = np.searchsorted(values, [lo, start], side="left")
            rates = np.bincount((values[a:b] - lo).astype(np.int64), minlength=int(start - lo)) * self.scale
        rates = rates * self.compression  # per simulated second
        return float(rates.mean()), float(rates.max())

    def arrivals(self, duration_s: float, rng: np.random.Generator) -> FloatArray:
        duration = check_duration(duration_s)
        self._check_run(duration)
        if self.kind == "counts":
            rates = self._count_rates(duration)
            counts = resolve_counts(rates, self.rounding, rng)
            lo = np.arange(len(counts), dtype=np.float64) / self.compression
            width = np.full(len(counts), 1.0 / self.compression)
            return place_uniformly(lo, width, counts, duration, rng)
        times = self._timestamps(duration)
        whole = math.floor(self.scale)
        copies = whole + (rng.random(len(times)) < self.scale - whole)
        return np.repeat(times, copies)

    def rate(self, duration_s: float, rng: np.random.Generator) -> FloatArray:
        """Expected arrivals per simulated second (for ``floor`` / ``round`` rounding, the exact
        counts; for timestamps, the scaled count of the slice's arrivals)."""
        duration = check_duration(duration_s)
        self._check_run(duration)
        if self.kind == "counts":
            rates = self._count_rates(duration)
            if self.rounding != "stochastic":
                rates = resolve_counts(rates, self.rounding, rng).astype(np.float64)
            edges = np.arange(len(rates) + 1, dtype=np.float64) / self.compression
            return expected_per_second(edges, rates * self.compression, duration)
        times = self._timestamps(duration)
        n = math.ceil(duration)
        return np.bincount(times.astype(np.int64), minlength=n)[:n].astype(np.float64) * self.scale
