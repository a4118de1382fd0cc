"""Idempotency-Keys expire after their TTL: the sweeper task on a real Celery worker over the real broker."""

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from core.celery_app import create_celery
from core.context import AppContext
from core.settings import Settings
from tests.conftest import ROOT
from tests.integration.test_celery_worker import _worker_env


async def test_real_worker_drops_keys_older_than_a_day(ctx: AppContext, settings: Settings) -> None:
    real_now = datetime.now(UTC)  # the worker runs on the wall clock
    async with ctx.engine.begin() as conn:
        for key, age, point in (("old-answered", 25, "finished"), ("old-started", 30, "started"),
                                ("recent", 23, "finished")):
            await conn.execute(text(
                "INSERT INTO idempotency_keys (scope, key, request_hash, recovery_point, locked_at, status_code,"
                " response, created_at) VALUES ('u:POST:/x', :key, 'h', :point,"
                " CASE WHEN :point = 'started' THEN CAST(:at AS timestamptz) END,"
                " CASE WHEN :point = 'finished' THEN 200 END, CASE WHEN :point = 'finished' THEN '{}'::jsonb END,"
                " :at)"), {"key": key, "point": point, "at": real_now - timedelta(hours=age)})
    worker = subprocess.Popen([sys.executable, "-m", "cli", "worker", "--concurrency", "1", "--loglevel", "warning"],
                              cwd=ROOT, env=_worker_env(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        create_celery(settings).send_task("booking.expire_idempotency_keys", queue=settings.celery_queue)
        deadline, keys = time.monotonic() + 60, ["old-answered", "old-started", "recent"]
        while time.monotonic() < deadline and len(keys) > 1:
            await asyncio.sleep(0.3)  # waiting on another process, not on domain time
            async with ctx.engine.connect() as conn:
                keys = list((await conn.execute(text("SELECT key FROM idempotency_keys ORDER BY key"))).scalars())
        assert keys == ["recent"]
    finally:
        worker.terminate()
        try:
            out, _ = worker.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            out, _ = worker.communicate()
        assert b"Traceback" not in out, out.decode(errors="replace")[-3000:]
