"""Keeping Redis's slot bits true to PostgreSQL around bookings: load a lot Redis lacks, rebuild one this process
booked without Redis, repair one spot after a booking Redis did not make, free a reservation's bits."""

from __future__ import annotations

import uuid
from datetime import datetime

from booking import queries as q
from booking.deps import BookingDeps
from booking.reconcile import rebuild_lot, repair_spot
from booking.runtime import REDIS_DOWN
from booking.slotstore import SlotStateMissing
from core.vocabulary import Window


async def load_missing_lot(deps: BookingDeps, lot_id: uuid.UUID, now: datetime) -> None:
    """Rebuild a lot Redis does not know, once per process however many requests noticed it."""
    assert deps.slots is not None
    async with deps.breaker.rebuild_lock(lot_id):
        if not await deps.slots.redis.exists(deps.slots.keys.meta(str(lot_id))):
            await rebuild_lot(engine=deps.engine, slots=deps.slots, lot_id=lot_id, now=now)


async def repair_spot_or_mark(deps: BookingDeps, lot_id: uuid.UUID, spot_idx: int, window: Window, *,
                              drop_hold: uuid.UUID | None = None) -> None:
    """Make one spot's bits what PostgreSQL says (after a booking Redis did not make, or changed bits);
    when Redis cannot be used now, mark the whole lot for a rebuild before Redis is trusted for it again.
    `drop_hold` removes a hold record whose ranges no longer describe the bits."""
    if deps.slots is not None and deps.use_redis and deps.breaker.available():
        try:
            if drop_hold is not None:
                await deps.slots.redis.delete(deps.slots.keys.hold(str(lot_id), str(drop_hold)))
            await repair_spot(engine=deps.engine, slots=deps.slots, lot_id=lot_id, spot_idx=spot_idx, window=window)
            return
        except SlotStateMissing:
            return  # the lot is not loaded: its next use rebuilds it whole from PostgreSQL
        except REDIS_DOWN as exc:
            deps.breaker.trip(exc)
    deps.breaker.dirty_lots.add(lot_id)


async def rebuild_if_dirty(deps: BookingDeps, lot_id: uuid.UUID, now: datetime) -> None:
    """Before trusting Redis for a lot this process booked without it, rebuild that lot from PostgreSQL."""
    if deps.slots is not None and lot_id in deps.breaker.dirty_lots:
        async with deps.breaker.rebuild_lock(lot_id):
            if lot_id in deps.breaker.dirty_lots:
                await rebuild_lot(engine=deps.engine, slots=deps.slots, lot_id=lot_id, now=now)
                deps.breaker.dirty_lots.discard(lot_id)


async def release_slots(deps: BookingDeps, lot_id: uuid.UUID, reservation_id: uuid.UUID,
                        from_: datetime | None = None) -> bool:
    """Free a reservation's bits in Redis (idempotent). Redis trouble is left to the reconciler.

    A reservation booked on the PostgreSQL-only path, or whose bits came from a rebuild, has no
    hold record to release by: its spot is repaired from PostgreSQL instead (the new status is
    already committed there, so the repair clears exactly its bits).
    """
    if deps.slots is None:
        return False
    if not deps.use_redis or not deps.breaker.available():
        deps.breaker.dirty_lots.add(lot_id)  # rebuilt before this process trusts Redis for the lot again
        return False
    try:
        if await deps.slots.release(lot_id=str(lot_id), hold_id=str(reservation_id), from_=from_):
            return True
        async with deps.engine.connect() as conn:
            row = (await conn.execute(q.RESERVATION_SLOTS, {"id": reservation_id})).first()
        if row is not None:
            window = Window(row.slot_start, row.slot_end, row.slot_start, row.slot_end)
            await repair_spot(engine=deps.engine, slots=deps.slots, lot_id=lot_id, spot_idx=row.idx, window=window)
        return False
    except SlotStateMissing:
        return False  # the lot is not loaded in Redis: its next use rebuilds it from PostgreSQL
    except REDIS_DOWN as exc:
        deps.breaker.trip(exc)
        deps.breaker.dirty_lots.add(lot_id)
        return False


async def resync_spot(deps: BookingDeps, lot_id: uuid.UUID, reservation_id: uuid.UUID, spot_idx: int,
                      old: Window, new: Window) -> None:
    """After a window change: repair the spot over the old and new windows, dropping the hold record."""
    start, end = min(old.slot_start, new.slot_start), max(old.slot_end, new.slot_end)
    await repair_spot_or_mark(deps, lot_id, spot_idx, Window(start, end, start, end), drop_hold=reservation_id)
