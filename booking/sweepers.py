"""Sweepers: idempotent SQL transitions, safe to run twice at once; Redis is freed afterwards."""

from __future__ import annotations

from datetime import datetime, timedelta

from booking import queries as q
from booking.deps import BookingDeps
from booking.repair import release_slots
from booking.settlement import settle_due_payments, settle_quietly
from core.logging import get_logger

log = get_logger("parkgrid.sweepers")


async def expire_holds(*, deps: BookingDeps, now: datetime) -> int:
    """held -> expired once hold_expires_at has passed; frees their slots. Returns how many."""
    async with deps.engine.begin() as conn:
        rows = list(await conn.execute(q.EXPIRE_HOLDS, {"now": now}))
    for row in rows:  # only the sweeper whose UPDATE won a row frees it: no double free
        await release_slots(deps, row.lot_id, row.id)
        await settle_quietly(deps=deps, reservation_id=row.id, now=now)  # cancels the unused intent
    if rows:
        log.info("holds_expired", count=len(rows))
    return len(rows)


async def mark_no_shows(*, deps: BookingDeps, now: datetime) -> int:
    """confirmed -> no_show when nobody entered within the lot's grace after the start."""
    async with deps.engine.begin() as conn:
        rows = list(await conn.execute(q.MARK_NO_SHOWS, {"now": now}))
    for row in rows:
        await release_slots(deps, row.lot_id, row.id)
        await settle_quietly(deps=deps, reservation_id=row.id, now=now)  # captures the no-show fee, releases the rest
    if rows:
        log.info("no_shows_marked", count=len(rows))
    return len(rows)


async def release_early_departures(*, deps: BookingDeps, now: datetime, lookback: timedelta = timedelta(hours=6)) -> int:
    """Free the slots after the exit of reservations that left early (the gate path does it first;
    this catches any the gate could not, e.g. while Redis was down). Idempotent."""
    async with deps.engine.connect() as conn:
        rows = list(await conn.execute(q.EARLY_DEPARTURES, {"since": now - lookback}))
    freed = 0
    for row in rows:
        freed += await release_slots(deps, row.lot_id, row.id, from_=row.exited_at)
    return freed


async def settle_payments(*, deps: BookingDeps, now: datetime) -> int:
    """Bring every payment in line with its reservation's status (captures, fees, voids); see booking.settlement."""
    return await settle_due_payments(deps=deps, now=now)


async def expire_idempotency_keys(*, deps: BookingDeps, now: datetime, ttl: timedelta = timedelta(hours=24),
                                  batch: int = 10_000) -> int:
    """Drop Idempotency-Keys created more than `ttl` ago (answered or not): the client may use them again.
    Deletes in batches of `batch`, each its own transaction. Returns how many."""
    total = 0
    while True:
        async with deps.engine.begin() as conn:
            gone = (await conn.execute(q.EXPIRE_IDEMPOTENCY_KEYS, {"before": now - ttl, "batch": batch})).rowcount
        total += gone
        if gone < batch:
            break
    if total:
        log.info("idempotency_keys_expired", count=total)
    return total
