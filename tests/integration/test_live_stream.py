"""The lot's live stream over a real HTTP server: gate decisions and occupancy changes arrive as Server-Sent
Events, a reconnect resumes after its Last-Event-ID, a trimmed log says `reset`, heartbeats flow, and only the
lot's operators (bearer or a short-lived stream token) may listen."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from api.app import create_app
from controllers.live import live_hub, live_publisher, stream_id
from core.clock import ManualClock
from core.context import AppContext, build_context
from core.keys import Keys
from core.settings import Settings
from tests.api.test_gates_world import event, gate_lot
from tests.factories import UserFactory
from tests.procs import free_port


@dataclass
class Sse:
    event: str
    id: str | None
    data: str


async def sse_events(resp: httpx.Response) -> AsyncIterator[Sse | str]:
    """Events of a text/event-stream (and each comment line, as str)."""
    name, ident, data = "message", None, []
    async for line in resp.aiter_lines():
        if line.startswith(":"):
            yield line
        elif line == "":
            if data:
                yield Sse(name, ident, "\n".join(data))
            name, ident, data = "message", None, []
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "id":
                ident = value
            elif field == "data":
                data.append(value)


_readers: dict[int, AsyncIterator[Sse | str]] = {}


def reader(resp: httpx.Response) -> AsyncIterator[Sse | str]:
    """One event reader per response (a response's lines can be iterated once)."""
    if id(resp) not in _readers:
        _readers[id(resp)] = sse_events(resp)
    return _readers[id(resp)]


async def collect(resp: httpx.Response, stop: str, *, timeout: float = 5.0,
                  where: Callable[[dict[str, Any]], bool] = lambda _: True) -> list[Sse]:
    """Events up to and including the first of kind `stop` whose data satisfies `where`."""
    out: list[Sse] = []
    async with asyncio.timeout(timeout):
        async for item in reader(resp):
            if isinstance(item, Sse):
                out.append(item)
                if item.event == stop and where(json.loads(item.data)):
                    return out
    raise AssertionError(f"stream ended before {stop}: {out}")


@pytest.fixture
async def live_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"live_heartbeat_seconds": 1})


@pytest.fixture
async def live_ctx(live_settings: Settings, clock: ManualClock) -> AsyncIterator[AppContext]:
    context = build_context(live_settings, clock=clock)
    try:
        yield context
    finally:
        await context.aclose()


@pytest.fixture
async def server(live_settings: Settings, live_ctx: AppContext) -> AsyncIterator[str]:
    app = create_app(live_settings, context=live_ctx)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                        timeout_graceful_shutdown=1))
    task = asyncio.create_task(srv.serve())
    while not srv.started:
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    await task


async def test_gate_decisions_and_occupancy_arrive_and_a_reconnect_resumes(
        server: str, live_ctx: AppContext, clock: ManualClock) -> None:
    users = UserFactory(live_ctx)
    op = await users.create("operator")
    gl = await gate_lot(live_ctx, organisation_id=op.organisation_id, spots={"regular": 4})
    url = f"{server}/api/v1/lots/{gl.lot_id}/live"
    async with httpx.AsyncClient(timeout=10) as http:
        async with http.stream("GET", url, headers=op.headers) as resp:
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
            await collect(resp, "ready")
            res = await http.post(f"{server}/api/v1/gates/{gl.entry}/events", headers=gl.headers,
                                  json=event(live_ctx, plate="LIVE1"))
            assert res.status_code == 200 and res.json()["decision"] == "open"
            got = await collect(resp, "occupancy", where=lambda d: d["total"]["free"] == 3)
            gate = next(e for e in got if e.event == "gate")
            data = json.loads(gate.data)
            assert data["decision"] == "open" and data["gate_id"] == str(gl.entry) and "LIVE1" not in gate.data
            assert data["at"] == clock.now().isoformat().replace("+00:00", "Z")  # UTC, as the API writes it
            assert json.loads(got[-1].data)["total"]["free"] == 3
            last_id = got[-1].id
            assert last_id is not None

        # while nobody listens here, a second car enters; the reconnect gets it from the log, then "ready"
        await live_publisher(live_ctx).drain()
        second = event(live_ctx, plate="LIVE2")
        res = await http.post(f"{server}/api/v1/gates/{gl.entry}/events", headers=gl.headers, json=second)
        assert res.status_code == 200
        async with http.stream("GET", url, headers={**op.headers, "Last-Event-ID": last_id}) as resp:
            backlog = await collect(resp, "ready")
            assert backlog[-1].event == "ready" and all(stream_id(e.id or "") > stream_id(last_id)
                                                        for e in backlog[:-1])
            assert [json.loads(e.data)["event_id"] for e in backlog if e.event == "gate"] == [second["event_id"]]
            heartbeat = None
            async with asyncio.timeout(5):
                async for item in reader(resp):
                    if isinstance(item, str) and "ping" in item:
                        heartbeat = item
                        break
            assert heartbeat is not None

        # one XREAD per lot per process, however many listen
        async with http.stream("GET", url, headers=op.headers) as a, http.stream("GET", url, headers=op.headers) as b:
            await collect(a, "ready")
            await collect(b, "ready")
            hub = live_hub(live_ctx)
            assert list(hub.readers) == [gl.lot_id] and len(hub.readers[gl.lot_id].queues) == 2


