"""Availability counts for a window: in-service compatible spots minus spots held by active reservations.

This PostgreSQL implementation is the fallback the booking engine's Redis counters replace; callers
depend only on `available_counts` / `available_by_level` (or search's `AvailabilityCache`) and report
`SOURCE` as the freshness source.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol, cast

import asyncpg
from cachetools import TTLCache
from sqlalchemy.ext.asyncio import AsyncConnection

from core.clock import Clock
from core.context import AppContext
from core.ttlcache import ttl_cache
from core.vocabulary import SPOT_TYPES, usable_split
from geo import queries

SOURCE = "database"
SLOT = timedelta(minutes=15)
ALL_SPOT_TYPES = SPOT_TYPES


def usable_mask(vehicle_type: str | None) -> tuple[list[int], int]:
    """(1/0 per spot type in ALL_SPOT_TYPES order, 1 if ev spots count where the lot allows overflow)."""
    base, overflow = usable_split(vehicle_type)
    return [1 if t in base else 0 for t in ALL_SPOT_TYPES], 1 if "ev" in overflow else 0


class PageLot(Protocol):
    """What BusyCache.counts reads of a lot on a search page (geo.lotindex.Hit has it)."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def capacity(self) -> int: ...  # usable compatible spots

    @property
    def ev_overflow(self) -> bool: ...


class CountsFn(Protocol):
    def __call__(self, conn: AsyncConnection, *, lot_ids: Sequence[uuid.UUID], vehicle_type: str | None,
                 starts_at: datetime, ends_at: datetime) -> Awaitable[dict[uuid.UUID, int]]: ...


async def fetch_counts(pg: asyncpg.Connection | asyncpg.Pool, *, lot_ids: Sequence[uuid.UUID],
                       vehicle_type: str | None, starts_at: datetime, ends_at: datetime) -> dict[uuid.UUID, int]:
    """Free compatible spots per lot for [starts_at, ends_at): a count in [0, capacity], never which spots."""
    if not lot_ids:
        return {}
    base, overflow = usable_split(vehicle_type)
    rows = await pg.fetch(queries.AVAILABLE_COUNTS, list(lot_ids), list(base), list(overflow), starts_at, ends_at)
    counts = {row["lot_id"]: int(row["available"]) for row in rows}
    return {lot_id: counts.get(lot_id, 0) for lot_id in lot_ids}


async def available_counts(conn: AsyncConnection, *, lot_ids: Sequence[uuid.UUID], vehicle_type: str | None,
                           starts_at: datetime, ends_at: datetime) -> dict[uuid.UUID, int]:
    """`fetch_counts` on a SQLAlchemy connection (its asyncpg driver connection, same transaction)."""
    raw = await conn.get_raw_connection()
    return await fetch_counts(raw.driver_connection, lot_ids=lot_ids, vehicle_type=vehicle_type,  # type: ignore[arg-type]
                              starts_at=starts_at, ends_at=ends_at)


_new_tuple = tuple.__new__


class Counted(NamedTuple):
    available: int
    source: str
    as_of: datetime  # when it was counted


class AvailabilityCache:
    """Counts of a worker's recent searches, reused for up to `ttl` of the injected clock.

    A page's misses are counted in one statement. Each count keeps the time it was taken, which search
    reports as `freshness.as_of`: a cached count is never presented as newer than it is.
    """

    def __init__(self, *, ttl: timedelta, clock: Clock, size: int = 100_000) -> None:
        self.ttl, self.size = ttl, size
        self._items: TTLCache[tuple[uuid.UUID, str | None, datetime, datetime], Counted] = \
            ttl_cache(clock=clock, ttl=ttl, maxsize=size)

    async def counts(self, pg: asyncpg.Pool, *, lot_ids: Sequence[uuid.UUID], vehicle_type: str | None,
                     starts_at: datetime, ends_at: datetime, now: datetime) -> dict[uuid.UUID, Counted]:
        out, missing = {}, []
        for lot_id in lot_ids:
            hit = self._items.get((lot_id, vehicle_type, starts_at, ends_at))
            if hit is not None:
                out[lot_id] = hit
            else:
                missing.append(lot_id)
        if missing:
            fresh = await fetch_counts(pg, lot_ids=missing, vehicle_type=vehicle_type, starts_at=starts_at,
                                       ends_at=ends_at)
            for lot_id, n in fresh.items():
                out[lot_id] = counted = Counted(n, SOURCE, now)
                self._items[(lot_id, vehicle_type, starts_at, ends_at)] = counted
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


