"""Beat schedules the history refresh, retention, nightly training and the 15-minute forecast refresh; a real
worker on the real broker runs the refresh."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from celery.schedules import crontab
from sqlalchemy import text

from analytics.tasks import (
    FORECAST_REFRESH_TASK,
    FORECAST_TRAIN_TASK,
    HISTORY_PRUNE_TASK,
    HISTORY_REFRESH_TASK,
    history_refresh_job,
)
from core.celery_app import create_celery
from core.context import AppContext
from core.settings import Settings
from tests.conftest import ROOT, TEST_SECRET
from tests.factories import insert_lot

NOW = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)


def test_beat_schedules_every_analytics_job() -> None:
    from cli.processes import BEAT_SCHEDULE, TASK_MODULES

    assert "analytics.tasks" in TASK_MODULES
    by_task = {e["task"]: e["schedule"] for e in BEAT_SCHEDULE.values()}
    assert by_task[HISTORY_REFRESH_TASK] == 900.0 and by_task[FORECAST_REFRESH_TASK] == 900.0
    assert by_task[HISTORY_PRUNE_TASK] == 86_400.0
    assert isinstance(by_task[FORECAST_TRAIN_TASK], crontab)  # nightly


async def _lot_with_a_session(ctx: AppContext) -> object:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 4})
        spot = await conn.scalar(text("SELECT id FROM spots WHERE lot_id = :l LIMIT 1"), {"l": lot})
        await conn.execute(text("INSERT INTO parking_sessions (lot_id, kind, spot_id, status, entered_at) "
                                "VALUES (:l, 'walk_in', :s, 'active', :a)"), {"l": lot, "s": spot,
                                                                               "a": NOW - timedelta(hours=1)})
    return lot


async def test_the_history_refresh_job_writes_the_last_two_hours(ctx: AppContext) -> None:
    await _lot_with_a_session(ctx)
    out = await history_refresh_job(ctx, now=NOW)
    assert out["rows_15m"] == 8 and out["to"] == NOW.isoformat()


async def test_a_real_worker_refreshes_history_and_forecasts(ctx: AppContext, settings: Settings) -> None:
    lot = await _lot_with_a_session(ctx)
    env = {**os.environ, "PARKGRID_DATABASE_URL": settings.database_url, "PARKGRID_SECRET_KEY": TEST_SECRET,
           "PARKGRID_REDIS_URL": settings.redis_url, "PARKGRID_REDIS_PREFIX": settings.redis_prefix,
           "PARKGRID_BROKER_URL": settings.broker_url, "PARKGRID_CELERY_QUEUE": settings.celery_queue,
           "PARKGRID_LOG_LEVEL": "warning"}
    worker = subprocess.Popen([sys.executable, "-m", "cli", "worker", "--concurrency", "1", "--loglevel", "warning"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    celery = create_celery(settings)
    try:
        celery.send_task(FORECAST_REFRESH_TASK, kwargs={"now": NOW.isoformat()}, queue=settings.celery_queue)
        for _ in range(600):
            async with ctx.engine.connect() as conn:
                rows = await conn.scalar(text("SELECT count(*) FROM forecasts WHERE lot_id = :l"), {"l": lot})
                model = await conn.scalar(text("SELECT min(model) FROM forecasts WHERE lot_id = :l"), {"l": lot})
            if rows:
                break
            assert worker.poll() is None, worker.stderr.read().decode()[-2000:] if worker.stderr else ""
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the worker wrote no forecast within 60 s")
        assert rows == 192  # the next 2 days (the nightly training writes 7)
        assert model == "baseline:last-value"  # two hours of history, no trained model: the stated fallback
    finally:
        celery.close()
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
