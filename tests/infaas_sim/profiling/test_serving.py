"""The serving-path profile: batch latency through the real executor and wall-clock loop, as
the cluster records a batch's execution time, measured before a run."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from infaas_sim import realtime
from infaas_sim.catalog import Catalog
from infaas_sim.errors import ConfigError
from infaas_sim.profiling.serving import ServingProfile, profile_in_service, profile_serving

VID = "resnet-tiny-ort-fp32-1c"


def test_every_batch_size_is_timed_through_the_serving_path(built: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A spy on the runtime: which batches the serving path really ran, and the seconds the
    # runtime itself took for each (no timing is compared against a threshold here).
    ran: list[tuple[int, float]] = []
    real_open = realtime.open_runner

    def spying_open(*args: Any) -> Any:
        runner = real_open(*args)
        run_batch = runner.run_batch

        def timed(n: int) -> float:
            seconds = run_batch(n)
            ran.append((n, seconds))
            return seconds

        runner.run_batch = timed  # type: ignore[method-assign]
        return runner

    monkeypatch.setattr(realtime, "open_runner", spying_open)
    prof = profile_serving(str(built.catalog), VID, repeats=8, warmup=1, gap_ms=1.0)
    assert sorted(prof.samples) == [1, 2, 3, 4] and all(len(s) == 8 for s in prof.samples.values())
    assert [b for b, _ in prof.points()] == [1, 2, 3, 4]
    # The load's first run (it allocates the arena), then warm-up + repeats of every size, in order.
    assert [n for n, _ in ran] == [1] + [b for b in (1, 2, 3, 4) for _ in range(9)]
    # A served batch is the runtime plus hand-offs: the serving path's clock encloses the
    # runtime's own, so each sample is at least the seconds that batch's runtime took.
    runtime_ms = [s * 1000 for _, s in ran[1:]]
    served = [ms for b in (1, 2, 3, 4) for ms in ((None,) + prof.samples[b])]  # None: the warm-up
    assert all(ms is None or ms >= rt - 1e-6 for ms, rt in zip(served, runtime_ms, strict=True))
    assert prof.cv() >= 0
    assert len(prof.service_seconds()) == 32 and all(s > 0 for _, s in prof.service_seconds())


def test_the_points_are_what_the_simulator_reads(built: Any) -> None:
    prof = ServingProfile("v", {1: (1.0, 2.0, 9.0), 2: (4.0, 4.0)}, gap_ms=0.0)
    assert prof.points() == ((1, 2.0), (2, 4.0))
    assert prof.mean_ms(1) == pytest.approx(4.0)
    assert prof.cv() == pytest.approx(float(np.std([0.25, 0.5, 2.25, 1.0, 1.0])))
    assert prof.service_seconds()[0] == (1, 0.001)
    cat = Catalog.load(built.catalog)
    assert VID in {v.variant_id for v in cat.variants}


def test_bad_settings_are_one_line_errors(built: Any) -> None:
    with pytest.raises(ConfigError, match="repeats >= 2"):
        profile_serving(str(built.catalog), VID, repeats=1)
    with pytest.raises(ConfigError, match="no artifact"):
        profile_serving(str(built.catalog), "nope", repeats=4)


CLUSTER = {
    "workers": {"cpu": "local"},
    "instance_types": {
        "local": {"kind": "cpu", "vcpus": 2, "memory_mb": 8192, "price_per_hour": 0.1, "startup_s": 0.0},
    },
    "min_workers": {"cpu": 1}, "max_workers": {"cpu": 1}, "max_queue_s": 2.0, "resize_delay_s": 0.0, "max_wait_s": 0.0,
}  # fmt: skip


def test_the_in_service_profile_records_every_served_batch(built: Any) -> None:
    prof = profile_in_service(str(built.catalog), VID, CLUSTER, rate_qps=200.0, duration_s=0.5, seed=3)
    # Every sample is a served batch of 1..max batch inputs; at this rate most are single.
    assert set(prof.samples) <= {1, 2, 3, 4} and 1 in prof.samples
    assert 40 < sum(len(s) for s in prof.samples.values()) <= 150  # ~100 arrivals, each in one batch
    assert all(ms > 0 for s in prof.samples.values() for ms in s)
    with pytest.raises(ConfigError, match="rate_qps > 0"):
        profile_in_service(str(built.catalog), VID, CLUSTER, rate_qps=0.0)