async def test_a_trimmed_log_says_reset_and_bad_ids_are_refused(server: str, live_ctx: AppContext) -> None:
    users = UserFactory(live_ctx)
    op = await users.create("operator")
    gl = await gate_lot(live_ctx, organisation_id=op.organisation_id)
    pub = live_publisher(live_ctx)
    first = await pub.publish(gl.lot_id, "gate", {"n": 1})
    for n in range(2, 5):
        await pub.publish(gl.lot_id, "gate", {"n": n})
    url = f"{server}/api/v1/lots/{gl.lot_id}/live"
    async with httpx.AsyncClient(timeout=10) as http:
        async with http.stream("GET", url, headers={**op.headers, "Last-Event-ID": first or ""}) as resp:
            assert [json.loads(e.data)["n"] for e in await collect(resp, "ready") if e.event == "gate"] == [2, 3, 4]
        await live_ctx.redis.xtrim(Keys(live_ctx.settings.redis_prefix).live_stream(str(gl.lot_id)), maxlen=1,
                                   approximate=False)
        async with http.stream("GET", url, headers={**op.headers, "Last-Event-ID": first or ""}) as resp:
            assert [e.event for e in await collect(resp, "ready")] == ["reset", "ready"]
        bad = await http.get(url, headers={**op.headers, "Last-Event-ID": "yesterday"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["header", "Last-Event-ID"]


async def test_only_the_lots_operators_listen(server: str, live_ctx: AppContext, clock: ManualClock) -> None:
    users = UserFactory(live_ctx)
    op = await users.create("operator")
    stranger = await users.create("operator")
    driver = await users.create("driver")
    gl = await gate_lot(live_ctx, organisation_id=op.organisation_id)
    other = await gate_lot(live_ctx, organisation_id=op.organisation_id)
    url = f"{server}/api/v1/lots/{gl.lot_id}/live"
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(url)).status_code == 401
        assert (await http.get(url, headers=stranger.headers)).status_code == 404
        assert (await http.get(url, headers=driver.headers)).status_code == 403
        assert (await http.get(f"{server}/api/v1/lots/{uuid.uuid4()}/live", headers=op.headers)).status_code == 404

        token = (await http.post(f"{url}/token", headers=op.headers)).json()
        assert token["expires_in"] == live_ctx.settings.live_token_ttl_seconds
        async with http.stream("GET", f"{server}{token['url']}") as resp:  # no Authorization header: EventSource
            assert resp.status_code == 200
            await collect(resp, "ready")
        theirs = (await http.post(f"{url}/token", headers=stranger.headers))
        assert theirs.status_code == 404
        wrong_lot = await http.get(f"{server}/api/v1/lots/{other.lot_id}/live", params={"token": token["token"]})
        assert wrong_lot.status_code == 404  # a token opens its own lot's stream only
        assert (await http.get(url, params={"token": "not-a-token"})).status_code == 401
        clock.advance(seconds=token["expires_in"] + 1)
        assert (await http.get(url, params={"token": token["token"]})).status_code == 401


async def test_sensor_readings_reach_the_stream_of_a_watched_lot_only(server: str, live_ctx: AppContext,
                                                                      clock: ManualClock) -> None:
    users = UserFactory(live_ctx)
    op = await users.create("operator")
    watched = await gate_lot(live_ctx, organisation_id=op.organisation_id, spots={"regular": 2})
    unwatched = await gate_lot(live_ctx, organisation_id=op.organisation_id, spots={"regular": 2})
    now = clock.now().isoformat()

    def readings(prefix: str) -> dict[str, Any]:
        return {"events": [{"event_id": f"{prefix}-{i}", "sensor_id": f"L0-00{i}", "state": "occupied",
                            "confidence": 0.99, "occurred_at": now} for i in (1, 2)]}

    url = f"{server}/api/v1/lots/{watched.lot_id}/live"
    async with httpx.AsyncClient(timeout=10) as http:
        async with http.stream("GET", url, headers=op.headers) as resp:
            await collect(resp, "ready")
            for gl in (watched, unwatched):
                res = await http.post(f"{server}/api/v1/lots/{gl.lot_id}/sensor-events", headers=gl.headers,
                                      json=readings(str(gl.lot_id)))
                assert res.status_code == 202 and res.json()["accepted"] == 2, res.text
            got = await collect(resp, "occupancy", where=lambda d: d["total"]["freshness"]["source"] == "sensor")
            assert json.loads(got[-1].data)["total"]["free"] == 0
    await live_publisher(live_ctx).drain()
    keys = Keys(live_ctx.settings.redis_prefix)
    assert await live_ctx.redis.xlen(keys.live_stream(str(unwatched.lot_id))) == 0  # nobody looks: nothing computed
