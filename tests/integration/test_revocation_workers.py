"""Revocation takes effect on the very next request on every worker of `parkgrid serve --workers 2` (real
processes: the server, and the CLI that revokes). Every request opens its own connection, so SO_REUSEPORT spreads
them over both workers (16 connections all landing on one worker: about 1 in 30,000). The device is revoked by
the CLI; the partner and the user by the same functions the CLI runs (its revoke and announce), to save two
process starts on a shared machine."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import text

from core.accounts import create_device, create_partner, revoke_partner, revoke_user
from core.context import AppContext
from core.keyring import announce_revocation
from core.settings import Settings
from tests.conftest import ROOT, TEST_SECRET
from tests.factories import UserFactory, insert_lot
from tests.procs import free_port, wait_port

N = 16  # fresh connections per check


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PARKGRID_DATABASE_URL": settings.database_url, "PARKGRID_REDIS_URL": settings.redis_url,
           "PARKGRID_REDIS_PREFIX": settings.redis_prefix, "PARKGRID_SECRET_KEY": TEST_SECRET,
           "PARKGRID_RATE_LIMITS": "off", "PARKGRID_LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "2"], cwd=ROOT, env=env, start_new_session=True)
    try:
        wait_port(port, timeout=30)
        base = f"http://127.0.0.1:{port}"
        for _ in range(N):  # both workers up (each answers /healthz once its app started)
            httpx.get(f"{base}/healthz", timeout=90).raise_for_status()
        yield base
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)


def cli(settings: Settings, *args: str) -> None:
    env = {**os.environ, "PARKGRID_DATABASE_URL": settings.database_url, "PARKGRID_REDIS_URL": settings.redis_url,
           "PARKGRID_REDIS_PREFIX": settings.redis_prefix, "PARKGRID_SECRET_KEY": TEST_SECRET,
           "PARKGRID_LOG_LEVEL": "warning"}
    subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, env=env, check=True, capture_output=True,
                   timeout=60)


def statuses(url: str, headers: dict[str, str]) -> set[int]:
    """The status of N requests, each on a new connection (so on either worker)."""
    return {httpx.get(url, headers=headers, timeout=10).status_code for _ in range(N)}


async def _device(ctx: AppContext) -> tuple[str, str, str]:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 2})
        device_id, key = await create_device(conn=conn, lot_id=lot, name="gate")
    return str(lot), str(device_id), key


async def test_revoked_keys_answer_401_on_the_next_request_on_both_workers(server: str, settings: Settings,
                                                                           ctx: AppContext) -> None:
    # negative control first: a revocation written to PostgreSQL without announcing it (what revocation was
    # before) is not seen: the workers keep answering from what they remember
    lot, device_id, key = await _device(ctx)
    snapshot = f"{server}/api/v1/lots/{lot}/edge-snapshot"
    assert statuses(snapshot, {"X-Device-Key": key}) == {200}  # now remembered by both workers (60 s)
    async with ctx.engine.begin() as conn:
        await conn.execute(text("UPDATE devices SET revoked_at = now() WHERE id = :id"), {"id": device_id})
    assert statuses(snapshot, {"X-Device-Key": key}) == {200}

    lot, device_id, key = await _device(ctx)
    snapshot = f"{server}/api/v1/lots/{lot}/edge-snapshot"
    assert statuses(snapshot, {"X-Device-Key": key}) == {200}
    async with ctx.engine.begin() as conn:
        partner_id, api_key = await create_partner(conn=conn, name="city", quota="10000/minute")
    feed = f"{server}/api/v1/open/lots"
    assert statuses(feed, {"X-API-Key": api_key}) == {200}
    driver = await UserFactory(ctx).create("driver")
    token = httpx.post(f"{server}/api/v1/auth/token", data={"username": driver.email, "password": driver.password},
                       timeout=30).json()["access_token"]
    me = f"{server}/api/v1/me"
    assert statuses(me, {"Authorization": f"Bearer {token}"}) == {200}

    cli(settings, "devices", "revoke", "--device", device_id)
    assert statuses(snapshot, {"X-Device-Key": key}) == {401}
    async with ctx.engine.begin() as conn:
        await revoke_partner(conn=conn, partner_id=partner_id, now=ctx.clock.now())
        await revoke_user(conn=conn, email=driver.email, now=ctx.clock.now())
    await announce_revocation(redis=ctx.redis, prefix=settings.redis_prefix)
    assert statuses(feed, {"X-API-Key": api_key}) == {401}
    assert statuses(me, {"Authorization": f"Bearer {token}"}) == {401}
