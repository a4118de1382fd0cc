"""Celery tasks of the lot controllers: thin wrappers that run the domain sweepers on the worker's context."""

from __future__ import annotations

from celery import shared_task

from booking.wiring import booking_deps
from controllers import walkins
from core.celery_app import run_in_worker
from core.context import AppContext


@shared_task(name="controllers.extend_walk_ins", ignore_result=True)
def extend_walk_ins_task() -> dict[str, int]:
    """Extend walk-ins about to run out of booked occupancy; flag those that cannot be (overstay risk)."""
    async def job(ctx: AppContext) -> dict[str, int]:
        report = await walkins.extend_walk_ins(deps=booking_deps(ctx), now=ctx.clock.now())
        return {"extended": report.extended, "at_risk": report.at_risk}

    return run_in_worker(job)
