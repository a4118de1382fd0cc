"""Celery tasks of planner exports: run one export, and the periodic purge of files past retention."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from celery import Celery, shared_task

from analytics.exports.jobs import purge_expired_exports, run_export_job
from core.celery_app import create_celery, run_in_worker
from core.context import AppContext
from core.errors import ServiceUnavailable

RUN_EXPORT_TASK = "analytics.exports.run"
PURGE_EXPORTS_TASK = "analytics.exports.purge"
# the broker is asked a few times, briefly, before the request is answered 503
_SEND_RETRY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.3, "interval_max": 1.0}


@shared_task(name=RUN_EXPORT_TASK, ignore_result=True)
def run_export_task(export_id: str) -> str:
    """Write one export's file (a duplicated or redelivered task of a finished export does nothing)."""
    async def job(ctx: AppContext) -> str:
        return await run_export_job(engine=ctx.engine, settings=ctx.settings, clock=ctx.clock,
                                    export_id=uuid.UUID(export_id))

    return run_in_worker(job)


@shared_task(name=PURGE_EXPORTS_TASK, ignore_result=True)
def purge_exports_task() -> int:
    """Delete export files past PARKGRID_EXPORT_RETENTION_HOURS."""
    async def job(ctx: AppContext) -> int:
        return await purge_expired_exports(engine=ctx.engine, now=ctx.clock.now())

    return run_in_worker(job)


def _celery(ctx: AppContext) -> Celery:
    return ctx.shared("exports_celery", lambda: create_celery(ctx.settings))


async def enqueue_export(ctx: AppContext, export_id: uuid.UUID) -> None:
    """Send the export to the workers on the configured broker (503 if the broker does not take it)."""
    app = _celery(ctx)

    def send() -> Any:
        return app.send_task(RUN_EXPORT_TASK, args=[str(export_id)], queue=ctx.settings.celery_queue,
                             retry=True, retry_policy=_SEND_RETRY)

    try:
        await asyncio.to_thread(send)
    except Exception as exc:  # kombu raises several transport errors; all mean "not queued"
        raise ServiceUnavailable("the task broker is unavailable; the export was not started") from exc
