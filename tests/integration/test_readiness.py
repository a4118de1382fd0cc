"""Readiness names what is down; liveness does not care."""

import subprocess

import httpx

from api.app import create_app
from core.settings import Settings
from tests.conftest import make_settings
from tests.procs import free_port


async def _get(settings: Settings, path: str) -> httpx.Response:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            return await http.get(path)


async def test_ready_then_redis_killed_is_503_naming_redis(
    settings: Settings, private_redis: tuple[int, subprocess.Popen[bytes]]
) -> None:
    port, proc = private_redis
    s = make_settings(database_url=settings.database_url, redis_url=f"redis://127.0.0.1:{port}/0",
                      redis_prefix=settings.redis_prefix)
    ok = await _get(s, "/readyz")
    assert ok.status_code == 200, ok.text
    assert ok.json()["checks"] == {"database": "ok", "redis": "ok", "broker": "ok", "migrations": "ok"}
    proc.kill()
    proc.wait()
    down = await _get(s, "/readyz")
    assert down.status_code == 503
    assert down.headers["content-type"] == "application/problem+json"
    body = down.json()
    assert body["checks"]["redis"].startswith("down")
    assert body["checks"]["database"] == "ok"
    assert "redis" in body["detail"]
    live = await _get(s, "/healthz")
    assert live.status_code == 200


async def test_database_not_at_head_is_503_naming_migrations(settings: Settings) -> None:
    import asyncio

    from core.migrate import downgrade

    await asyncio.to_thread(downgrade, settings.database_url, "base")
    res = await _get(settings, "/readyz")
    assert res.status_code == 503
    assert res.json()["checks"]["migrations"].startswith("down: database at no revision")


async def test_broker_down_is_named(settings: Settings) -> None:
    s = make_settings(database_url=settings.database_url, redis_prefix=settings.redis_prefix,
                      broker_url=f"redis://127.0.0.1:{free_port()}/0")
    res = await _get(s, "/readyz")
    assert res.status_code == 503
    assert res.json()["checks"]["broker"].startswith("down")
