"""Multi-application mixes (``assign_apps``, ``merge``) and the papers' named slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from infaas_sim.errors import ConfigError, TraceError
from traces.mix import assign_apps, merge
from traces.paper_slices import PAPER_SLICES, paper_trace, real_trace_path


def test_assign_apps_follows_the_shares_and_the_seed() -> None:
    apps = assign_apps(100_000, [1, 3, 0, 6], np.random.default_rng(0))
    assert apps.dtype == np.int64 and apps.shape == (100_000,)
    share = np.bincount(apps, minlength=4) / len(apps)
    assert share == pytest.approx([0.1, 0.3, 0.0, 0.6], abs=0.005)
    assert np.array_equal(apps, assign_apps(100_000, [1, 3, 0, 6], np.random.default_rng(0)))
    assert np.array_equal(assign_apps(5, [2.0], np.random.default_rng(0)), np.zeros(5))
    assert len(assign_apps(0, [1, 1], np.random.default_rng(0))) == 0


@pytest.mark.parametrize(
    ("n", "shares", "needle"),
    [(-1, [1], "n must"), (3, [], "at least one"), (3, [1, -1], "shares[1]"), (3, [0, 0], "all be zero"),
     (3, [1, float("nan")], "shares[1]"), (3, ["a"], "shares[0]")],
)  # fmt: skip
def test_assign_apps_rejects_bad_input(n: int, shares: list, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        assign_apps(n, shares, np.random.default_rng(0))
    assert needle in str(err.value)


def test_merge_is_sorted_stable_and_deterministic() -> None:
    a = np.array([0.0, 1.0, 1.0, 5.0])
    b = np.array([1.0, 2.0])
    c = np.array([], dtype=float)
    times, apps = merge([a, b, c])
    assert times.tolist() == [0.0, 1.0, 1.0, 1.0, 2.0, 5.0]
    assert apps.tolist() == [0, 0, 0, 1, 1, 0]  # ties: stream order, then order within a stream
    assert apps.dtype == np.int64 and times.dtype == np.float64
    t2, a2 = merge([a, b, c])
    assert np.array_equal(times, t2) and np.array_equal(apps, a2)
    empty_t, empty_a = merge([])
    assert len(empty_t) == 0 and len(empty_a) == 0


def test_paper_slices_name_the_readme_windows() -> None:
    assert PAPER_SLICES["infadapter"] == {"start_s": 15 * 86400 + 82 * 60, "length_s": 1260, "scale": 1.0}
    themis = PAPER_SLICES["themis"]
    assert themis["start_s"] == 15 * 86400 + 84 * 60 + 450 and themis["length_s"] == 660
    assert themis["scale"] == pytest.approx(1 / 1.5) and themis["min_rate"] == 1
    assert PAPER_SLICES["ipa-bursty"] == {"start_s": 1301160, "length_s": 1200, "scale": 1 / 8, "rounding": "floor"}
    assert PAPER_SLICES["ipa-steady-low"]["start_s"] == 1299600
    assert PAPER_SLICES["ipa-steady-high"]["segments"] == ((1768800, 600), (1768800, 600))
    assert PAPER_SLICES["ipa-fluctuating"]["segments"] == ((1301400, 600), (1308600, 600))
    with pytest.raises(ConfigError, match="unknown paper slice"):
        paper_trace("clipper")


def test_real_trace_path_honours_the_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "twitter_per_second.txt.bz2").write_bytes(b"")
    monkeypatch.setenv("INFAAS_TRACE_DIR", str(tmp_path))
    assert real_trace_path() == tmp_path / "twitter_per_second.txt.bz2"
    monkeypatch.setenv("INFAAS_TRACE_DIR", str(tmp_path / "absent"))
    found = real_trace_path()
    assert found is None or found.parts[-3:] == ("shared", "traces", "twitter_per_second.txt.bz2")


def test_paper_trace_on_a_small_file(tmp_path: Path) -> None:
    start = PAPER_SLICES["ipa-bursty"]["start_s"]
    path = tmp_path / "small.txt"
    path.write_text("16 " * 10)
    with pytest.raises(TraceError, match="beyond the file's end"):
        paper_trace("ipa-bursty", path=path)
    trace = paper_trace("ipa-bursty", path=path, start_s=0, length_s=10, compression=2)
    assert len(trace.arrivals(5, np.random.default_rng(0))) == 10 * 2  # int(16 / 8) per trace second
    assert start == 1301160
