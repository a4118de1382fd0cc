"""Pass renewals on a real Celery worker over the real broker: the beat task sent twice charges the month once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import text

from cli.processes import BEAT_SCHEDULE, TASK_MODULES
from core.celery_app import create_celery
from core.context import AppContext
from core.security import plate_hash
from core.settings import Settings
from tests.conftest import ROOT
from tests.factories import UserFactory, insert_lot
from tests.integration.test_celery_worker import _worker_env


def test_renewal_is_scheduled() -> None:
    assert "booking.tasks" in TASK_MODULES
    assert [job["schedule"] for job in BEAT_SCHEDULE.values() if job["task"] == "passes.renew_due"] == [3_600.0]


async def test_real_worker_renews_a_due_pass_once(ctx: AppContext, settings: Settings, users: UserFactory) -> None:
    local = datetime.now(UTC).astimezone(ZoneInfo("America/Los_Angeles"))  # the worker runs on the wall clock
    this_month = date(local.year, local.month, 1)
    last_month = date(this_month.year - (this_month.month == 1), (this_month.month - 2) % 12 + 1, 1)
    driver = await users.create()
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 2})
        await conn.execute(text(
            "INSERT INTO pass_subscriptions (lot_id, user_id, plate_hash, price_amount, currency, payment_method,"
            " status, current_month, created_at, updated_at) VALUES (:l, :u, :ph, 9000, 'usd', 'pm_card_visa',"
            " 'active', :m, now(), now())"),
            {"l": lot, "u": driver.id, "ph": plate_hash(settings.secret_bytes, "RENEW1"), "m": last_month})
    worker = subprocess.Popen([sys.executable, "-m", "cli", "worker", "--concurrency", "1", "--loglevel", "warning"],
                              cwd=ROOT, env=_worker_env(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        celery = create_celery(settings)
        celery.send_task("passes.renew_due", queue=settings.celery_queue)
        celery.send_task("passes.renew_due", queue=settings.celery_queue)  # a duplicated beat
        deadline, month = time.monotonic() + 60, last_month
        while time.monotonic() < deadline and month != this_month:
            await asyncio.sleep(0.3)  # waiting on another process, not on domain time
            async with ctx.engine.connect() as conn:
                month = await conn.scalar(text("SELECT current_month FROM pass_subscriptions"))
        assert month == this_month
        await asyncio.sleep(1.0)  # let the duplicate run too
        async with ctx.engine.connect() as conn:
            paid = await conn.scalar(text("SELECT count(*) FROM monthly_passes WHERE month = :m AND paid_at IS NOT NULL"),
                                     {"m": this_month})
            charges = list(await conn.execute(text("SELECT amount_captured FROM payments WHERE purpose = 'pass'")))
        assert paid == 1 and [c.amount_captured for c in charges] == [9000]
    finally:
        worker.terminate()
        try:
            out, _ = worker.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            out, _ = worker.communicate()
        assert b"Traceback" not in out, out.decode(errors="replace")[-3000:]
