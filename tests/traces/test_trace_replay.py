"""``replay``: counts and timestamps files, plain and compressed; slice, scale, compression and
min-rate arithmetic; malformed files as one-line TraceErrors naming the file and the line."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

import numpy as np
import pytest

from infaas_sim.errors import ConfigError, TraceError
from traces import make_trace
from traces.replay import read_trace_file


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def write(path: Path, text: str) -> Path:
    opener = {".bz2": bz2.open, ".gz": gzip.open, ".xz": lzma.open}.get(path.suffix)
    if opener is None:
        path.write_text(text)
    else:
        with opener(path, "wt") as f:
            f.write(text)
    return path


@pytest.mark.parametrize("suffix", ["", ".bz2", ".gz", ".xz"])
def test_counts_compressed_x2_give_the_counts_in_half_seconds(tmp_path: Path, suffix: str) -> None:
    path = write(tmp_path / f"counts.txt{suffix}", "3 0 5\n")
    trace = make_trace("replay", path=str(path), compression=2)
    assert trace.kind == "counts" and trace.span_s == 1.5
    times = trace.arrivals(1.5, rng())
    assert len(times) == 8 and np.all(np.diff(times) >= 0)
    assert times[0] >= 0 and times[-1] < 1.5
    assert np.histogram(times, bins=[0, 0.5, 1.0, 1.5])[0].tolist() == [3, 0, 5]
    assert np.allclose(trace.rate(1.5, rng()), [3.0, 5.0])  # [0,1): 3 + 0, [1,1.5): 5


def test_counts_newline_separated_and_sliced(tmp_path: Path) -> None:
    path = write(tmp_path / "c.txt", "\n".join(str(v) for v in [1, 2, 3, 4, 5, 6]) + "\n")
    trace = make_trace("replay", path=str(path), start_s=2, length_s=3)
    times = trace.arrivals(3, rng())
    assert np.bincount(times.astype(int), minlength=3).tolist() == [3, 4, 5]
    # to the end of the file when length_s is None
    tail = make_trace("replay", path=str(path), start_s=4)
    assert len(tail.arrivals(2, rng())) == 11
    # a run shorter than the slice takes its beginning
    assert len(trace.arrivals(1, rng())) == 3


def test_scale_rounding_and_min_rate(tmp_path: Path) -> None:
    path = write(tmp_path / "c.txt", " ".join(["9"] * 2000 + ["0"] * 10))
    floor = make_trace("replay", path=str(path), scale=1 / 8, rounding="floor", length_s=2000)
    assert len(floor.arrivals(2000, rng())) == 2000  # int(9 / 8) = 1 per second
    rounded = make_trace("replay", path=str(path), scale=1 / 8 * 1.5, rounding="round", length_s=2000)
    assert len(rounded.arrivals(2000, rng())) == 4000  # 1.6875 -> 2
    stochastic = make_trace("replay", path=str(path), scale=1 / 8, length_s=2000)
    n = len(stochastic.arrivals(2000, rng(5)))
    assert n == pytest.approx(2000 * 9 / 8, rel=0.03)  # unbiased: 1.125 per second
    assert np.allclose(stochastic.rate(2000, rng()), 9 / 8)
    themis = make_trace("replay", path=str(path), scale=1 / 1.5, min_rate=1, rounding="floor", start_s=1995)
    assert np.bincount(themis.arrivals(15, rng()).astype(int), minlength=15).tolist() == [6] * 5 + [1] * 10


def test_segments_play_back_to_back(tmp_path: Path) -> None:
    path = write(tmp_path / "c.txt", "1 2 3 4 5 6 7 8")
    trace = make_trace("replay", path=str(path), segments=[[6, 2], [0, 2], [6, 2]])
    assert np.bincount(trace.arrivals(6, rng()).astype(int), minlength=6).tolist() == [7, 8, 1, 2, 7, 8]
    with pytest.raises(ConfigError, match="segments"):
        make_trace("replay", path=str(path), segments=[[0, 2]], start_s=1)


def test_timestamps_slice_compression_and_scale(tmp_path: Path) -> None:
    stamps = [0.5, 1.25, 1.25, 2.0, 3.5, 10.0, 11.5]
    path = write(tmp_path / "t.txt.gz", "\n".join(str(s) for s in stamps) + "\n")
    trace = make_trace("replay", path=str(path), start_s=1.0, length_s=10.0, compression=2)
    assert trace.kind == "timestamps" and trace.span_s == 5.0
    assert np.allclose(trace.arrivals(5, rng()), [0.125, 0.125, 0.5, 1.25, 4.5])
    double = make_trace("replay", path=str(path), scale=2.0)
    assert np.allclose(double.arrivals(12, rng()), np.repeat(stamps, 2))
    # integer timestamps need format="timestamps" (auto reads an integer file as counts)
    ints = write(tmp_path / "ints.txt", "0\n0\n1\n3\n")
    assert make_trace("replay", path=str(ints)).kind == "counts"
    as_ts = make_trace("replay", path=str(ints), format="timestamps")
    assert as_ts.arrivals(4, rng()).tolist() == [0.0, 0.0, 1.0, 3.0]


def test_thinning_timestamps_keeps_the_scaled_share(tmp_path: Path) -> None:
    path = write(tmp_path / "t.txt", "\n".join(f"{t:.3f}" for t in np.arange(0, 1000, 0.01)))
    times = make_trace("replay", path=str(path), scale=0.25).arrivals(1000, rng(3))
    assert len(times) == pytest.approx(25_000, rel=0.03)


def test_determinism(tmp_path: Path) -> None:
    path = write(tmp_path / "c.txt", " ".join(str(v) for v in range(100)))
    trace = make_trace("replay", path=str(path), scale=0.3, compression=3)
    assert np.array_equal(trace.arrivals(30, rng(1)), trace.arrivals(30, rng(1)))
    assert not np.array_equal(trace.arrivals(30, rng(1)), trace.arrivals(30, rng(2)))


@pytest.mark.parametrize(
    ("text", "name", "where", "what"),
    [
        ("3 4 5\n6 x 7\n", "c.txt", "line 2, value 2 of 3", "'x' is not a non-negative integer count"),
        ("1 2 3 -4 5", "c.txt", "line 1, value 4 of 5", "'-4' is a negative count"),
        ("1 2 3 4.5 5", "c.txt", "line 1, value 4 of 5", "'4.5'"),  # format=counts given below
        ("0.5\n1.5\n1.0\n", "t.txt", "line 3", "smaller than the timestamp before it"),
        ("0.5\n1.5\nabc\n", "t.txt", "line 3", "'abc' is not a timestamp"),
        ("0.5\n-1.5\n", "t.txt", "line 2", "negative timestamp"),
        ("", "c.txt", "line 1", "empty"),
        ("  \n \n", "c.txt", "line 1", "empty"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path: Path, text: str, name: str, where: str, what: str) -> None:
    path = write(tmp_path / name, text)
    fmt = "counts" if name == "c.txt" else "timestamps"
    with pytest.raises(TraceError) as err:
        make_trace("replay", path=str(path), format=fmt)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message and where in message and what in message, message


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"nope\.txt: not found"):
        make_trace("replay", path=str(tmp_path / "nope.txt"))
    corrupt = tmp_path / "c.txt.bz2"
    corrupt.write_bytes(b"this is not bzip2")
    with pytest.raises(TraceError, match="cannot decompress"):
        read_trace_file(corrupt)


def test_slices_beyond_the_end_are_errors_not_truncation(tmp_path: Path) -> None:
    path = write(tmp_path / "c.txt", "1 2 3 4 5")
    with pytest.raises(TraceError, match=r"slice \[3, 7\) goes beyond the file's end \(5 s\)"):
        make_trace("replay", path=str(path), start_s=3, length_s=4)
    with pytest.raises(TraceError, match="beyond the file's end"):
        make_trace("replay", path=str(path), start_s=5)
    trace = make_trace("replay", path=str(path), start_s=1, compression=2)  # 4 trace s = 2 simulated s
    with pytest.raises(TraceError, match="a run of 3 s needs 6 trace seconds"):
        trace.arrivals(3, rng())
    stamps = write(tmp_path / "t.txt", "0.5\n2.5\n")  # covers [0, 3)
    with pytest.raises(TraceError, match="beyond"):
        make_trace("replay", path=str(stamps), length_s=3.5)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"scale": 0}, "scale"),
        ({"compression": -1}, "compression"),
        ({"min_rate": -1}, "min_rate"),
        ({"format": "csv"}, "format"),
        ({"rounding": "ceil"}, "rounding"),
        ({"start_s": 0.5}, "start_s"),
        ({"segments": [[0]]}, "segments[0]"),
    ],
)
def test_bad_parameters_are_config_errors(tmp_path: Path, params: dict, param: str) -> None:
    path = write(tmp_path / "c.txt", "1 2 3 4 5")
    with pytest.raises(ConfigError) as err:
        make_trace("replay", path=str(path), **params)
    assert param in str(err.value) and "\n" not in str(err.value)


def test_min_rate_is_for_counts_only(tmp_path: Path) -> None:
    path = write(tmp_path / "t.txt", "0.5\n2.5\n")
    with pytest.raises(ConfigError, match="min_rate"):
        make_trace("replay", path=str(path), min_rate=1)


def test_relative_paths_resolve_from_the_repository_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "elsewhere.txt", "1 2 3")
    monkeypatch.chdir(tmp_path / "..")
    monkeypatch.setenv("INFAAS_TRACE_DIR", str(tmp_path))
    trace = make_trace("replay", path="some/dir/elsewhere.txt")  # found by name in $INFAAS_TRACE_DIR
    assert len(trace.arrivals(3, rng())) == 6


def test_a_replays_expected_rate_is_the_hour_before_its_slice(tmp_path: Path) -> None:
    # 4000 s of history at 10/s (one second at 50), then the slice at 100/s: the operator
    # knows the preceding hour (mean just over 10, peak 50), not the slice's 100.
    counts = [10] * 4000 + [100] * 100
    counts[3000] = 50
    path = write(tmp_path / "c.txt", " ".join(map(str, counts)))
    trace = make_trace("replay", path=str(path), start_s=4000, length_s=100, scale=0.5, compression=2)
    mean, peak = trace.expected_rate(50)
    assert mean == pytest.approx((3599 * 10 + 50) / 3600 * 0.5 * 2)
    assert peak == pytest.approx(50 * 0.5 * 2)
    # A slice from the file's first second has no history to declare.
    assert make_trace("replay", path=str(path), length_s=100).expected_rate(100) is None
