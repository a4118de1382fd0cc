"""Rate limits in real Redis: per IP on sign-in and sign-up, per user on writes, per partner key on open data.
429 with Retry-After; PARKGRID_RATE_LIMITS=off switches them off; Redis down fails open with a warning."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from structlog.testing import capture_logs

from api.app import create_app
from core.accounts import create_partner
from core.clock import ManualClock
from core.context import AppContext, build_context
from core.settings import Settings
from tests.conftest import make_settings
from tests.factories import UserFactory

PASSWORD = "correct horse battery staple"


@asynccontextmanager
async def serve(settings: Settings, clock: ManualClock) -> AsyncIterator[tuple[AppContext, httpx.AsyncClient]]:
    ctx = build_context(settings, clock=clock)
    app = create_app(settings, context=ctx)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("10.0.0.1", 1234)),
                                     base_url="http://t") as http:
            yield ctx, http
    finally:
        await ctx.aclose()


def _limited(settings: Settings, **overrides: object) -> Settings:
    base: dict[str, object] = {"database_url": settings.database_url, "redis_prefix": settings.redis_prefix,
                               "redis_url": settings.redis_url, "rate_limits": "on"}
    return make_settings(**{**base, **overrides})


def _assert_429(res: httpx.Response, window_seconds: int) -> None:
    assert res.status_code == 429, res.text
    assert res.headers["content-type"] == "application/problem+json"
    assert res.json()["type"].endswith("/too-many-requests")
    assert 1 <= int(res.headers["Retry-After"]) <= window_seconds


async def _login(http: httpx.AsyncClient, password: str = "wrong password") -> httpx.Response:
    return await http.post("/api/v1/auth/token", data={"username": "victim@example.com", "password": password})


async def test_login_brute_force_gets_429_with_retry_after(settings: Settings, clock: ManualClock) -> None:
    async with serve(_limited(settings, rate_limit_login="5/minute"), clock) as (ctx, http):
        await UserFactory(ctx).create("driver", email="victim@example.com", password=PASSWORD)
        for _ in range(5):
            assert (await _login(http)).status_code == 401
        _assert_429(await _login(http), 60)
        _assert_429(await _login(http, PASSWORD), 60)  # even the right password waits: the budget is spent
        app = create_app(ctx.settings, context=ctx)
        other_ip = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("10.0.0.2", 1)),
                                     base_url="http://t")
        async with other_ip:
            assert (await _login(other_ip, PASSWORD)).status_code == 200


async def test_registration_is_limited_per_ip(settings: Settings, clock: ManualClock) -> None:
    async with serve(_limited(settings, rate_limit_register="2/hour"), clock) as (_, http):
        for i in range(2):
            res = await http.post("/api/v1/auth/register", json={"email": f"u{i}@example.com", "password": PASSWORD})
            assert res.status_code == 201
        _assert_429(await http.post("/api/v1/auth/register", json={"email": "u9@example.com", "password": PASSWORD}),
                    3600)


async def test_writes_are_limited_per_user_not_reads(settings: Settings, clock: ManualClock) -> None:
    async with serve(_limited(settings, rate_limit_writes="2/minute"), clock) as (ctx, http):
        alice, bob = await UserFactory(ctx).create("driver"), await UserFactory(ctx).create("driver")
        for plate in ("AA1", "AA2"):
            assert (await http.post("/api/v1/me/vehicles", headers=alice.headers, json={"plate": plate})).status_code \
                == 201
        _assert_429(await http.post("/api/v1/me/vehicles", headers=alice.headers, json={"plate": "AA3"}), 60)
        assert (await http.get("/api/v1/me/vehicles", headers=alice.headers)).status_code == 200
        assert (await http.post("/api/v1/me/vehicles", headers=bob.headers, json={"plate": "BB1"})).status_code == 201


async def test_partner_quota_exhaustion_is_429_per_key(settings: Settings, clock: ManualClock) -> None:
    async with serve(_limited(settings), clock) as (ctx, http):
        async with ctx.engine.begin() as conn:
            _, small = await create_partner(conn=conn, name="Small", quota="3/minute")
            _, big = await create_partner(conn=conn, name="Big", quota="100/minute")
        for _ in range(3):
            assert (await http.get("/api/v1/open/lots", headers={"X-API-Key": small})).status_code == 200
        _assert_429(await http.get("/api/v1/open/lots", headers={"X-API-Key": small}), 60)
        assert (await http.get("/api/v1/open/lots", headers={"X-API-Key": big})).status_code == 200


async def test_rate_limits_off_switches_everything_off(settings: Settings, clock: ManualClock) -> None:
    s = _limited(settings, rate_limits="off", rate_limit_login="1/minute", rate_limit_writes="1/minute")
    async with serve(s, clock) as (ctx, http):
        for _ in range(5):
            assert (await _login(http)).status_code == 401
        async with ctx.engine.begin() as conn:
            _, key = await create_partner(conn=conn, name="P", quota="1/minute")
        for _ in range(3):
            assert (await http.get("/api/v1/open/lots", headers={"X-API-Key": key})).status_code == 200
        keys = [k async for k in ctx.redis.scan_iter(match=f"{s.redis_prefix}*")]
        assert keys == []


async def test_redis_stopped_fails_open_with_a_warning(
    settings: Settings, clock: ManualClock, private_redis: tuple[int, subprocess.Popen[bytes]]
) -> None:
    port, proc = private_redis
    s = _limited(settings, redis_url=f"redis://127.0.0.1:{port}/0", rate_limit_login="2/minute",
                 rate_limit_writes="1/minute")
    async with serve(s, clock) as (ctx, http):
        user = await UserFactory(ctx).create("driver", email="victim@example.com", password=PASSWORD)
        for _ in range(2):
            assert (await _login(http)).status_code == 401
        _assert_429(await _login(http), 60)  # the limiter works while Redis is up

        proc.kill()
        proc.wait()
        with capture_logs() as logs:
            started = time.monotonic()
            for _ in range(5):
                assert (await _login(http)).status_code == 401  # not 429, not 500
            assert (await _login(http, PASSWORD)).status_code == 200
            for plate in ("CC1", "CC2", "CC3"):  # writes (bookings among them) are never blocked
                res = await http.post("/api/v1/me/vehicles", headers=user.headers, json={"plate": plate})
                assert res.status_code == 201, res.text
            elapsed = time.monotonic() - started
        warnings = [e for e in logs if e["event"] == "rate_limit_fail_open"]
        assert warnings and warnings[0]["log_level"] == "warning"
        assert elapsed < 5, "a dead Redis must not stall every request"
