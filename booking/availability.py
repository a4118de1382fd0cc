"""How many compatible spots are free for a whole window: a count, never which spots."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from booking import queries as q
from booking.deps import BookingDeps
from booking.repair import load_missing_lot, rebuild_if_dirty
from booking.runtime import REDIS_DOWN
from booking.slots import compatible_types
from booking.slotstore import SlotStateMissing
from core.errors import NotFound
from core.vocabulary import Window


@dataclass(frozen=True)
class FreeCount:
    available: int
    source: str  # "bitmap" (Redis) or "database" (PostgreSQL fallback)
    as_of: datetime


async def free_count(*, deps: BookingDeps, lot_id: uuid.UUID, vehicle_type: str, window: Window,
                     now: datetime) -> FreeCount:
    """Exact free count from the Redis bitmaps, or from PostgreSQL when Redis can't answer."""
    types = compatible_types(vehicle_type)
    if deps.slots is not None and deps.breaker.available():
        try:
            await rebuild_if_dirty(deps, lot_id, now)
            for _ in range(2):
                try:
                    n = await deps.slots.free_count(lot_id=str(lot_id), vehicle_type=vehicle_type,
                                                    starts_at=window.slot_start, ends_at=window.slot_end)
                    return FreeCount(n, "bitmap", now)
                except SlotStateMissing:
                    await load_missing_lot(deps, lot_id, now)
        except REDIS_DOWN as exc:
            deps.breaker.trip(exc)
    async with deps.engine.connect() as conn:
        lot = (await conn.execute(q.LOT_FOR_BOOKING, {"lot_id": lot_id})).first()
        if lot is None:
            raise NotFound(f"lot {lot_id} not found")
        types = compatible_types(vehicle_type, ev_overflow=lot.ev_overflow)
        n = await conn.scalar(q.FREE_COUNT_SQL, {"lot_id": lot_id, "types": list(types),
                                                 "slot_start": window.slot_start, "slot_end": window.slot_end})
    return FreeCount(int(n or 0), "database", now)