class BusyCache:
    """Busy spots per lot and type for recent windows, city-wide, each reused for up to `ttl`.

    Search from the lot index counts a page without a round trip: available = the lot's usable capacity
    (from the index) minus its busy compatible spots. One statement per window and `ttl` serves every page;
    its cost grows with the bookings overlapping the window, not with the searches.
    """

    def __init__(self, *, ttl: timedelta, windows: int = 64) -> None:
        self.ttl, self.windows = ttl, windows
        self._items: OrderedDict[tuple[datetime, datetime], tuple[datetime, dict[uuid.UUID, list[int]]]] = \
            OrderedDict()
        self._loading: dict[tuple[datetime, datetime], asyncio.Future[tuple[datetime, dict[uuid.UUID, list[int]]]]] \
            = {}
        # per window count (by identity) and vehicle type: busy compatible spots per lot, see _used
        self._used_memo: dict[int, tuple[dict[uuid.UUID, list[int]], dict[str | None, dict[uuid.UUID, tuple[int, int]]]]] \
            = {}

    async def counts(self, pg: asyncpg.Pool, *, lots: Sequence[PageLot], vehicle_type: str | None,
                     starts_at: datetime, ends_at: datetime, now: datetime) -> dict[uuid.UUID, Counted]:
        """Free compatible spots of each lot (its id, usable capacity and ev_overflow: a page's index hits)."""
        hit = self._items.get((starts_at, ends_at))
        as_of, busy = hit if hit is not None and now - hit[0] < self.ttl else \
            await self._window(pg, starts_at, ends_at, now)
        used = self._used(busy, vehicle_type)
        out = {}
        for lot in lots:
            taken, capacity = used.get(lot.id), lot.capacity
            # tuple.__new__: Counted's generated __new__ is a Python frame per lot
            out[lot.id] = _new_tuple(Counted, (capacity if taken is None else
                                               max(capacity - taken[lot.ev_overflow], 0), SOURCE, as_of))
        return out

    def _used(self, busy: dict[uuid.UUID, list[int]],
              vehicle_type: str | None) -> dict[uuid.UUID, tuple[int, int]]:
        """Busy spots a vehicle type could have used, per lot: (without ev overflow, with it); worked out once per
        window count and type, not once per page."""
        memo = self._used_memo.get(id(busy))
        if memo is None or memo[0] is not busy:
            memo = self._used_memo[id(busy)] = (busy, {})
            while len(self._used_memo) > self.windows:
                del self._used_memo[next(iter(self._used_memo))]
        per_type = memo[1].get(vehicle_type)
        if per_type is None:
            usable, ev_if_overflow = usable_mask(vehicle_type)
            per_type = memo[1][vehicle_type] = {}
            for lot_id, taken in busy.items():
                base = sum(n for n, u in zip(taken, usable, strict=True) if u)
                per_type[lot_id] = (base, base + (taken[4] if ev_if_overflow and not usable[4] else 0))
        return per_type

    async def _window(self, pg: asyncpg.Pool, starts_at: datetime, ends_at: datetime,
                      now: datetime) -> tuple[datetime, dict[uuid.UUID, list[int]]]:
        key = (starts_at, ends_at)
        hit = self._items.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit
        loading = self._loading.get(key)
        if loading is not None and hit is not None:
            return hit  # another search is reading the new one: the previous count, dated when it was taken
        if loading is None:  # one statement per window at a time, however many searches want it
            loading = self._loading[key] = asyncio.ensure_future(self._load(pg, key, now))
            loading.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(loading)

    async def _load(self, pg: asyncpg.Pool, key: tuple[datetime, datetime],
                    now: datetime) -> tuple[datetime, dict[uuid.UUID, list[int]]]:
        starts_at, ends_at = key
        busy: dict[uuid.UUID, list[int]] = {}
        for row in await pg.fetch(queries.BUSY_BY_LOT_AND_TYPE, starts_at, ends_at):
            busy.setdefault(row["lot_id"], [0] * len(ALL_SPOT_TYPES))[ALL_SPOT_TYPES.index(row["type"])] = \
                int(row["busy"])
        self._items[key] = entry = (now, busy)
        self._items.move_to_end(key)
        while len(self._items) > self.windows:
            self._items.popitem(last=False)
        return entry


def availability_cache(ctx: AppContext) -> AvailabilityCache:
    """The process's search availability cache (one per context)."""
    cache = ctx.extras.get("availability_cache")
    if cache is None:
        cache = AvailabilityCache(ttl=timedelta(milliseconds=ctx.settings.search_count_ttl_ms), clock=ctx.clock)
        ctx.extras["availability_cache"] = cache
    return cast(AvailabilityCache, cache)


def busy_cache(ctx: AppContext) -> BusyCache:
    """The process's per-window busy counts for search from the lot index (one per context)."""
    cache = ctx.extras.get("busy_cache")
    if cache is None:
        cache = BusyCache(ttl=timedelta(milliseconds=ctx.settings.search_count_ttl_ms))
        ctx.extras["busy_cache"] = cache
    return cast(BusyCache, cache)
