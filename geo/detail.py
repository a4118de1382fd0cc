"""Lot detail for drivers: the lot, its levels, and availability by level and spot type for a window."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import ValidationFailed
from geo.availability import SOURCE, LevelTypeCount, available_by_level
from geo.lots import get_lot
from geo.schemas import Lot
from geo.window import Window

ByLevelFn = Callable[..., Awaitable[list[LevelTypeCount]]]


@dataclass(frozen=True)
class LotAvailability:
    lot: Lot
    window: Window
    by_level: dict[uuid.UUID, dict[str, tuple[int, int]]]  # level -> spot type -> (in service, available)
    source: str
    as_of: datetime

    def by_type(self) -> dict[str, tuple[int, int]]:
        totals: dict[str, tuple[int, int]] = {}
        for per_type in self.by_level.values():
            for spot_type, (cap, free) in per_type.items():
                c, f = totals.get(spot_type, (0, 0))
                totals[spot_type] = (c + cap, f + free)
        return dict(sorted(totals.items()))


async def lot_with_availability(conn: AsyncConnection, *, lot_id: uuid.UUID, window: Window, now: datetime,
                                by_level: ByLevelFn = available_by_level, source: str = SOURCE) -> LotAvailability:
    """The lot and its free spots per level and type; a window beyond the lot's horizon is 422 on ends_at."""
    lot = await get_lot(conn, lot_id=lot_id)
    if window.horizon_days > lot.booking_horizon_days:
        raise ValidationFailed(f"this lot takes bookings up to {lot.booking_horizon_days} days ahead",
                               loc=("query", "ends_at"))
    counts = await by_level(conn, lot_id=lot_id, starts_at=window.slot_start, ends_at=window.slot_end)
    levels: dict[uuid.UUID, dict[str, tuple[int, int]]] = {level.id: {} for level in lot.levels}
    for c in counts:
        levels.setdefault(c.level_id, {})[c.spot_type] = (c.capacity, c.available)
    return LotAvailability(lot=lot, window=window, by_level=levels, source=source, as_of=now)
