"""Celery tasks for sensors: staleness sweep, occupancy snapshots, pruning of old event ids."""

from __future__ import annotations

from celery import shared_task

from controllers.occupancy import counters_for
from controllers.sensors import mark_stale_sensors, prune_event_ids
from controllers.snapshots import snapshot_all
from core.celery_app import run_in_worker
from core.context import AppContext


@shared_task(name="controllers.mark_stale_sensors", ignore_result=True)
def mark_stale_sensors_task() -> int:
    async def job(ctx: AppContext) -> int:
        return await mark_stale_sensors(pg=await ctx.pg(), counters=counters_for(ctx), now=ctx.clock.now())

    return run_in_worker(job)


@shared_task(name="controllers.occupancy_snapshots", ignore_result=True)
def occupancy_snapshots_task() -> int:
    async def job(ctx: AppContext) -> int:
        return await snapshot_all(engine=ctx.engine, counters=counters_for(ctx), now=ctx.clock.now())

    return run_in_worker(job)


@shared_task(name="controllers.prune_sensor_event_ids", ignore_result=True)
def prune_sensor_event_ids_task() -> int:
    async def job(ctx: AppContext) -> int:
        return await prune_event_ids(engine=ctx.engine, now=ctx.clock.now())

    return run_in_worker(job)
