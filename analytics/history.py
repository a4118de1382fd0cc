"""Occupancy history: 15-minute rows and hourly rollups derived from sessions and sensors, idempotently."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from analytics import queries as q
from core.clock import ensure_utc
from core.errors import ValidationFailed

BUCKET = timedelta(minutes=15)
#: the periodic refresh recomputes this much before now: late gate and sensor events land in closed buckets
REFRESH_LOOKBACK = timedelta(hours=2)
#: retention (issue 17): raw sensor events 7 days, 15-minute rows 90 days, hourly rows kept
SENSOR_EVENTS_KEEP = timedelta(days=7)
FIFTEEN_MINUTE_KEEP = timedelta(days=90)
#: a backfill writes one transaction per chunk
BACKFILL_CHUNK = timedelta(days=1)


def floor_bucket(value: datetime) -> datetime:
    """The start of the 15-minute bucket holding `value` (UTC)."""
    value = ensure_utc(value)
    epoch = int(value.timestamp())
    return datetime.fromtimestamp(epoch - epoch % 900, tz=UTC)


@dataclass(frozen=True)
class HistoryRun:
    t0: datetime
    t1: datetime
    rows_15m: int
    rows_hourly: int

    def as_json(self) -> dict[str, object]:
        return {"from": self.t0.isoformat(), "to": self.t1.isoformat(), "rows_15m": self.rows_15m,
                "rows_hourly": self.rows_hourly}


async def compute(*, engine: AsyncEngine, t0: datetime, t1: datetime, now: datetime,
                  lot_ids: Sequence[uuid.UUID] | None = None) -> HistoryRun:
    """(Re)write the 15-minute rows of the buckets in [t0, t1) and their hours' rollups; only closed buckets
    (ending at or before `now`) are written. Running it twice writes the same rows."""
    t0, t1 = floor_bucket(t0), floor_bucket(min(ensure_utc(t1), ensure_utc(now)))
    if t1 <= t0:
        return HistoryRun(t0, t0, 0, 0)
    params = {"t0": t0, "t1": t1, "now": now, "lots": list(lot_ids) if lot_ids is not None else None}
    async with engine.begin() as conn:
        rows = (await conn.execute(q.UPSERT_15M, params)).rowcount
        hourly = (await conn.execute(q.UPSERT_HOURLY, params)).rowcount
    return HistoryRun(t0, t1, rows, hourly)


async def refresh_recent(*, engine: AsyncEngine, now: datetime, lookback: timedelta = REFRESH_LOOKBACK) -> HistoryRun:
    """The periodic run: recompute the last `lookback` of closed buckets."""
    return await compute(engine=engine, t0=now - lookback, t1=now, now=now)


async def backfill(*, engine: AsyncEngine, t0: datetime, t1: datetime, now: datetime,
                   lot_ids: Sequence[uuid.UUID] | None = None,
                   progress: Callable[[HistoryRun], None] | None = None) -> HistoryRun:
    """Recompute [t0, t1) one day per transaction (an interrupted backfill is simply run again)."""
    t0, t1 = ensure_utc(t0, field="from"), ensure_utc(t1, field="to")
    if t1 <= t0:
        raise ValidationFailed("--to must be after --from", loc=("query", "to"))
    total_15m = total_hourly = 0
    start = floor_bucket(t0)
    while start < t1:
        end = min(start + BACKFILL_CHUNK, t1)
        run = await compute(engine=engine, t0=start, t1=end, now=now, lot_ids=lot_ids)
        total_15m += run.rows_15m
        total_hourly += run.rows_hourly
        if progress:
            progress(run)
        start = end
    return HistoryRun(floor_bucket(t0), max(floor_bucket(t0), floor_bucket(min(t1, now))), total_15m, total_hourly)


@dataclass(frozen=True)
class Pruned:
    sensor_events: int
    rows_15m: int

    def as_json(self) -> dict[str, int]:
        return {"sensor_events": self.sensor_events, "rows_15m": self.rows_15m}


async def prune(*, engine: AsyncEngine, now: datetime) -> Pruned:
    """Retention: raw sensor events older than 7 days, 15-minute rows older than 90 days (hourly rows stay)."""
    async with engine.begin() as conn:
        events = (await conn.execute(q.PRUNE_SENSOR_EVENTS, {"cutoff": now - SENSOR_EVENTS_KEEP})).rowcount
        rows = (await conn.execute(q.PRUNE_15M, {"cutoff": now - FIFTEEN_MINUTE_KEEP})).rowcount
    return Pruned(events, rows)
