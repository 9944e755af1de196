"""The server's overhead: saturating throughput through HTTP against a bare onnxruntime loop.

    .venv/bin/python -m experiments.serving.overhead [--model resnet-s] [--batch 8] [--seconds 5]
        [--clients 4] [--cores 1]

One variant (the built-in model, ORT-optimised, fp32, on ``--cores`` intra-op threads) is
generated and profiled into a temporary folder. The bare loop calls ``session.run`` on a
batch of ``--batch`` back to back. The served figure runs ``infaas-serve`` in this process on
a free loopback port and ``--clients`` closed-loop aiohttp clients, each sending requests of
``--batch`` inputs (binary tensors) to the pinned variant as fast as answers come back; its
throughput is inputs answered per second over ``--seconds``. The clients share the machine
with the server, so on a small machine the figure is a lower bound. Target: served >= 80% of
bare (issue 17).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def bare_throughput(path: Path, cores: float, batch: int, seconds: float) -> float:
    from executors.onnxruntime import OrtModelRunner

    runner = OrtModelRunner(path, cores, batch, {"opt": "all"})
    for _ in range(5):
        runner.run_batch(batch)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        runner.run_batch(batch)
        n += batch
    return n / (time.perf_counter() - t0)


async def _served(url: str, model: str, shape: list[int], batch: int, seconds: float, clients: int) -> float:
    import aiohttp

    x = np.random.default_rng(0).random([batch, *shape]).astype(np.float32).tobytes()
    head = json.dumps({
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [batch, *shape],
                    "parameters": {"binary_data_size": len(x)}}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
        "parameters": {"slo_ms": 10_000},
    }).encode()  # fmt: skip
    body, headers = head + x, {"Inference-Header-Content-Length": str(len(head))}
    done = {"inputs": 0, "errors": 0}
    async with aiohttp.ClientSession(base_url=url) as http:

        async def client(until: float) -> None:
            while time.perf_counter() < until:
                async with http.post(f"/v2/models/{model}/infer", data=body, headers=headers) as r:
                    await r.read()
                    if r.status == 200:
                        done["inputs"] += batch
                    else:
                        done["errors"] += 1

        await asyncio.gather(*(client(time.perf_counter() + 1.0) for _ in range(clients)))  # warm-up
        done["inputs"] = 0
        t0 = time.perf_counter()
        await asyncio.gather(*(client(t0 + seconds) for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    if done["errors"]:
        print(f"warning: {done['errors']} requests were not served")
    return done["inputs"] / elapsed


def main(argv: list[str] | None = None) -> int:
    from experiments.serving.server import Serving
    from infaas_sim.catalog import Catalog
    from infaas_sim.profiling.build import build_catalog
    from infaas_sim.profiling.zoo import builtin_family

    ap = argparse.ArgumentParser(prog="python -m experiments.serving.overhead", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet-s")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--cores", type=float, default=1.0)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "variants"
        path, _ = build_catalog(builtin_family([a.model]), folder, cores=[a.cores], max_batch=a.batch,
                                backends=["onnxruntime"], ort_precisions=["fp32-opt"], warmup=2, repeats=5)  # fmt: skip
        variant = Catalog.load(str(path)).variants[0]
        artifact = folder / next(folder.glob("*.opt.onnx")).name
        bare = bare_throughput(artifact, a.cores, a.batch, a.seconds)
        cluster = {"workers": {"cpu": "local"}, "min_workers": {"cpu": 1}, "max_workers": {"cpu": 1},
                   "instance_types": {"local": {"kind": "cpu", "vcpus": max(1, round(a.cores)), "memory_mb": 8192,
                                                "price_per_hour": 0.096, "startup_s": 0.0}},
                   "max_queue_s": 30.0, "resize_delay_s": 0.0}  # fmt: skip
        cfg = {"catalog": {"path": str(path)}, "cluster": cluster, "policy": {"name": "infaas", "params": {}},
               "executor": {"name": "onnxruntime", "params": {"catalog": str(path)}},
               "server": {"port": 0, "reprofile": False}}  # fmt: skip
        serving = Serving(cfg, Path(tmp) / "out")
        url = serving.start()
        try:
            shape = [int(d) for d in serving.service.signatures[variant.variant_id].input.shape]
            served = asyncio.run(_served(url, variant.variant_id, shape, a.batch, a.seconds, a.clients))
        finally:
            result = serving.stop()
    batches = result.queries["exec_batch"]
    print(f"{variant.variant_id}, batch {a.batch}, {a.clients} clients")
    print(f"bare onnxruntime loop: {bare:,.0f} inputs/s")
    print(f"through infaas-serve:  {served:,.0f} inputs/s = {served / bare:.0%} of bare (target >= 80%); "
          f"mean batch run {batches.mean():.1f} inputs")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
