"""Every error is application/problem+json (RFC 9457)."""

import httpx
from fastapi import FastAPI
from pydantic import BaseModel, Field

from api.app import create_app
from core.context import AppContext
from core.settings import Settings


async def test_unknown_route_is_problem_json(client: httpx.AsyncClient) -> None:
    res = await client.get("/api/v1/no-such-thing")
    assert res.status_code == 404
    assert res.headers["content-type"] == "application/problem+json"
    body = res.json()
    assert body["type"].endswith("/not-found")
    assert body["status"] == 404 and body["instance"] == "/api/v1/no-such-thing"
    assert res.headers["x-request-id"]


async def test_wrong_method_is_problem_json(client: httpx.AsyncClient) -> None:
    res = await client.post("/healthz")
    assert res.status_code == 405
    assert res.headers["content-type"] == "application/problem+json"


class _Body(BaseModel):
    name: str = Field(max_length=5)
    count: int


async def test_validation_error_lists_each_bad_field(settings: Settings, ctx: AppContext) -> None:
    app: FastAPI = create_app(settings, context=ctx)

    @app.post("/echo")
    async def echo(body: _Body) -> _Body:
        return body

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        res = await http.post("/echo", json={"name": "far too long", "count": "x"})
    assert res.status_code == 422
    assert res.headers["content-type"] == "application/problem+json"
    body = res.json()
    locs = [tuple(e["loc"]) for e in body["errors"]]
    assert ("body", "name") in locs and ("body", "count") in locs
    assert "body.name" in body["detail"]


async def test_oversized_body_is_413_problem(client: httpx.AsyncClient, settings: Settings) -> None:
    res = await client.post("/healthz", content=b"x" * (settings.max_body_bytes + 1))
    assert res.status_code == 413
    assert res.json()["type"].endswith("/payload-too-large")


async def test_metrics_and_openapi(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    metrics = await client.get("/metrics")
    assert 'parkgrid_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics.text
    spec = await client.get("/openapi.json")
    assert spec.status_code == 200 and "/readyz" in spec.json()["paths"]
