"""The HTTP routes: the Open Inference Protocol's health, metadata and infer, and /metrics.

Every request gets exactly one response. Status codes: 200 served; 400 a malformed request
(its field named) or an impossible requirement (the catalog's reason, as the simulator
records it); 404 a name that is no variant, architecture or task; 503 admission or the policy
turned the query away (its reason), the server is stopping, or it sheds load (more than
``server.max_inflight`` inference requests in flight: answered at once, before the body is read,
counted as ``shed``); 500 the batch failed (its fault). Errors are the protocol's
``{"error": "..."}``. A request whose client leaves before its answer is counted as
``abandoned`` (its query still has its record).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from experiments.serving import names
from experiments.serving.bridge import ClusterBridge, Outcome
from experiments.serving.models import Signature
from experiments.serving.names import ModelName, RequestError, UnknownModel
from experiments.serving.protocol import DTYPES, HEADER_LENGTH, InferRequest, encode_response, parse_infer
from experiments.serving.registry import Profiled, Registration, parse_registration, profile_in_background
from experiments.serving.telemetry import CONTENT_TYPE, Telemetry
from infaas_sim.catalog import Catalog
from infaas_sim.errors import InputError
from infaas_sim.query import Requirement

SERVER_NAME = "infaas-sim"
SERVER_VERSION = "0.1.0"


@dataclass
class Service:
    """What the routes share: the catalog, the cluster bridge, each variant's signature."""

    bridge: ClusterBridge
    signatures: dict[str, Signature]
    telemetry: Telemetry
    tally: Counter[str] = field(default_factory=Counter)  # responses by outcome, for summary.json
    draining: bool = False
    # Model registration: where variants are generated, and what they are generated at.
    registry_dir: Path = Path("registered")
    cores: tuple[float, ...] = (1.0,)
    max_batch: int = 8
    registrations: dict[str, Registration] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)  # registrations joining the catalog
    _sig_of: dict[ModelName, Signature] = field(default_factory=dict)
    _names: dict[str, ModelName] = field(default_factory=dict)

    def resolve(self, name: str) -> ModelName:
        """``names.resolve``, memoised: the catalog's name lists are not rebuilt per request."""
        model = self._names.get(name)
        if model is None:
            model = names.resolve(self.catalog, name)  # raises for a bad name: nothing is kept
            if len(self._names) < 4096:  # bounded: only names that resolved are kept
                self._names[name] = model
        return model

    @property
    def catalog(self) -> Catalog:
        """The live catalog: the cluster thread replaces it whole (a registration, a
        re-profile), and the routes only read it."""
        return self.bridge.catalog

    def add_signatures(self, signatures: Mapping[str, Signature]) -> None:
        """New variants joined the catalog (a registration): names resolve afresh from now on."""
        self.signatures.update(signatures)
        self._names.clear()
        self._sig_of.clear()

    def signature(self, model: ModelName) -> Signature:
        """The tensors a name takes and returns: those of all its variants, which must agree."""
        sig = self._sig_of.get(model)
        if sig is not None:
            return sig
        probe = Requirement(model.level, model.target, model.dataset, slo_ms=1.0)
        vids = [self.catalog.variants[int(i)].variant_id for i in self.catalog.group(probe)]
        sigs = {self.signatures[v] for v in vids if v in self.signatures}
        if not sigs:
            raise RequestError(f"model {model.name!r}: none of its variants can run on this server's executor")
        if len(sigs) > 1:
            raise RequestError(f"model {model.name!r}: its variants take different tensors; name a variant")
        sig = self._sig_of[model] = sigs.pop()
        return sig


def _error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=code)


def _input(sig: Signature, req: InferRequest) -> np.ndarray:
    """The request's one input tensor, checked against what the model takes."""
    if len(req.inputs) != 1:
        raise RequestError(f"inputs: the model takes one tensor ({sig.input.name}), got {len(req.inputs)}")
    t = req.inputs[0]
    spec = sig.input
    if t.name != spec.name:
        raise RequestError(f"inputs[0].name: the model's input is {spec.name!r}, got {t.name!r}")
    if t.datatype != spec.datatype:
        raise RequestError(f"inputs[0].datatype: the model takes {spec.datatype}, got {t.datatype}")
    shape = t.array.shape
    if len(shape) != len(spec.shape) + 1 or tuple(shape[1:]) != spec.shape:
        want = ", ".join(map(str, spec.shape))
        raise RequestError(f"inputs[0].shape: the model takes [batch, {want}], got {list(shape)}")
    if shape[0] < 1:
        raise RequestError("inputs[0].shape: the batch dimension must be at least 1")
    if req.outputs is not None:
        for k, o in enumerate(req.outputs):
            if o != sig.output.name:
                raise RequestError(f"outputs[{k}].name: the model's output is {sig.output.name!r}, got {o!r}")
    # A fresh, writable, C-ordered copy: the runtime reads it on another thread later.
    return np.array(t.array, dtype=DTYPES[spec.datatype], order="C")


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _parameters(service: Service, out: Outcome, app_name: str, slo_ms: float | None) -> dict[str, Any]:
    v = service.catalog[out.variant]
    return {
        "variant": out.variant, "hardware": out.hardware, "worker": out.worker, "instance": out.instance,
        "exec_batch": out.exec_batch, "queueing_ms": out.queueing_ms, "loading_ms": out.loading_ms,
        "batching_ms": out.batching_ms, "execution_ms": out.execution_ms, "latency_ms": out.latency_ms,
        "slo_ms": slo_ms, "slo_met": slo_ms is None or out.latency_ms <= slo_ms + 1e-9,
        "accuracy": _finite(v.accuracy), "application": app_name,
    }  # fmt: skip


