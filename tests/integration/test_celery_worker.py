"""Sweepers on a real Celery worker over the real broker (never task_always_eager)."""

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from core.celery_app import create_celery
from core.context import AppContext
from core.settings import Settings
from tests.conftest import ROOT, TEST_SECRET
from tests.factories import insert_lot


def _worker_env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "PARKGRID_DATABASE_URL": settings.database_url, "PARKGRID_REDIS_URL": settings.redis_url,
            "PARKGRID_REDIS_PREFIX": settings.redis_prefix, "PARKGRID_BROKER_URL": settings.broker_url,
            "PARKGRID_CELERY_QUEUE": settings.celery_queue, "PARKGRID_SECRET_KEY": TEST_SECRET}


async def test_real_worker_expires_a_stale_hold_sent_twice(ctx: AppContext, settings: Settings) -> None:
    real_now = datetime.now(UTC)  # the worker runs on the wall clock
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 2})
        spot = await conn.scalar(text("SELECT id FROM spots WHERE lot_id = :l LIMIT 1"), {"l": lot})
        start = real_now + timedelta(hours=1)
        await conn.execute(text(
            "INSERT INTO reservations (lot_id, spot_id, vehicle_type, starts_at, ends_at, period, status,"
            " hold_expires_at) VALUES (:l, :s, 'regular', :a, :b, tstzrange(:a, :b, '[)'), 'held', :x)"),
            {"l": lot, "s": spot, "a": start, "b": start + timedelta(hours=1), "x": real_now - timedelta(minutes=1)})
    worker = subprocess.Popen([sys.executable, "-m", "cli", "worker", "--concurrency", "1", "--loglevel", "warning"],
                              cwd=ROOT, env=_worker_env(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        celery = create_celery(settings)
        celery.send_task("booking.expire_holds", queue=settings.celery_queue)
        celery.send_task("booking.expire_holds", queue=settings.celery_queue)  # a duplicated task
        deadline = time.monotonic() + 60
        status = "held"
        while time.monotonic() < deadline and status == "held":
            await asyncio.sleep(0.3)  # waiting on another process, not on domain time
            async with ctx.engine.connect() as conn:
                status = await conn.scalar(text("SELECT status FROM reservations"))
        assert status == "expired"
        async with ctx.engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM reservations WHERE status = 'expired'")) == 1
    finally:
        worker.terminate()
        try:
            out, _ = worker.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            out, _ = worker.communicate()
        assert b"Traceback" not in out, out.decode(errors="replace")[-3000:]
