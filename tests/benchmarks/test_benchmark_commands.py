"""Every benchmark the README lists runs and prints its figures (each in a small
configuration here: the figures the README quotes come from the default ones). Nothing here
times anything: the benchmarks measure, the tests only check that they still run and say
what they measure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def bench(*args: str, timeout: float = 300) -> str:
    res = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_bench_simulator_prints_the_simulator_and_both_floors() -> None:
    out = bench("benchmarks/bench_simulator.py", "--qps", "50", "--duration", "20")
    for line in ("simulator, run_experiment", "event loop alone", "SimPy-callback floor", "heapq floor",
                 "ratio simulator / SimPy floor", "peak RSS", "peak traced to the loop's end", "issue 16 targets"):
        assert line in out  # fmt: skip


def test_bench_scale_prints_start_up_and_both_policies() -> None:
    out = bench("benchmarks/bench_scale.py", "--qps", "500", "--duration", "5", "--workers", "200",
                "--max-workers", "50")  # fmt: skip
    assert "start-up: 200 workers" in out and "ratio" in out
    assert "static: 500 QPS" in out and "infaas: 500 QPS" in out and "simulated s per CPU s" in out


def test_bench_startup_prints_the_start_up_and_what_it_imported() -> None:
    out = bench("benchmarks/bench_startup.py", "--repeat", "1")
    assert "start-up (to the first event)" in out
    assert "scipy imported: False; matplotlib imported: False" in out  # figures off: neither is needed


def test_bench_plan_plans_a_few_candidates(tmp_path: Path) -> None:
    out = bench("benchmarks/bench_plan.py", "--trials", "3", "--qps", "20", "--duration", "30", "--n-jobs", "1",
                "--out", str(tmp_path / "plan"))  # fmt: skip
    assert "plan: 3 candidates" in out and "(exit 0)" in out


def test_bench_infaas_prints_route_latency_and_the_ilp_gap() -> None:
    out = bench("benchmarks/bench_infaas.py", "--calls", "1000", "--trace", "synthetic", "--instances", "100",
                "--compare-seconds", "120")  # fmt: skip
    assert "ILP solve time" in out and "cost gap" in out


def test_bench_serving_overhead_compares_served_with_bare() -> None:
    pytest.importorskip("onnxruntime", reason="the serving path's benchmark runs ONNX Runtime")
    out = bench("benchmarks/bench_serving_overhead.py", "--seconds", "2", "--rounds", "1")
    assert "bare onnxruntime loop" in out and "ratio served / bare" in out


def test_the_http_overhead_benchmark_compares_served_through_http_with_bare() -> None:
    pytest.importorskip("onnxruntime", reason="the HTTP overhead benchmark runs ONNX Runtime")
    pytest.importorskip("aiohttp", reason="its clients are aiohttp (the serve extra)")
    out = bench("-m", "experiments.serving.overhead", "--model", "resnet-tiny", "--batch", "4", "--seconds", "1",
                "--clients", "2")  # fmt: skip
    assert "bare onnxruntime loop" in out and "of bare (target >= 80%)" in out


def test_bench_serving_overhead_refuses_a_run_shorter_than_its_warm_up() -> None:
    res = subprocess.run([sys.executable, "benchmarks/bench_serving_overhead.py", "--seconds", "0.5"], cwd=ROOT,
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 2 and "--seconds must be > 1" in res.stderr


def test_bench_ray_overhead_prints_rays_overhead_per_query() -> None:
    pytest.importorskip("ray", reason="the Ray overhead benchmark needs Ray")
    pytest.importorskip("onnxruntime", reason="the Ray overhead benchmark runs ONNX Runtime")
    out = bench("benchmarks/bench_ray_overhead.py", "--seconds", "2", "--qps", "10")
    assert "Ray's overhead per query" in out