class Shedder:
    """ASGI middleware: an inference request (``POST .../infer``) that arrives while ``limit``
    are in flight is answered 503 at once, before its body is read or parsed, and counted by
    ``on_shed`` (0: no limit). The cheapest answer the server can give: past its capacity the
    rest of a request's work (JSON, tensors, the cluster) is what it cannot afford."""

    def __init__(self, app: Any, limit: int, on_shed: Callable[[], None]) -> None:
        self.app = app
        self.limit = limit
        self.on_shed = on_shed
        self.inflight = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (not self.limit or scope["type"] != "http" or scope["method"] != "POST"
                or not scope["path"].endswith("/infer")):  # fmt: skip
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.limit:
            self.on_shed()
            body = json.dumps({"error": f"the server is overloaded: {self.inflight} inference requests in flight "
                                        f"(server.max_inflight = {self.limit}); try again later"}).encode()
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
            await send({"type": "http.response.body", "body": body})
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1


def make_app(service: Service, max_inflight: int = 0) -> FastAPI:
    app = FastAPI(title="infaas-serve", version=SERVER_VERSION, docs_url=None, redoc_url=None)
    bridge, tele = service.bridge, service.telemetry

    def shed() -> None:
        service.tally["shed"] += 1
        tele.count("shed", 503)

    app.add_middleware(Shedder, limit=max_inflight, on_shed=shed)

    def answer(status: str, code: int, message: str) -> JSONResponse:
        service.tally[status] += 1
        tele.count(status, code)
        return _error(code, message)

    @app.get("/v2/health/live")
    async def live() -> JSONResponse:
        return JSONResponse({"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> JSONResponse:
        ok = bridge.running and not service.draining
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/v2")
    async def server_metadata() -> JSONResponse:
        return JSONResponse({"name": SERVER_NAME, "version": SERVER_VERSION,
                             "extensions": ["binary_tensor_data", "model_less"]})  # fmt: skip

    def metadata(name: str) -> JSONResponse:
        reg = service.registrations.get(name)
        if reg is not None and reg.state != "ready":
            return JSONResponse({"name": name, "versions": ["1"], "platform": "infaas-model-less", "inputs": [],
                                 "outputs": [], "parameters": reg.describe()})  # fmt: skip
        catalog = service.catalog
        try:
            model = service.resolve(name)
            sig = service.signature(model)
        except UnknownModel as exc:
            return _error(404, str(exc))
        except RequestError as exc:
            return _error(400, str(exc))
        probe = Requirement(model.level, model.target, model.dataset, slo_ms=1.0)
        variants = [catalog.variants[int(i)].variant_id for i in catalog.group(probe)]
        return JSONResponse({
            "name": name, "versions": ["1"], "platform": "infaas-model-less",
            "inputs": [sig.input.metadata()], "outputs": [sig.output.metadata()],
            "parameters": {"level": model.level.value, "target": model.target, "dataset": model.dataset,
                           "variants": variants, "ready": True},
        })  # fmt: skip

    @app.get("/v2/models/{name}")
    async def model_metadata(name: str) -> JSONResponse:
        return metadata(name)

    @app.get("/v2/models/{name}/versions/{version}")
    async def model_version_metadata(name: str, version: str) -> JSONResponse:
        return metadata(name)

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> JSONResponse:
        reg = service.registrations.get(name)
        if reg is not None and reg.state != "ready":
            return JSONResponse({"name": name, "ready": False, "state": reg.state}, status_code=503)
        try:
            service.resolve(name)
        except (UnknownModel, RequestError) as exc:
            return _error(404, str(exc))
        return JSONResponse({"name": name, "ready": True})

    async def infer(name: str, request: Request) -> Response:
        body = await request.body()
        reg = service.registrations.get(name)
        if reg is not None and reg.state != "ready":
            why = reg.reason or "its variants are being generated and profiled"
            return answer("unavailable", 503, f"model {name!r} is not ready ({reg.state}): {why}")
        try:
            model = service.resolve(name)
        except UnknownModel as exc:
            return answer("unknown_model", 404, str(exc))
        except RequestError as exc:
            return answer("invalid", 400, str(exc))
        try:
            req = parse_infer(body, request.headers.get(HEADER_LENGTH))
            requirement = names.requirement(model, req.parameters)
            sig = service.signature(model)
            x = _input(sig, req)
        except (RequestError, InputError) as exc:
            return answer("invalid", 400, str(exc))
        if service.draining:
            return answer("unavailable", 503, "the server is shutting down")
        application = bridge.application(name, requirement)
        fut = bridge.submit(application, int(x.shape[0]), x)
        if fut is None:
            return answer("unavailable", 503, "the server is shutting down")
        try:
            out = await asyncio.shield(fut)  # the query runs on whatever happens to this request
        except asyncio.CancelledError:
            # The client went away (or the drain ran out): no response can go, but the query
            # still gets its record, and the request is counted.
            service.tally["abandoned"] += 1
            tele.count("abandoned", 499)
            raise
        if out.status == "rejected":
            return answer("impossible" if out.impossible else "rejected", 400 if out.impossible else 503,
                          out.reason or "rejected")  # fmt: skip
        if out.status == "failed" or out.output is None:
            return answer("failed", 500, out.reason or "the batch returned no outputs")
        service.tally["served"] += 1
        tele.count("served", 200)
        tele.latency.labels(application=application.name).observe(out.latency_ms / 1000)
        oname = sig.output.name
        binary = dict(req.outputs) if req.outputs is not None else {oname: req.binary_output}
        params = _parameters(service, out, application.name, requirement.slo_ms)
        content, headers = encode_response(name, req.request_id, [(oname, out.output)], params, binary)
        return Response(content, media_type="application/json" if not headers else "application/octet-stream",
                        headers=headers)  # fmt: skip

    @app.post("/v2/models/{name}/infer")
    async def model_infer(name: str, request: Request) -> Response:
        return await infer(name, request)

    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def model_version_infer(name: str, version: str, request: Request) -> Response:
        return await infer(name, request)

    @app.post("/v2/repository/models/{name}/load")
    async def load_model(name: str, request: Request) -> JSONResponse:
        try:
            doc = json.loads(await request.body() or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _error(400, f"body: malformed JSON ({str(exc).splitlines()[0]})")
        params = doc.get("parameters") if isinstance(doc, dict) else None
        if not isinstance(params, dict):
            return _error(400, "parameters must be a JSON object (path or file:<name>, task, dataset, accuracy)")
        known = service.registrations.get(name)
        try:
            service.resolve(name)
            exists = True
        except (UnknownModel, RequestError):
            exists = False
        if exists or (known is not None and known.state != "failed"):
            return _error(400, f"model {name!r} already exists")
        folder = service.registry_dir / name
        if folder.exists():  # an earlier, failed attempt: its files stay, a new attempt gets its own folder
            folder = service.registry_dir / f"{name}.{sum(1 for _ in service.registry_dir.glob(name + '.*')) + 1}"
        try:
            reg, model = await asyncio.to_thread(parse_registration, name, params, folder)
        except RequestError as exc:
            return _error(400, str(exc))
        service.registrations[name] = reg
        loop = asyncio.get_running_loop()

        async def join(profiled: Profiled | None, reason: str) -> None:
            if profiled is None:
                reg.state, reg.reason = "failed", reason
                return
            try:
                await bridge.extend(profiled.catalog, profiled.artifacts)
            except InputError as exc:
                reg.state, reg.reason = "failed", str(exc)
                return
            service.add_signatures(profiled.signatures)
            reg.variants = [v.variant_id for v in profiled.catalog.variants]
            reg.state = "ready"

        def start_join(profiled: Profiled | None, reason: str) -> None:
            task = loop.create_task(join(profiled, reason))
            service.tasks.add(task)  # a reference until it is done
            task.add_done_callback(service.tasks.discard)

        def done(profiled: Profiled | None, reason: str) -> None:  # on the profiling thread
            with contextlib.suppress(RuntimeError):  # the server is gone
                loop.call_soon_threadsafe(start_join, profiled, reason)

        profile_in_background(model, folder, service.cores, service.max_batch, done)
        return JSONResponse(reg.describe())

    @app.post("/v2/repository/index")
    async def repository_index() -> JSONResponse:
        cat = service.catalog
        rows = [{"name": a, "state": "READY"} for a in cat.architectures]
        rows += [{"name": r.name, "state": r.state.upper(), "reason": r.reason}
                 for r in service.registrations.values() if r.state != "ready"]  # fmt: skip
        return JSONResponse(rows)

    @app.get("/metrics")
    async def metrics() -> Response:
        try:
            state = await asyncio.wait_for(bridge.snapshot(), timeout=5.0)
        except TimeoutError:  # the cluster loop is stuck or gone: the counters still answer
            state = {"instances": {}, "workers": {}, "cost_rate": 0.0}
        return Response(tele.render(state, bridge.in_flight), media_type=CONTENT_TYPE)

    return app
