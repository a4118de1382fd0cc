"""Plates of finished sessions and reservations are purged after the retention period; counts are logged."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta

from sqlalchemy import text
from structlog.testing import capture_logs

from core.celery_app import create_celery
from core.clock import ManualClock
from core.context import AppContext
from core.privacy import purge_expired_plates
from core.security import plate_hash
from core.settings import Settings
from core.tasks import PURGE_PLATES_TASK, purge_plates_job
from tests.conftest import ROOT, TEST_SECRET
from tests.factories import insert_lot

DAY = timedelta(days=1)


async def _seed(ctx: AppContext, now: datetime) -> dict[str, uuid.UUID]:
    """One row per case, each with its own plate; returns label -> row id."""
    secret = ctx.settings.secret_bytes
    ids: dict[str, uuid.UUID] = {}
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 2})
        spot = (await conn.execute(text("SELECT id FROM spots WHERE lot_id = :l LIMIT 1"), {"l": lot})).scalar_one()

        async def session(label: str, status: str, entered: datetime, exited: datetime | None) -> None:
            plate = label.upper().replace("_", "")[:12]
            ids[label] = (await conn.execute(text(
                "INSERT INTO parking_sessions (lot_id, kind, spot_id, plate, plate_hash, status, entered_at, exited_at)"
                " VALUES (:lot, 'walk_in', :spot, :p, :ph, :st, :en, :ex) RETURNING id"),
                {"lot": lot, "spot": spot, "p": plate, "ph": plate_hash(secret, plate), "st": status, "en": entered,
                 "ex": exited})).scalar_one()

        async def reservation(label: str, status: str, starts: datetime, **stamps: datetime) -> None:
            plate = label.upper().replace("_", "")[:12]
            cols = "".join(f", {c}" for c in stamps)
            vals = "".join(f", :{c}" for c in stamps)
            ids[label] = (await conn.execute(text(
                "INSERT INTO reservations (lot_id, spot_id, vehicle_type, plate, plate_hash, starts_at, ends_at,"
                " period, status, hold_expires_at" + cols + ") VALUES (:lot, :spot, 'regular', :p, :ph, :s, :e,"
                " tstzrange(:s, :e, '[)'), :st, :hold" + vals + ") RETURNING id"),
                {"lot": lot, "spot": spot, "p": plate, "ph": plate_hash(secret, plate), "s": starts,
                 "e": starts + timedelta(hours=2), "st": status, "hold": starts - timedelta(hours=1),
                 **stamps})).scalar_one()

        await session("s_old", "completed", now - 95 * DAY, now - 91 * DAY)
        await session("s_recent", "completed", now - 95 * DAY, now - 89 * DAY)
        await session("s_active", "active", now - 120 * DAY, None)  # a car parked for months keeps its plate
        await reservation("r_completed", "completed", now - 100 * DAY, exited_at=now - 100 * DAY + timedelta(hours=1))
        await reservation("r_cancelled", "cancelled", now - 80 * DAY, cancelled_at=now - 95 * DAY)
        await reservation("r_cancel_new", "cancelled", now - 80 * DAY, cancelled_at=now - 10 * DAY)
        await reservation("r_expired", "expired", now - 91 * DAY)
        await reservation("r_noshow", "no_show", now - 93 * DAY)
        await reservation("r_confirmed", "confirmed", now + DAY)
    return ids


async def _plates(ctx: AppContext) -> dict[uuid.UUID, tuple[str | None, bytes | None]]:
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT id, plate, plate_hash FROM parking_sessions UNION ALL "
            "SELECT id, plate, plate_hash FROM reservations"))).all()
    return {r.id: (r.plate, r.plate_hash) for r in rows}


async def test_purge_after_retention_nulls_plate_and_hash_and_logs_counts(ctx: AppContext, clock: ManualClock) -> None:
    now = clock.now()
    ids = await _seed(ctx, now)
    with capture_logs() as logs:
        result = await purge_expired_plates(engine=ctx.engine, now=now, retention_days=90, batch=2)
    assert (result.sessions, result.reservations) == (1, 4)
    plates = await _plates(ctx)
    purged = {label for label, row_id in ids.items() if plates[row_id] == (None, None)}
    assert purged == {"s_old", "r_completed", "r_cancelled", "r_expired", "r_noshow"}
    assert all(plates[ids[k]][0] and plates[ids[k]][1] for k in ids.keys() - purged)
    [entry] = [e for e in logs if e["event"] == "plates_purged"]
    assert (entry["sessions"], entry["reservations"], entry["retention_days"]) == (1, 4, 90)

    again = await purge_expired_plates(engine=ctx.engine, now=now, retention_days=90)
    assert (again.sessions, again.reservations) == (0, 0)

    clock.advance(days=2)  # time passes: s_recent crosses the line
    later = await purge_expired_plates(engine=ctx.engine, now=clock.now(), retention_days=90)
    assert (later.sessions, later.reservations) == (1, 0)


async def test_task_job_uses_the_retention_setting_and_the_clock(settings: Settings, clock: ManualClock) -> None:
    from core.context import build_context
    from tests.conftest import make_settings

    short = make_settings(database_url=settings.database_url, redis_prefix=settings.redis_prefix,
                          plate_retention_days=5)
    ctx = build_context(short, clock=clock)
    try:
        await _seed(ctx, clock.now())
        out = await purge_plates_job(ctx)
        assert (out["sessions"], out["reservations"]) == (2, 5)  # with 5 days, the 10-day-old cancellation goes too
    finally:
        await ctx.aclose()


async def test_beat_schedules_the_purge_daily_and_a_real_worker_runs_it(ctx: AppContext, settings: Settings,
                                                                         clock: ManualClock) -> None:
    from cli.processes import BEAT_SCHEDULE, TASK_MODULES

    assert "core.tasks" in TASK_MODULES
    assert [e["schedule"] for e in BEAT_SCHEDULE.values() if e["task"] == PURGE_PLATES_TASK] == [86_400.0]

    ids = await _seed(ctx, clock.now())
    env = {**os.environ, "PARKGRID_DATABASE_URL": settings.database_url, "PARKGRID_SECRET_KEY": TEST_SECRET,
           "PARKGRID_REDIS_URL": settings.redis_url, "PARKGRID_REDIS_PREFIX": settings.redis_prefix,
           "PARKGRID_BROKER_URL": settings.broker_url, "PARKGRID_CELERY_QUEUE": settings.celery_queue,
           "PARKGRID_LOG_LEVEL": "warning"}
    worker = subprocess.Popen([sys.executable, "-m", "cli", "worker", "--concurrency", "1", "--loglevel", "warning"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    celery = create_celery(settings)
    try:
        celery.send_task(PURGE_PLATES_TASK, kwargs={"now": clock.now().isoformat()}, queue=settings.celery_queue)
        for _ in range(300):
            plates = await _plates(ctx)
            if plates[ids["r_noshow"]] == (None, None) and plates[ids["s_old"]] == (None, None):
                break
            assert worker.poll() is None, worker.stderr.read().decode()[-2000:] if worker.stderr else ""
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the worker did not purge within 30 s")
        assert plates[ids["s_recent"]][0] is not None
    finally:
        celery.close()
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
