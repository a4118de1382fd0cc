"""Availability counts for a window: in-service compatible spots minus spots held by active reservations.

This PostgreSQL implementation is the fallback the booking engine's Redis counters replace; callers
depend only on `available_counts` / `available_by_level` (or search's `AvailabilityCache`) and report
`SOURCE` as the freshness source.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, Protocol, cast

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from core.context import AppContext
from geo import queries

SOURCE = "database"
SLOT = timedelta(minutes=15)
SIZES = ("motorcycle", "compact", "regular", "large")
ALL_SPOT_TYPES = ("motorcycle", "compact", "regular", "large", "ev", "handicap")


def compatible_spot_types(vehicle_type: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(always usable spot types, usable only where the lot has ev_overflow) for a vehicle type.

    A smaller vehicle fits a larger spot (motorcycle < compact < regular < large); EVs (regular size)
    also use ev spots; a handicap permit holder (regular size) also uses handicap spots; ev spots take
    other regular-or-smaller vehicles only when the lot allows ev overflow. None means any spot.
    """
    if vehicle_type is None:
        return ALL_SPOT_TYPES, ()
    if vehicle_type == "ev":
        return ("regular", "large", "ev"), ()
    if vehicle_type == "handicap":
        return ("regular", "large", "handicap"), ("ev",)
    if vehicle_type not in SIZES:
        raise ValueError(f"unknown vehicle type {vehicle_type!r}")
    base = SIZES[SIZES.index(vehicle_type):]
    return base, (("ev",) if vehicle_type != "large" else ())


def usable_mask(vehicle_type: str | None) -> tuple[list[int], int]:
    """(1/0 per spot type in ALL_SPOT_TYPES order, 1 if ev spots count where the lot allows overflow)."""
    base, overflow = compatible_spot_types(vehicle_type)
    return [1 if t in base else 0 for t in ALL_SPOT_TYPES], 1 if "ev" in overflow else 0


def widen_to_slots(starts_at: datetime, ends_at: datetime) -> tuple[datetime, datetime]:
    """The window widened to whole 15-minute UTC slots: start floored, end ceiled."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    start = starts_at.astimezone(UTC)
    end = ends_at.astimezone(UTC)
    floored = epoch + SLOT * ((start - epoch) // SLOT)
    ceiled = epoch + SLOT * -((epoch - end) // SLOT)
    return floored, ceiled


class CountsFn(Protocol):
    def __call__(self, conn: AsyncConnection, *, lot_ids: Sequence[uuid.UUID], vehicle_type: str | None,
                 starts_at: datetime, ends_at: datetime) -> Awaitable[dict[uuid.UUID, int]]: ...


async def fetch_counts(pg: asyncpg.Connection | asyncpg.Pool, *, lot_ids: Sequence[uuid.UUID],
                       vehicle_type: str | None, starts_at: datetime, ends_at: datetime) -> dict[uuid.UUID, int]:
    """Free compatible spots per lot for [starts_at, ends_at): a count in [0, capacity], never which spots."""
    if not lot_ids:
        return {}
    base, overflow = compatible_spot_types(vehicle_type)
    rows = await pg.fetch(queries.AVAILABLE_COUNTS, list(lot_ids), list(base), list(overflow), starts_at, ends_at)
    counts = {row["lot_id"]: int(row["available"]) for row in rows}
    return {lot_id: counts.get(lot_id, 0) for lot_id in lot_ids}


async def available_counts(conn: AsyncConnection, *, lot_ids: Sequence[uuid.UUID], vehicle_type: str | None,
                           starts_at: datetime, ends_at: datetime) -> dict[uuid.UUID, int]:
    """`fetch_counts` on a SQLAlchemy connection (its asyncpg driver connection, same transaction)."""
    raw = await conn.get_raw_connection()
    return await fetch_counts(raw.driver_connection, lot_ids=lot_ids, vehicle_type=vehicle_type,  # type: ignore[arg-type]
                              starts_at=starts_at, ends_at=ends_at)


class Counted(NamedTuple):
    available: int
    source: str
    as_of: datetime  # when it was counted


class AvailabilityCache:
    """Counts of a worker's recent searches, reused for up to `ttl` of the injected clock.

    A page's misses are counted in one statement. Each count keeps the time it was taken, which search
    reports as `freshness.as_of`: a cached count is never presented as newer than it is.
    """

    def __init__(self, *, ttl: timedelta, size: int = 100_000) -> None:
        self.ttl, self.size = ttl, size
        self._items: OrderedDict[tuple[uuid.UUID, str | None, datetime, datetime], Counted] = OrderedDict()

    async def counts(self, pg: asyncpg.Pool, *, lot_ids: Sequence[uuid.UUID], vehicle_type: str | None,
                     starts_at: datetime, ends_at: datetime, now: datetime) -> dict[uuid.UUID, Counted]:
        out, missing = {}, []
        for lot_id in lot_ids:
            hit = self._items.get((lot_id, vehicle_type, starts_at, ends_at))
            if hit is not None and now - hit.as_of < self.ttl:
                out[lot_id] = hit
            else:
                missing.append(lot_id)
        if missing:
            fresh = await fetch_counts(pg, lot_ids=missing, vehicle_type=vehicle_type, starts_at=starts_at,
                                       ends_at=ends_at)
            for lot_id, n in fresh.items():
                out[lot_id] = counted = Counted(n, SOURCE, now)
                key = (lot_id, vehicle_type, starts_at, ends_at)
                self._items[key] = counted
                self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return out


@dataclass(frozen=True)
class LevelTypeCount:
    level_id: uuid.UUID
    spot_type: str
    capacity: int  # in-service spots of this type on this level
    available: int


async def available_by_level(conn: AsyncConnection, *, lot_id: uuid.UUID, starts_at: datetime,
                             ends_at: datetime) -> list[LevelTypeCount]:
    """Per level and spot type of one lot: in-service spots and how many are free for the window."""
    rows = await conn.execute(queries.AVAILABLE_BY_LEVEL, {"lot_id": lot_id, "starts_at": starts_at,
                                                           "ends_at": ends_at})
    return [LevelTypeCount(level_id=r.level_id, spot_type=r.spot_type, capacity=int(r.in_service),
                           available=int(r.available)) for r in rows]


def availability_cache(ctx: AppContext) -> AvailabilityCache:
    """The process's search availability cache (one per context)."""
    cache = ctx.extras.get("availability_cache")
    if cache is None:
        cache = AvailabilityCache(ttl=timedelta(milliseconds=ctx.settings.search_count_ttl_ms))
        ctx.extras["availability_cache"] = cache
    return cast(AvailabilityCache, cache)
