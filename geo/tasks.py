"""Celery task of the open data package: partners' webhooks (detect lot transitions, send what is due)."""

from __future__ import annotations

from datetime import timedelta

import httpx
from celery import shared_task

from core.celery_app import run_in_worker
from core.context import AppContext
from geo import webhooks
from geo.feed_snapshot import build_snapshot

WEBHOOKS_TASK = "geo.partner_webhooks"
WEBHOOKS_EVERY_SECONDS = 10.0


async def webhooks_job(ctx: AppContext) -> dict[str, int]:
    """One tick on the context's clock: a fresh snapshot, transitions recorded and enqueued, due deliveries sent."""
    now = ctx.clock.now()
    pool = await ctx.pg()
    snap = await build_snapshot(pool, now=now, previous=None,
                                stale_after=timedelta(seconds=ctx.settings.open_data_stale_after_seconds),
                                max_age=timedelta(seconds=ctx.settings.open_data_max_age_seconds))
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0), follow_redirects=False) as http:
        report = await webhooks.tick(pool, lots=snap.lots, http=http, now=now)
    return {"transitions": report.transitions, "enqueued": report.enqueued, "delivered": report.delivered,
            "retried": report.retried, "failed": report.failed}


@shared_task(name=WEBHOOKS_TASK, ignore_result=True)
def partner_webhooks() -> dict[str, int]:
    """Signed webhooks to partners when a lot turns full, nearly full, closes or reopens."""
    return run_in_worker(webhooks_job)
