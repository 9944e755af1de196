"""The load generator's engine: replay a workload against a server, open loop, with aiohttp.

Requests leave at their trace times whether or not earlier ones came back (a task per
request; the connection pool has no limit unless ``load.connections`` sets one, so a request
never waits for a free connection). Each application's model name follows its requirement's
level: the variant id, the architecture, or ``task-dataset``; ``slo_ms`` and
``min_accuracy`` go in the request's parameters. Inputs are synthetic (uniform in [0, 1), as
the real mode's replayed traces use), shaped by the model's metadata, sent as binary tensors.

Every request ends in one record of the run schema (:data:`~infaas_sim.metrics.QUERY_COLUMNS`)
from the client's side: ``latency_ms`` from the request's trace time to its response, the
variant, hardware, worker and latency components as the server reported them; a 400 / 404 /
503 is ``rejected`` with the server's reason, a 500, a timeout or a broken connection
``failed`` with it.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from infaas_sim.errors import ConfigError
from infaas_sim.metrics import QUERY_COLUMNS, TimelineSampler, summarize, timeline_frame
from infaas_sim.query import Application, Level, Requirement
from infaas_sim.simulation import RunResult, Workload

HEADER_LENGTH = "Inference-Header-Content-Length"
_NUMPY = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64}


@dataclass(frozen=True)
class LoadConfig:
    """The ``load`` section of ``infaas-load`` (its defaults live here only)."""

    url: str = "http://127.0.0.1:8000"
    timeout_s: float = 60.0  # a request without a response by then fails
    connections: int = 0  # 0: no limit (open loop)
    figures: bool = False

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"config: load.url must be an http(s) URL, got {self.url!r}")
        if self.timeout_s <= 0 or self.connections < 0:
            raise ConfigError("config: load.timeout_s must be > 0 and load.connections >= 0")


def model_name(req: Requirement) -> str:
    """The model name a requirement is sent to."""
    if req.level is Level.TASK:
        return f"{req.target}-{req.dataset}"
    return req.target


def _parameters(req: Requirement) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if req.slo_ms is not None:
        out["slo_ms"] = req.slo_ms
    if req.min_accuracy > 0:
        out["min_accuracy"] = req.min_accuracy
    return out


@dataclass(frozen=True)
class _Body:
    data: bytes
    header_length: int


def _body(meta: Mapping[str, Any], req: Requirement, batch: int, seed: int) -> _Body:
    """A binary-tensor request for ``batch`` synthetic inputs."""
    spec = meta["inputs"][0]
    dtype = _NUMPY.get(spec["datatype"])
    if dtype is None:
        raise ConfigError(f"model {meta['name']}: the load generator sends float inputs, not {spec['datatype']}")
    shape = [batch, *(int(d) for d in spec["shape"][1:])]
    x = np.random.default_rng(seed).random(shape).astype(dtype)
    raw = x.tobytes()
    head = {
        "inputs": [{"name": spec["name"], "datatype": spec["datatype"], "shape": shape,
                    "parameters": {"binary_data_size": len(raw)}}],
        "outputs": [{"name": o["name"], "parameters": {"binary_data": True}} for o in meta["outputs"]],
        "parameters": _parameters(req),
    }  # fmt: skip
    h = json.dumps(head).encode()
    return _Body(h + raw, len(h))


async def replay(workload: Workload, cfg: LoadConfig, seed: int = 0) -> tuple[list[tuple[Any, ...]], float]:
    """Send every arrival of ``workload``; the records (one tuple per request, QUERY_COLUMNS'
    first 20 fields) and the largest delay of a send behind its trace time (s)."""
    import aiohttp

    apps = list(workload.apps)
    times = workload.times.tolist()
    app_index = workload.app_index.tolist()
    batches = workload.batches.tolist() if workload.batches is not None else [apps[i].batch for i in app_index]
    connector = aiohttp.TCPConnector(limit=cfg.connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=cfg.timeout_s)
    rows: list[tuple[Any, ...]] = []
    async with aiohttp.ClientSession(base_url=cfg.url, connector=connector, timeout=timeout) as http:
        metas: dict[str, dict[str, Any]] = {}
        for app in apps:
            name = model_name(app.requirement)
            if name in metas:
                continue
            try:
                async with http.get(f"/v2/models/{name}") as r:
                    doc = await r.json(content_type=None)
                    if r.status != 200:
                        raise ConfigError(f"server {cfg.url} has no model {name!r}: {doc.get('error', r.status)}")
            except aiohttp.ClientError as exc:
                raise ConfigError(f"server {cfg.url}: {type(exc).__name__}: {exc}") from None
            metas[name] = doc
        bodies: dict[tuple[int, int], _Body] = {}
        for i, b in zip(app_index, batches, strict=True):
            if (i, b) not in bodies:
                req = apps[i].requirement
                bodies[(i, b)] = _body(metas[model_name(req)], req, b, seed + 1000 * i + b)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        lag = 0.0

        async def one(qid: int, t: float) -> None:
            app = apps[app_index[qid]]
            body = bodies[(app.index, batches[qid])]
            url = f"/v2/models/{model_name(app.requirement)}/infer"
            headers = {HEADER_LENGTH: str(body.header_length), "Content-Type": "application/octet-stream"}
            try:
                async with http.post(url, data=body.data, headers=headers) as r:
                    raw = await r.read()
                    done = loop.time() - t0
                    rows.append(_record(qid, app, t, batches[qid], r.status, raw, r.headers.get(HEADER_LENGTH), done))
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = f"client: {type(exc).__name__}: {exc}".splitlines()[0][:300]
                rows.append(_failed(qid, app, t, batches[qid], reason, loop.time() - t0))

        tasks: set[asyncio.Task[None]] = set()
        for qid, t in enumerate(times):
            delay = t0 + t - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lag = max(lag, -delay)
            task = asyncio.create_task(one(qid, t))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        while tasks:
            await asyncio.gather(*list(tasks))
    return rows, lag


def _failed(qid: int, app: Application, t: float, batch: int, reason: str, done: float) -> tuple[Any, ...]:
    return (qid, app.name, t, "failed", reason, "", "", -1, -1, batch, 0, 0.0, 0.0, 0.0, 0.0, math.nan, done,
            app.slo_ms, False, math.nan)  # fmt: skip


def _record(
    qid: int, app: Application, t: float, batch: int, status: int, raw: bytes, header: str | None, done: float
) -> tuple[Any, ...]:
    try:
        doc = json.loads(raw[: int(header)] if header is not None else raw)
    except (ValueError, UnicodeDecodeError):
        doc = {"error": f"HTTP {status} with a body that is not the protocol's JSON"}
    if status != 200:
        reason = str(doc.get("error", f"HTTP {status}"))
        if status in (400, 404, 503):
            return (qid, app.name, t, "rejected", reason, "", "", -1, -1, batch, 0, 0.0, 0.0, 0.0, 0.0, math.nan,
                    done, app.slo_ms, False, math.nan)  # fmt: skip
        return _failed(qid, app, t, batch, f"HTTP {status}: {reason}", done)
    p = doc.get("parameters", {})
    latency = (done - t) * 1000
    slo = app.slo_ms
    acc = p.get("accuracy")
    return (
        qid, app.name, t, "served", None, str(p.get("variant", "")), str(p.get("hardware", "")),
        int(p.get("worker", -1)), int(p.get("instance", -1)), batch, int(p.get("exec_batch", 0)),
        float(p.get("queueing_ms", 0.0)), float(p.get("loading_ms", 0.0)), float(p.get("batching_ms", 0.0)),
        float(p.get("execution_ms", 0.0)), latency, done, slo, slo is None or latency <= slo + 1e-9,
        math.nan if acc is None else float(acc),
    )  # fmt: skip


def load_result(
    apps: Sequence[Application], rows: list[tuple[Any, ...]], duration_s: float, wall_s: float
) -> RunResult:
    """The client's records as a run's outputs (the same queries.parquet schema)."""
    base = QUERY_COLUMNS[:20]
    ordered: list[tuple[Any, ...]] = sorted(rows, key=lambda r: int(r[0]))
    frame = pd.DataFrame(ordered, columns=base)
    n = len(frame)
    frame["qid"] = frame["qid"].astype(np.int64)
    frame["app"] = pd.Categorical(frame["app"], categories=[a.name for a in apps])
    frame["status"] = pd.Categorical(frame["status"], categories=["served", "rejected", "failed"])
    frame["variant"] = pd.Categorical(frame["variant"].where(frame["variant"] != "", None))
    frame["hardware"] = pd.Categorical(frame["hardware"].where(frame["hardware"] != "", None))
    for col in ("worker", "instance", "batch", "exec_batch"):
        frame[col] = frame[col].astype(np.int64)
    frame["slo_ms"] = frame["slo_ms"].astype(float).fillna(np.inf)
    frame["slo_met"] = frame["slo_met"].astype(bool)
    frame["reason"] = frame["reason"].astype(object).where(frame["reason"].notna(), None)
    frame["stages"] = np.ones(n, dtype=np.int64)
    for col in QUERY_COLUMNS[21:]:
        frame[col] = np.full(n, None, dtype=object)
    frame = frame[QUERY_COLUMNS]
    sampler = TimelineSampler()  # the client sees no cluster state
    timeline = timeline_frame(frame, sampler, duration_s)
    summary = summarize(frame, math.nan, duration_s, {}, wall_s)
    instances = pd.DataFrame({"t": pd.Series(dtype=np.int64), "variant": pd.Series(dtype=object),
                              "instances": pd.Series(dtype=np.int64)})  # fmt: skip
    return RunResult(frame, timeline, instances, summary, [])


def run_load(workload: Workload, duration_s: float, cfg: LoadConfig, seed: int = 0) -> RunResult:
    wall0 = time.perf_counter()
    rows, lag = asyncio.run(replay(workload, cfg, seed))
    result = load_result(workload.apps, rows, duration_s, time.perf_counter() - wall0)
    if len(rows) != len(workload.times):  # every request has its one record, or this is a bug
        raise AssertionError(f"{len(workload.times)} requests sent but {len(rows)} records")
    result.summary["client"] = {"url": cfg.url, "max_send_lag_s": lag, "requests": len(rows)}
    return result
