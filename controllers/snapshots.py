"""Occupancy snapshots to PostgreSQL every 5 minutes, for history and forecasts.

Taken from PostgreSQL's sensor states (the truth the Redis counters derive from); `taken_at` is
floored to the 5-minute mark so two beats (or two workers) in the same window write one row.
Unknown bays are not counted occupied; they are reported per level in `by_level`.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from controllers import sensor_queries as q
from controllers.occupancy import OccupancyCounters, counts_from_db

PERIOD = timedelta(minutes=5)


def floor_period(now: datetime) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + PERIOD * ((now.astimezone(UTC) - epoch) // PERIOD)


async def snapshot_lot(*, engine: AsyncEngine, lot_id: uuid.UUID, now: datetime) -> int:
    """One row per spot type for the lot at the current 5-minute mark; returns rows written."""
    groups = await counts_from_db(engine, lot_id=lot_id)
    by_type: dict[str, dict[str, Any]] = defaultdict(lambda: {"occupied": 0, "capacity": 0, "by_level": {}})
    for g in groups:
        if g.sensors == 0:
            continue
        t = by_type[g.spot_type]
        t["occupied"] += g.occupied
        t["capacity"] += g.capacity
        t["by_level"][g.level_id] = {"occupied": g.occupied, "unknown": g.unknown + g.capacity - g.sensors,
                                     "capacity": g.capacity}
    taken_at = floor_period(now)
    written = 0
    async with engine.begin() as conn:
        for spot_type, t in sorted(by_type.items()):
            res = await conn.execute(q.INSERT_SNAPSHOT, {
                "lot_id": lot_id, "taken_at": taken_at, "spot_type": spot_type, "occupied": min(t["occupied"], t["capacity"]),
                "capacity": t["capacity"], "source": "sensor", "by_level": json.dumps(t["by_level"])})
            written += int(res.rowcount or 0)  # type: ignore[attr-defined]
    return written


async def snapshot_all(*, engine: AsyncEngine, counters: OccupancyCounters | None, now: datetime) -> int:
    """Snapshot every lot with sensors, and rebuild its live counters from PostgreSQL (drift repair)."""
    async with engine.connect() as conn:
        lot_ids = list((await conn.execute(q.LOTS_WITH_SENSORS)).scalars())
    total = 0
    for lot_id in lot_ids:
        total += await snapshot_lot(engine=engine, lot_id=lot_id, now=now)
        if counters is not None:
            with contextlib.suppress(OSError):
                await counters.rebuild(lot_id=lot_id)
    return total
