"""Celery tasks of analytics: the occupancy history refresh and retention, forecast training and refresh."""

from __future__ import annotations

from datetime import datetime

from celery import shared_task

from analytics import history
from core.celery_app import run_in_worker
from core.clock import ensure_utc
from core.context import AppContext

HISTORY_REFRESH_TASK = "analytics.history_refresh"
HISTORY_PRUNE_TASK = "analytics.history_prune"


def _when(now: str | None) -> datetime | None:
    return ensure_utc(datetime.fromisoformat(now), field="now") if now else None


async def history_refresh_job(ctx: AppContext, *, now: datetime | None = None) -> dict[str, object]:
    run = await history.refresh_recent(engine=ctx.engine, now=now or ctx.clock.now())
    return run.as_json()


async def history_prune_job(ctx: AppContext, *, now: datetime | None = None) -> dict[str, int]:
    return (await history.prune(engine=ctx.engine, now=now or ctx.clock.now())).as_json()


@shared_task(name=HISTORY_REFRESH_TASK, ignore_result=True)
def history_refresh(now: str | None = None) -> dict[str, object]:
    """Recompute the last two hours of 15-minute occupancy rows and their hourly rollups."""
    when = _when(now)
    return run_in_worker(lambda ctx: history_refresh_job(ctx, now=when))


@shared_task(name=HISTORY_PRUNE_TASK, ignore_result=True)
def history_prune(now: str | None = None) -> dict[str, int]:
    """Retention: raw sensor events 7 days, 15-minute rows 90 days."""
    when = _when(now)
    return run_in_worker(lambda ctx: history_prune_job(ctx, now=when))


FORECAST_TRAIN_TASK = "analytics.forecast_train"
FORECAST_REFRESH_TASK = "analytics.forecast_refresh"


async def forecast_train_job(ctx: AppContext, *, now: datetime | None = None) -> dict[str, object]:
    from analytics.forecast import train

    return (await train(engine=ctx.engine, now=now or ctx.clock.now())).as_json()


async def forecast_refresh_job(ctx: AppContext, *, now: datetime | None = None) -> dict[str, object]:
    """The 15-minute refresh: the history's newest buckets first, then every lot's forecast from them."""
    from analytics.forecast import REFRESH_STEPS, refresh

    when = now or ctx.clock.now()
    await history.refresh_recent(engine=ctx.engine, now=when)
    return {"forecasts": await refresh(engine=ctx.engine, now=when, steps=REFRESH_STEPS)}


@shared_task(name=FORECAST_TRAIN_TASK, ignore_result=True)
def forecast_train(now: str | None = None) -> dict[str, object]:
    """Nightly: fit the global model on the stored history and write fresh forecasts."""
    when = _when(now)
    return run_in_worker(lambda ctx: forecast_train_job(ctx, now=when))


@shared_task(name=FORECAST_REFRESH_TASK, ignore_result=True)
def forecast_refresh(now: str | None = None) -> dict[str, object]:
    """Every 15 minutes: forecast every lot's next 2 days from its latest observations with the stored model."""
    when = _when(now)
    return run_in_worker(lambda ctx: forecast_refresh_job(ctx, now=when))
