"""Acknowledged means committed: a route writing through ConnDep commits before its response starts.

A deferred constraint trigger the test creates fails at COMMIT: the route must answer 5xx problem+json, never
2xx. A lot read by the client the moment its 201 arrives must exist. Negative controls put the per-request
connection back in FastAPI's default (request) scope, which commits after the response: then the same
requests answer 201 for nothing and the lot is not there yet.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import text

from api.app import create_app
from api.deps import ConnDep, get_conn
from core.clock import ManualClock
from core.context import AppContext, build_context
from tests.conftest import make_settings
from tests.factories import UserFactory

LOT = {"name": "Commit Lot", "address": "1 Main St", "location": {"lat": 37.77, "lng": -122.42},
       "timezone": "UTC", "levels": [{"name": "L1", "spots": [{"type": "regular", "count": 2}]}],
       "gates": [{"name": "In", "direction": "entry"}]}

REFUSE_AT_COMMIT = [
    "CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS"
    " $$ BEGIN RAISE EXCEPTION 'refused at commit' USING ERRCODE = 'check_violation'; END $$",
    "CREATE CONSTRAINT TRIGGER lots_refused_at_commit AFTER INSERT ON lots"
    " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()",
]


def conn_dependants(app: FastAPI) -> list[Any]:
    """Every dependency on the per-request connection, in the dependants the app's routes run."""
    found: list[Any] = []

    def walk(dep: Any) -> None:
        for sub in dep.dependencies:
            if sub.call is get_conn:
                found.append(sub)
            walk(sub)

    def routes(items: list[Any]) -> None:
        for route in items:
            if isinstance(route, APIRoute):
                walk(route.dependant)
            elif hasattr(route, "effective_candidates"):  # an included router: FastAPI builds its routes lazily
                routes(route.effective_candidates())
            elif getattr(route, "dependant", None) is not None:  # one of those routes
                walk(route.dependant)

    routes(app.routes)
    return found


@contextmanager
def commit_after_response() -> Iterator[None]:
    """The negative control: ConnDep as it was, in FastAPI's default scope (its exit, the COMMIT, runs after
    the response is sent). Apps built inside the block take it."""
    depends = ConnDep.__metadata__[0]
    object.__setattr__(depends, "scope", None)
    try:
        yield
    finally:
        object.__setattr__(depends, "scope", "function")


@pytest.fixture
async def pctx(private_db_url: str, redis_prefix: str, clock: ManualClock) -> AsyncIterator[AppContext]:
    context = build_context(make_settings(database_url=private_db_url, redis_prefix=redis_prefix,
                                          celery_queue=f"q{redis_prefix}"), clock=clock)
    try:
        yield context
    finally:
        await context.aclose()


@asynccontextmanager
async def _app(ctx: AppContext, *, old: bool) -> AsyncIterator[FastAPI]:
    with commit_after_response() if old else nullcontext():
        app = create_app(ctx.settings, context=ctx)
        conn_dependants(app)  # builds the routes (lazily built ones take ConnDep's scope of the moment)
    async with app.router.lifespan_context(app):
        yield app


async def asgi(app: FastAPI, method: str, path: str, body: bytes, headers: dict[str, str],
               on_body: Callable[[int, bytes], Awaitable[None]] | None = None) -> tuple[int, bytes]:
    """One request straight into the ASGI app, as a server would make it; `on_body` runs the moment the
    response body is sent, as a client that acts on it at once (before the app has finished)."""
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
             "raw_path": path.encode(), "query_string": b"", "root_path": "", "scheme": "http", "headers": raw,
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80)}
    sent = False
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body") and on_body is not None:
                await on_body(status, b"".join(chunks))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def test_every_route_commits_before_answering(ctx: AppContext) -> None:
    app = create_app(ctx.settings, context=ctx)
    deps = conn_dependants(app)
    assert len(deps) > 10  # lots, rates, passes, sessions, zones, sensors, me, auth...
    assert {d.scope for d in deps} == {"function"}
    with commit_after_response():  # the negative control does change what the routes run
        assert {d.scope for d in conn_dependants(create_app(ctx.settings, context=ctx))} == {None}


@pytest.mark.parametrize("old", [False, True], ids=["commit-then-answer", "negative-control-old-scope"])
async def test_a_commit_that_fails_answers_5xx(pctx: AppContext, old: bool) -> None:
    op = await UserFactory(pctx).create("operator")
    async with pctx.engine.begin() as conn:
        for stmt in REFUSE_AT_COMMIT:
            await conn.execute(text(stmt))
    async with _app(pctx, old=old) as app:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            res = await http.post("/api/v1/lots", json=LOT, headers=op.headers)
    async with pctx.engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM lots")) == 0  # the COMMIT did fail
    if old:
        assert res.status_code == 201  # the client holds a 201 for a lot that does not exist
    else:
        assert res.status_code == 500, res.text
        assert res.headers["content-type"].startswith("application/problem+json")
        assert res.json()["status"] == 500


@pytest.mark.parametrize("old", [False, True], ids=["commit-then-answer", "negative-control-old-scope"])
async def test_a_lot_read_the_moment_its_201_arrives_is_found(ctx: AppContext, users: UserFactory,
                                                               old: bool) -> None:
    op = await users.create("operator")
    seen: list[tuple[int, int]] = []
    async with _app(ctx, old=old) as app:

        async def read_at_once(status: int, body: bytes) -> None:
            lot_id = orjson.loads(body)["id"]
            got, _ = await asgi(app, "GET", f"/api/v1/lots/{lot_id}", b"", op.headers)
            async with ctx.engine.connect() as conn:
                rows = await conn.scalar(text("SELECT count(*) FROM lots WHERE id = :id"), {"id": uuid.UUID(lot_id)})
            seen.append((got, int(rows or 0)))

        for _ in range(5):
            status, _ = await asgi(app, "POST", "/api/v1/lots", orjson.dumps(LOT), op.headers, on_body=read_at_once)
            assert status == 201
    if old:
        assert seen == [(404, 0)] * 5
    else:
        assert seen == [(200, 1)] * 5
