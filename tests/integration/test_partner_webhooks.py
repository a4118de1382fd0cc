"""Partners' signed webhooks against a real HTTP receiver: Standard Webhooks signatures checked by the reference
library, retries with the same delivery id, secret rotation, one delivery per transition however many ticks."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from standardwebhooks import Webhook, WebhookVerificationError

from core.clock import ManualClock
from core.context import AppContext
from core.settings import Settings
from geo import webhooks
from geo.feed_snapshot import build_snapshot
from tests.open_data_world import City, build_city

ROOT = Path(__file__).resolve().parent.parent.parent


class Receiver:
    """A partner's endpoint: records every request; answers the queued statuses, then 204."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/parkgrid"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


async def _tick(ctx: AppContext) -> webhooks.TickReport:
    now = ctx.clock.now()
    pool = await ctx.pg()
    snap = await build_snapshot(pool, now=now, previous=None, stale_after=timedelta(minutes=10),
                                max_age=timedelta(minutes=1))
    async with httpx.AsyncClient(timeout=5.0) as http:
        return await webhooks.tick(pool, lots=snap.lots, http=http, now=now)


async def _sql(ctx: AppContext, sql: str, **params: Any) -> None:
    async with ctx.engine.begin() as conn:
        await conn.execute(text(sql), params)


async def _walk_ins(ctx: AppContext, city: City, n: int) -> None:
    now = ctx.clock.now()
    await _sql(ctx, "INSERT INTO reservations (lot_id, kind, spot_id, vehicle_type, starts_at, ends_at, period, status)"
                    " SELECT s.lot_id, 'walk_in', s.id, s.type, :s, :e, tstzrange(:s, :e, '[)'), 'active' FROM spots s"
                    " WHERE s.lot_id = :l AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.spot_id = s.id)"
                    " ORDER BY s.idx LIMIT :n",
               l=city.gate, s=now - timedelta(minutes=5), e=now + timedelta(hours=3), n=n)


async def _subscribe(ctx: AppContext, city: City, url: str) -> tuple[Any, str]:
    async with ctx.engine.begin() as conn:
        partner_id = (await conn.execute(text("SELECT id FROM partners WHERE name = 'Navi'"))).scalar_one()
        return await webhooks.subscribe(conn, partner_id=partner_id, url=url, events=webhooks.EVENTS,
                                        now=ctx.clock.now())


@pytest.fixture
def real_time(clock: ManualClock) -> ManualClock:
    clock.set(datetime.now(UTC).replace(microsecond=0))  # the reference library checks timestamps against now
    return clock


async def test_transitions_are_signed_delivered_once_and_retried_with_the_same_id(
        ctx: AppContext, receiver: Receiver, real_time: ManualClock) -> None:
    city = await build_city(ctx)
    _, secret = await _subscribe(ctx, city, receiver.url)
    first = await _tick(ctx)
    assert (first.transitions, receiver.requests) == (0, [])  # first look: states recorded, nothing sent

    await _walk_ins(ctx, city, 9)  # 9 of 10 taken: nearly full
    assert (await _tick(ctx)).delivered == 1
    await _walk_ins(ctx, city, 1)  # full
    receiver.statuses = [500]  # the partner fails once
    report = await _tick(ctx)
    assert (report.transitions, report.retried, report.delivered) == (1, 1, 0)
    assert (await _tick(ctx)).delivered == 0  # not due yet: backoff
    real_time.advance(seconds=11)
    assert (await _tick(ctx)).delivered == 1
    await _sql(ctx, "UPDATE lots SET status = 'closed' WHERE id = :l", l=city.gate)
    await _tick(ctx)
    await _sql(ctx, "UPDATE lots SET status = 'open' WHERE id = :l", l=city.gate)
    await _tick(ctx)

    hook = Webhook(secret)
    seen = [(h["webhook-id"], hook.verify(body, h)) for h, body in receiver.requests]
    assert [p["type"] for _, p in seen] == ["lot.nearly_full", "lot.full", "lot.full", "lot.closed", "lot.reopened"]
    assert seen[1][0] == seen[2][0]  # the retry carries the same webhook-id: the receiver can drop a replay
    assert len({i for i, _ in seen}) == 4
    assert seen[0][1]["data"].items() >= {"lot_id": str(city.gate), "available": 1, "capacity": 10,
                                          "state": "nearly_full", "previous_state": "open"}.items()
    h, body = receiver.requests[0]
    tampered = body.replace(b"nearly_full", b"open", 1)
    assert tampered != body
    with pytest.raises(WebhookVerificationError):  # a tampered body does not verify
        hook.verify(tampered, h)
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(body, h)


async def _race(ctx: AppContext, city: City) -> int:
    """Two workers record the gate lot turning full: the second runs while the first has not committed. How many
    transitions do they report together?"""
    pool = await ctx.pg()
    now = ctx.clock.now()
    args = {"lot_ids": [city.gate], "states": ["full"], "now": now}
    async with pool.acquire() as c1, pool.acquire() as c2, pool.acquire() as watch:
        t1 = c1.transaction()
        await t1.start()
        first = await webhooks.record_states(c1, **args)

        async def second() -> int:
            async with c2.transaction():
                return len(await webhooks.record_states(c2, **args))

        task = asyncio.create_task(second())
        for _ in range(500):  # until the second waits on the first's row lock (bounded)
            if await watch.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                    " AND wait_event_type = 'Lock'"):
                break
            await asyncio.sleep(0.01)
        await t1.commit()
        return len(first) + await task


