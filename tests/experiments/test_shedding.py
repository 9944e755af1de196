"""Load shedding at the HTTP level (experiments/serving/app.py: Shedder): past
``server.max_inflight`` inference requests in flight, a new one is answered 503 at once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from experiments.serving.app import Shedder


def request(path: str = "/v2/models/m/infer", method: str = "POST") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path}


class Held:
    """An app whose inference requests wait until released, so that they stay in flight."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.entered += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def call(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def test_a_request_beyond_the_limit_in_flight_is_answered_503_at_once_with_its_reason() -> None:
    async def scenario() -> None:
        inner = Held()
        shed: list[int] = []
        app = Shedder(inner, limit=2, on_shed=lambda: shed.append(1))
        first = [asyncio.create_task(call(app, request())) for _ in range(2)]
        await asyncio.sleep(0)
        assert app.inflight == 2 and inner.entered == 2
        start, body = await call(app, request())  # the third: shed without reaching the app
        assert start["status"] == 503 and inner.entered == 2 and shed == [1]
        reason = json.loads(body["body"])["error"]
        assert reason == ("the server is overloaded: 2 inference requests in flight (server.max_inflight = 2); "
                          "try again later")  # fmt: skip
        other = asyncio.create_task(call(app, request("/v2/health/ready", "GET")))  # never shed
        await asyncio.sleep(0)
        assert inner.entered == 3 and app.inflight == 2  # it reached the app, and does not count
        inner.release.set()
        done = await asyncio.gather(*first, other)
        assert [m[0]["status"] for m in done] == [200, 200, 200] and app.inflight == 0
        start, _ = await call(app, request())  # room again
        assert start["status"] == 200 and shed == [1]

    asyncio.run(scenario())


def test_no_limit_sheds_nothing() -> None:
    async def scenario() -> None:
        inner = Held()
        inner.release.set()
        app = Shedder(inner, limit=0, on_shed=lambda: (_ for _ in ()).throw(AssertionError("shed")))
        results = await asyncio.gather(*(call(app, request()) for _ in range(50)))
        assert all(r[0]["status"] == 200 for r in results)

    asyncio.run(scenario())
