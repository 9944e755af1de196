"""A run is a function of its inputs and seed: the same seed gives byte-identical records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from infaas_sim.executor import make_executor
from infaas_sim.policy import make_policy
from infaas_sim.simulation import RunResult


def _run(h: Any, seed: int, noise_cv: float = 0.2) -> RunResult:
    # Two applications on the tiny catalog, batching with a wait, latency noise.
    t, idx = h.merge((h.poisson_times(300, 20.0, seed=7), 0), (h.poisson_times(80, 20.0, seed=8), 1))
    apps = [h.task_app(slo_ms=50, index=0, name="fast"), h.task_app(slo_ms=200, index=1, name="slow")]
    return h.simulate(
        h.VARIANTS,
        h.workload(apps, t, idx),
        make_policy("static", replicas="peak"),
        20.0,
        executor=make_executor("sim", noise_cv=noise_cv),
        spec=h.spec(max_wait_s=0.004),
        seed=seed,
    )


def _parquet_bytes(res: RunResult, path: Path) -> bytes:
    res.queries.to_parquet(path)
    return path.read_bytes()


def test_same_seed_gives_byte_identical_parquet(h: Any, tmp_path: Path) -> None:
    a = _parquet_bytes(_run(h, seed=3), tmp_path / "a.parquet")
    b = _parquet_bytes(_run(h, seed=3), tmp_path / "b.parquet")
    assert a == b
    # And the file reads back as the records it was written from.
    back = pd.read_parquet(tmp_path / "a.parquet")
    assert len(back) > 5000 and list(back.columns) == list(_run(h, seed=3).queries.columns)


def test_a_different_seed_gives_different_noise(h: Any, tmp_path: Path) -> None:
    r3, r4 = _run(h, seed=3), _run(h, seed=4)
    assert _parquet_bytes(r3, tmp_path / "a.parquet") != _parquet_bytes(r4, tmp_path / "b.parquet")
    # Same arrivals (the trace is fixed), different execution times.
    assert np.array_equal(r3.queries["arrival"], r4.queries["arrival"])
    assert not np.allclose(r3.queries["execution_ms"], r4.queries["execution_ms"])


def test_noise_has_mean_one_and_the_requested_spread(h: Any) -> None:
    # The log-normal factor multiplies the profiled latency: mean 1, CV noise_cv.
    res = _run(h, seed=5, noise_cv=0.2)
    q = res.queries[res.queries["status"] == "served"]
    per_batch = q.drop_duplicates(["instance", "completion"])
    cat = {v.variant_id: v for v in h.VARIANTS}
    profiled = np.array(
        [cat[v].latency_ms(b) for v, b in zip(per_batch["variant"], per_batch["exec_batch"], strict=True)]
    )
    ratio = per_batch["execution_ms"].to_numpy() / profiled
    assert len(ratio) > 2000
    assert ratio.mean() == np.float64(ratio.mean())  # finite
    assert abs(ratio.mean() - 1) < 0.02
    assert abs(ratio.std() / ratio.mean() - 0.2) < 0.02


def test_without_noise_the_seed_does_not_matter(h: Any, tmp_path: Path) -> None:
    a = _parquet_bytes(_run(h, seed=1, noise_cv=0.0), tmp_path / "a.parquet")
    b = _parquet_bytes(_run(h, seed=2, noise_cv=0.0), tmp_path / "b.parquet")
    assert a == b


def test_by_default_each_variant_gets_its_measured_spread(h: Any) -> None:
    # noise_cv null (the default): the catalog's latency_cv per variant; 0 means deterministic.
    from dataclasses import replace

    t, idx = h.merge((h.poisson_times(300, 20.0, seed=7), 0), (h.poisson_times(80, 20.0, seed=8), 1))
    apps = [h.task_app(slo_ms=50, index=0, name="fast"), h.task_app(slo_ms=200, index=1, name="slow")]

    def ratios(cv: float, seed: int = 5) -> tuple[np.ndarray, RunResult]:
        variants = tuple(replace(v, latency_cv=cv) for v in h.VARIANTS)
        res = h.simulate(variants, h.workload(apps, t, idx), make_policy("static", replicas="peak"), 20.0,
                         executor=make_executor("sim"), spec=h.spec(max_wait_s=0.004), seed=seed)  # fmt: skip
        q = res.queries[res.queries["status"] == "served"].drop_duplicates(["instance", "completion"])
        cat = {v.variant_id: v for v in variants}
        profiled = [cat[v].latency_ms(b) for v, b in zip(q["variant"], q["exec_batch"], strict=True)]
        return q["execution_ms"].to_numpy() / np.array(profiled), res

    noisy, res = ratios(0.3)
    assert len(noisy) > 2000
    assert abs(noisy.mean() - 1) < 0.03 and abs(noisy.std() / noisy.mean() - 0.3) < 0.03
    quiet, _ = ratios(0.0)
    assert np.allclose(quiet, 1.0)
    assert res.queries.equals(ratios(0.3)[1].queries)  # still a function of the seed
    # A number given as noise_cv overrides the catalog's spread.
    forced = h.simulate(tuple(replace(v, latency_cv=0.3) for v in h.VARIANTS), h.workload(apps, t, idx),
                        make_policy("static", replicas="peak"), 20.0, executor=make_executor("sim", noise_cv=0.0),
                        spec=h.spec(max_wait_s=0.004), seed=5)  # fmt: skip
    q = forced.queries[forced.queries["status"] == "served"]
    cat = {v.variant_id: v for v in h.VARIANTS}
    profiled = [cat[v].latency_ms(b) for v, b in zip(q["variant"], q["exec_batch"], strict=True)]
    assert np.allclose(q["execution_ms"], profiled)


def test_noise_cv_must_be_a_number_or_null() -> None:
    import pytest

    from infaas_sim.errors import ConfigError

    for bad in ("abc", True, -0.1):
        with pytest.raises(ConfigError, match="noise_cv"):
            make_executor("sim", noise_cv=bad)