async def test_two_workers_find_a_transition_once(ctx: AppContext, receiver: Receiver, real_time: ManualClock) -> None:
    city = await build_city(ctx)
    await _tick(ctx)  # the gate lot is recorded "open"
    assert await _race(ctx, city) == 1


async def test_negative_control_without_the_guard_both_workers_report_it(
        ctx: AppContext, receiver: Receiver, real_time: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard is the lock on the previous state and the conditional upsert: without them, both report."""
    city = await build_city(ctx)
    await _tick(ctx)
    monkeypatch.setattr(webhooks.q, "LOCK_ALERT_STATES", webhooks.q.LOCK_ALERT_STATES.replace("FOR UPDATE", ""))
    monkeypatch.setattr(webhooks.q, "UPSERT_ALERT_STATES", webhooks.q.UPSERT_ALERT_STATES.replace(
        "WHERE lot_alert_states.state <> EXCLUDED.state", ""))
    assert await _race(ctx, city) == 2  # the failure the guard prevents: one transition, two deliveries


async def test_rotation_signs_with_both_secrets_during_the_overlap(ctx: AppContext, receiver: Receiver,
                                                                   real_time: ManualClock) -> None:
    city = await build_city(ctx)
    webhook_id, old = await _subscribe(ctx, city, receiver.url)
    await _tick(ctx)
    async with ctx.engine.begin() as conn:
        new = await webhooks.rotate_secret(conn, webhook_id=webhook_id, now=real_time.now())
    await _sql(ctx, "UPDATE lots SET status = 'closed' WHERE id = :l", l=city.gate)
    await _tick(ctx)
    h, body = receiver.requests[-1]
    assert len(h["webhook-signature"].split(" ")) == 2
    assert Webhook(new).verify(body, h)["type"] == "lot.closed"
    assert Webhook(old).verify(body, h)["type"] == "lot.closed"


def test_cli_subscribes_rotates_and_lists(settings: Settings, tmp_path: Path) -> None:
    env = {**os.environ, "PARKGRID_DATABASE_URL": settings.database_url,
           "PARKGRID_SECRET_KEY": settings.secret_key.get_secret_value(), "PYTHONPATH": str(ROOT)}

    def cli(*args: str) -> Any:
        out = subprocess.run([sys.executable, "-m", "cli", *args, "--json"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    partner = cli("partners", "create", "--name", "OTP Bayern")["partner_id"]
    hook = cli("partners", "webhooks", "add", "--partner", partner, "--url", "https://otp.example/hooks",
               "--events", "lot.full,lot.closed")
    assert hook["secret"].startswith("whsec_") and hook["events"] == ["lot.closed", "lot.full"]
    rotated = cli("partners", "webhooks", "rotate-secret", "--webhook", hook["webhook_id"])
    assert rotated["secret"] != hook["secret"]
    listed = cli("partners", "webhooks", "list", "--partner", partner)["items"]
    assert [w["id"] for w in listed] == [hook["webhook_id"]] and "secret" not in listed[0]
    bad = subprocess.run([sys.executable, "-m", "cli", "partners", "webhooks", "add", "--partner", partner, "--url",
                          "ftp://x", "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                         check=False)
    assert bad.returncode == 1 and "url" in bad.stderr


async def test_beat_schedules_the_webhooks_and_a_real_worker_delivers(ctx: AppContext, settings: Settings,
                                                                       receiver: Receiver,
                                                                       real_time: ManualClock) -> None:
    from cli.processes import BEAT_SCHEDULE, TASK_MODULES
    from core.celery_app import create_celery
    from geo.tasks import WEBHOOKS_TASK

    assert "geo.tasks" in TASK_MODULES
    assert [e["schedule"] for e in BEAT_SCHEDULE.values() if e["task"] == WEBHOOKS_TASK] == [10.0]
    city = await build_city(ctx)
    _, secret = await _subscribe(ctx, city, receiver.url)
    await _tick(ctx)  # states recorded
    await _sql(ctx, "UPDATE lots SET status = 'closed' WHERE id = :l", l=city.gate)
    env = {**os.environ, "PARKGRID_DATABASE_URL": settings.database_url,
           "PARKGRID_SECRET_KEY": settings.secret_key.get_secret_value(), "PARKGRID_REDIS_URL": settings.redis_url,
           "PARKGRID_REDIS_PREFIX": settings.redis_prefix, "PARKGRID_BROKER_URL": settings.broker_url,
           "PARKGRID_CELERY_QUEUE": settings.celery_queue, "PARKGRID_LOG_LEVEL": "warning"}
    worker = subprocess.Popen([sys.executable, "-m", "cli", "worker", "--concurrency", "1", "--loglevel", "warning"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    celery = create_celery(settings)
    try:
        celery.send_task(WEBHOOKS_TASK, queue=settings.celery_queue)
        for _ in range(300):
            if receiver.requests:
                break
            assert worker.poll() is None, worker.stderr.read().decode()[-2000:] if worker.stderr else ""
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the worker sent nothing within 30 s")
        h, body = receiver.requests[0]
        assert Webhook(secret).verify(body, h)["type"] == "lot.closed"
    finally:
        celery.close()
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
