"""The seam between exports and where occupancy comes from: one function producing, for every place and every
local hour of the period, what was parked there (`PlaceHours`: one place's hours as columns).

Today `place_hours_from_sessions` computes it from parking sessions directly. An occupancy history table (the
forecasts issue) can replace it with a function of the same shape (`PlaceHourSource`): exports only iterate
`PlaceHours`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from analytics.exports import queries as q
from analytics.exports.places import Place, lot_arrays

SLOT = timedelta(minutes=15)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
#: lot-days of sessions one query aggregates (90 days: ~11 lots a query; a week: ~140)
CHUNK_LOT_DAYS = 1_000


@dataclass(frozen=True)
class HourGrid:
    """The local hours of a period in one timezone, in order: each hour's start (naive, local), local date
    (numpy datetime64[D]) and hour, and how many seconds of it lie in the period."""

    local_hours: tuple[datetime, ...]
    index: dict[datetime, int]
    dates: np.ndarray[Any, Any]
    hours: np.ndarray[Any, Any]
    seconds: np.ndarray[Any, Any]
    #: minutes past a UTC hour at which local hours start (30 in India), or None when that changes within the
    #: period (a zone whose DST moves it by half an hour): the SQL then cuts sessions at quarter hours instead
    hour_phase: int | None

    def __len__(self) -> int:
        return len(self.local_hours)


@dataclass(frozen=True)
class PlaceHours:
    """One place in each local hour of its grid: the sessions present, those that started in the hour, the
    seconds they occupied, and the sum of their whole dwell times (arrays as long as the grid)."""

    place: int
    capacity: int
    grid: HourGrid
    sessions: np.ndarray[Any, Any]
    started: np.ndarray[Any, Any]
    occupied_s: np.ndarray[Any, Any]
    dwell_s: np.ndarray[Any, Any]


class PlaceHourSource(Protocol):
    """What exports need from an occupancy source (this module's function, later the history table): every
    place's `PlaceHours`, in place order."""

    def __call__(self, conn: AsyncConnection, *, places: Sequence[Place], start: datetime, end: datetime,
                 now: datetime) -> AsyncIterator[PlaceHours]: ...


def _floor_slot(t: datetime) -> datetime:
    return t - ((t - _EPOCH) % SLOT)


@lru_cache(maxsize=64)
def hour_grid(tz: str, start: datetime, end: datetime) -> HourGrid:
    """The local hours of [start, end) in `tz`. Built from 15-minute UTC slots like the SQL (every timezone offset
    is a whole number of quarter hours), so a repeated hour (DST ends) is one bucket of up to 2 h and a skipped
    one does not appear."""
    zone = ZoneInfo(tz)
    buckets: dict[datetime, float] = {}
    phases: set[int] = set()
    t = _floor_slot(start)
    while t < end:
        overlap = (min(t + SLOT, end) - max(t, start)).total_seconds()
        local = t.astimezone(zone)
        phases.add(-int((local.utcoffset() or timedelta(0)).total_seconds() // 60) % 60)
        local = local.replace(tzinfo=None, minute=0, second=0, microsecond=0)
        buckets[local] = buckets.get(local, 0.0) + overlap
        t += SLOT
    hours = tuple(sorted(buckets))
    return HourGrid(local_hours=hours, index={h: i for i, h in enumerate(hours)},
                    dates=np.array([h.date() for h in hours], dtype="datetime64[D]"),
                    hours=np.array([h.hour for h in hours], dtype=np.int8),
                    seconds=np.array([buckets[h] for h in hours], dtype=np.float64),
                    hour_phase=phases.pop() if len(phases) == 1 else None)


def empty_hours(place: Place, grid: HourGrid) -> PlaceHours:
    n = len(grid)
    return PlaceHours(place.rank, place.capacity, grid, np.zeros(n, np.int64), np.zeros(n, np.int64),
                      np.zeros(n, np.float64), np.zeros(n, np.float64))


def chunks(places: Sequence[Place], *, days: float, lot_days: int | None = None) -> list[Sequence[Place]]:
    """Consecutive runs of places holding about `lot_days` (CHUNK_LOT_DAYS) lot-days each, one place at least."""
    lot_days = CHUNK_LOT_DAYS if lot_days is None else lot_days
    out: list[Sequence[Place]] = []
    first, weight = 0, 0.0
    for i, place in enumerate(places):
        weight += len(place.lot_ids) * days
        if weight >= lot_days:
            out.append(places[first:i + 1])
            first, weight = i + 1, 0.0
    if first < len(places):
        out.append(places[first:])
    return out


async def place_hours_from_sessions(conn: AsyncConnection, *, places: Sequence[Place], start: datetime,
                                    end: datetime, now: datetime) -> AsyncIterator[PlaceHours]:
    """Every place's local hours of [start, end), from parking sessions (open ones counted up to `now`); one
    `PlaceHours` per place, in place order. One query per run of places (`chunks`), so PostgreSQL aggregates a
    bounded share of the sessions at a time and returns only the hours that had one."""
    days = (end - start).total_seconds() / 86_400
    for run in chunks(places, days=days):
        arrays = lot_arrays(run)
        # each lot's cut: whole local hours where its zone's offset keeps its minutes, else quarter hours
        grids = {p.rank: hour_grid(p.timezone, start, end) for p in run}
        phases = [grids[rank].hour_phase for rank in arrays["ranks"]]
        params = {**arrays, "steps": [15 if ph is None else 60 for ph in phases],
                  "phases": [0 if ph is None else ph for ph in phases], "from": start, "to": end, "now": now}
        rows = iter((await conn.execute(q.PLACE_HOURS, params)).all())
        row = next(rows, None)
        for place in run:
            grid = hour_grid(place.timezone, start, end)
            block = empty_hours(place, grid)
            while row is not None and row.rank <= place.rank:
                i = grid.index.get(row.local_hour) if row.rank == place.rank else None
                if i is None:
                    raise RuntimeError(f"occupancy row outside the hour grid: place {row.rank}, hour {row.local_hour}")
                block.sessions[i], block.started[i] = row.sessions, row.started
                block.occupied_s[i], block.dwell_s[i] = row.occupied, row.dwell
                row = next(rows, None)
            yield block
