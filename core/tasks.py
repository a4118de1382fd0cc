"""Celery tasks owned by core: the daily plate retention purge."""

from __future__ import annotations

from datetime import datetime

from celery import shared_task

from core.celery_app import run_in_worker
from core.clock import ensure_utc
from core.context import AppContext
from core.privacy import purge_expired_plates

PURGE_PLATES_TASK = "parkgrid.privacy.purge_plates"


async def purge_plates_job(ctx: AppContext, *, now: datetime | None = None) -> dict[str, object]:
    """Run the purge with the context's clock (or an explicit `now`) and retention setting."""
    result = await purge_expired_plates(engine=ctx.engine, now=now or ctx.clock.now(),
                                        retention_days=ctx.settings.plate_retention_days)
    return {"cutoff": result.cutoff.isoformat(), "sessions": result.sessions, "reservations": result.reservations}


@shared_task(name=PURGE_PLATES_TASK)
def purge_plates(now: str | None = None) -> dict[str, object]:
    """Null plates of sessions and reservations finished more than PARKGRID_PLATE_RETENTION_DAYS ago."""
    when = ensure_utc(datetime.fromisoformat(now), field="now") if now else None
    return run_in_worker(lambda ctx: purge_plates_job(ctx, now=when))
