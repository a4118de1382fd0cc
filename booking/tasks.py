"""Celery tasks of the booking engine: thin wrappers that run the domain sweepers on the worker's context."""

from __future__ import annotations

import uuid
from datetime import timedelta

from celery import shared_task

from booking import reconcile as rc
from booking import sweepers
from booking.runtime import breaker, slot_store
from booking.wiring import booking_deps
from core.celery_app import run_in_worker
from core.context import AppContext


@shared_task(name="booking.expire_holds", ignore_result=True)
def expire_holds_task() -> int:
    async def job(ctx: AppContext) -> int:
        return await sweepers.expire_holds(deps=booking_deps(ctx), now=ctx.clock.now())

    return run_in_worker(job)


@shared_task(name="booking.mark_no_shows", ignore_result=True)
def mark_no_shows_task() -> int:
    async def job(ctx: AppContext) -> int:
        return await sweepers.mark_no_shows(deps=booking_deps(ctx), now=ctx.clock.now())

    return run_in_worker(job)


@shared_task(name="booking.settle_payments", ignore_result=True)
def settle_payments_task() -> int:
    async def job(ctx: AppContext) -> int:
        return await sweepers.settle_payments(deps=booking_deps(ctx), now=ctx.clock.now())

    return run_in_worker(job)


@shared_task(name="booking.expire_idempotency_keys", ignore_result=True)
def expire_idempotency_keys_task() -> int:
    async def job(ctx: AppContext) -> int:
        s = ctx.settings  # a hold's key keeps its answer, plate included: never past the plates' retention
        ttl = min(timedelta(hours=s.idempotency_key_ttl_hours), timedelta(days=s.plate_retention_days))
        return await sweepers.expire_idempotency_keys(deps=booking_deps(ctx), now=ctx.clock.now(), ttl=ttl)

    return run_in_worker(job)


@shared_task(name="booking.release_early_departures", ignore_result=True)
def release_early_departures_task() -> int:
    async def job(ctx: AppContext) -> int:
        return await sweepers.release_early_departures(deps=booking_deps(ctx), now=ctx.clock.now())

    return run_in_worker(job)


@shared_task(name="booking.reconcile_if_reset", ignore_result=True)
def reconcile_if_reset_task() -> bool:
    """Cheap check every few seconds: rebuild everything if Redis restarted (epoch key gone)."""
    async def job(ctx: AppContext) -> bool:
        now = ctx.clock.now()
        report = await rc.reconcile_if_reset(engine=ctx.engine, slots=slot_store(ctx), now=now)
        # lots whose Redis writes this worker had to skip while Redis was away
        dirty = breaker(ctx).dirty_lots
        if report is None and dirty and breaker(ctx).available():
            lots = [lot for lot in list(dirty) if isinstance(lot, uuid.UUID)]
            await rc.reconcile(engine=ctx.engine, slots=slot_store(ctx), now=now, lot_ids=lots)
            dirty.difference_update(lots)
        return report is not None

    return run_in_worker(job)


@shared_task(name="booking.reconcile_active", ignore_result=True)
def reconcile_active_task() -> dict[str, object]:
    """Periodic drift repair of every lot with upcoming occupancy."""
    async def job(ctx: AppContext) -> dict[str, object]:
        now = ctx.clock.now()
        lots = await rc.active_lot_ids(ctx.engine, now=now)
        report = await rc.reconcile(engine=ctx.engine, slots=slot_store(ctx), now=now, lot_ids=lots)
        return report.as_json()

    return run_in_worker(job)


@shared_task(name="passes.renew_due", ignore_result=True)
def renew_passes_task() -> dict[str, int]:
    """Charge the month that has begun for every active pass subscription (declined: lapsed with a notice)."""
    from booking.pass_subscriptions import renew_due

    async def job(ctx: AppContext) -> dict[str, int]:
        return await renew_due(deps=booking_deps(ctx), now=ctx.clock.now())

    return run_in_worker(job)
