"""What display boards show: free spaces per level and spot type, each number with its source and age.

Unknown is not a number (docs/design.md invariant 8): an unknown or uncovered bay is never counted free,
and a group whose data is too old, or whose bays are all unknown, reports `free: null, stale: true`.
Groups without sensors fall back to the booking view (in-service spots minus active reservations).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from controllers import sensor_queries as q
from controllers.occupancy import GroupCount, OccupancyCounters
from core.errors import NotFound
from core.vocabulary import widen_to_slots
from geo.availability import available_by_level

STALE_AFTER = timedelta(minutes=10)  # the default sensor heartbeat


@dataclass(frozen=True)
class DisplayGroup:
    spot_type: str
    capacity: int
    free: int | None
    occupied: int | None
    unknown: int
    stale: bool
    source: str
    as_of: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"spot_type": self.spot_type, "capacity": self.capacity, "free": self.free, "occupied": self.occupied,
                "unknown": self.unknown, "stale": self.stale,
                "freshness": {"source": self.source, "as_of": self.as_of}}


def sensor_group(g: GroupCount, *, now: datetime, stale_after: timedelta = STALE_AFTER) -> DisplayGroup:
    """One group as seen by its sensors; unknown and uncovered bays are never free."""
    unknown = g.unknown + (g.capacity - g.sensors)
    too_old = g.as_of is None or now - g.as_of > stale_after
    known = g.sensors - g.unknown
    if too_old or known <= 0:
        return DisplayGroup(g.spot_type, g.capacity, None, None, g.capacity, True, "sensor", g.as_of)
    free = max(0, min(g.capacity, known - g.occupied))
    return DisplayGroup(g.spot_type, g.capacity, free, g.occupied, unknown, False, "sensor", g.as_of)


async def lot_displays(*, engine: AsyncEngine, counters: OccupancyCounters, lot_id: uuid.UUID, now: datetime,
                       stale_after: timedelta = STALE_AFTER) -> dict[str, Any]:
    """Free spaces per level and type for one lot's display boards."""
    async with engine.connect() as conn:
        if (await conn.execute(q.LOT_EXISTS, {"lot_id": lot_id})).first() is None:
            raise NotFound(f"lot {lot_id} not found")
        levels = (await conn.execute(q.LEVELS, {"lot_id": lot_id})).all()
        start, end = widen_to_slots(now, now + timedelta(minutes=1))
        booked = {(str(c.level_id), c.spot_type): c
                  for c in await available_by_level(conn, lot_id=lot_id, starts_at=start, ends_at=end)}
    live = {(g.level_id, g.spot_type): g for g in await counters.read(lot_id=lot_id)}
    out_levels = []
    for level in levels:
        groups = []
        for key in sorted({k for k in live if k[0] == str(level.id)} | {k for k in booked if k[0] == str(level.id)},
                          key=lambda k: k[1]):
            g = live.get(key)
            if g is not None and g.sensors > 0:
                groups.append(sensor_group(g, now=now, stale_after=stale_after))
            elif key in booked:
                b = booked[key]
                groups.append(DisplayGroup(key[1], b.capacity, b.available, b.capacity - b.available, 0, False,
                                           "database", now))
        free = [x.free for x in groups]
        out_levels.append({"level_id": level.id, "name": level.name,
                           "free": None if any(f is None for f in free) else sum(f for f in free if f is not None),
                           "stale": any(x.stale for x in groups),
                           "types": [x.as_dict() for x in groups]})
    return {"lot_id": lot_id, "as_of": now, "levels": out_levels}
