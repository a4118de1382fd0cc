"""The seam between exports and where occupancy comes from: one function producing, for every place and every
local hour of the period, what was parked there (`PlaceHour`).

Today `place_hours_from_sessions` computes it from parking sessions directly. An occupancy history table (the
forecasts issue) can replace it with a function of the same shape: exports only iterate `PlaceHour`s."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from analytics.exports import queries as q
from analytics.exports.places import Place, lot_arrays

SLOT = timedelta(minutes=15)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
FETCH = 20_000


class PlaceHour(NamedTuple):
    """One place in one local hour: the hour's share of the period (seconds), the place's capacity, the sessions
    present, those that started in it, the seconds they occupied, and the sum of their whole dwell times."""

    place: int
    date: str  # local date, YYYY-MM-DD
    hour: int  # local hour, 0..23
    seconds: float
    capacity: int
    sessions: int
    started: int
    occupied_s: float
    dwell_s: float


class HourSlot(NamedTuple):
    local_hour: datetime  # naive, local
    date: str
    hour: int
    seconds: float


class PlaceHourSource(Protocol):
    """What exports need from an occupancy source (this module's function, later the history table)."""

    def __call__(self, conn: AsyncConnection, *, places: Sequence[Place], start: datetime, end: datetime,
                 now: datetime) -> AsyncIterator[list[PlaceHour]]: ...


def _floor_slot(t: datetime) -> datetime:
    return t - ((t - _EPOCH) % SLOT)


@lru_cache(maxsize=64)
def hour_grid(tz: str, start: datetime, end: datetime) -> tuple[HourSlot, ...]:
    """The local hours of [start, end) in `tz`, in order, with how many seconds of each lie in the period. Built
    from 15-minute UTC slots like the SQL, so a repeated hour (DST ends) is one bucket of up to 2 h and a skipped
    one does not appear."""
    zone = ZoneInfo(tz)
    buckets: dict[datetime, float] = {}
    t = _floor_slot(start)
    while t < end:
        overlap = (min(t + SLOT, end) - max(t, start)).total_seconds()
        local = t.astimezone(zone).replace(tzinfo=None, minute=0, second=0, microsecond=0)
        buckets[local] = buckets.get(local, 0.0) + overlap
        t += SLOT
    return tuple(HourSlot(h, h.date().isoformat(), h.hour, s) for h, s in sorted(buckets.items()))


async def place_hours_from_sessions(conn: AsyncConnection, *, places: Sequence[Place], start: datetime,
                                    end: datetime, now: datetime) -> AsyncIterator[list[PlaceHour]]:
    """Every place's every local hour of [start, end), computed from parking sessions (open ones up to `now`);
    yields one list per place, in place order. Streams: PostgreSQL returns only the hours with sessions."""
    params = {**lot_arrays(places), "from": start, "to": end, "now": now}
    result = await conn.stream(q.PLACE_HOURS, params)
    pending: list[tuple[int, datetime, int, int, float, float]] = []
    exhausted = False
    it = result.partitions(FETCH).__aiter__()

    async def refill() -> None:
        nonlocal pending, exhausted
        try:
            pending = [tuple(r) for r in await it.__anext__()]  # type: ignore[misc]
        except StopAsyncIteration:
            exhausted = True
            pending = []

    await refill()
    pos = 0
    for place in places:
        out: list[PlaceHour] = []
        for slot in hour_grid(place.timezone, start, end):
            if pos >= len(pending) and not exhausted:
                await refill()
                pos = 0
            row = pending[pos] if pos < len(pending) else None
            if row is not None and row[0] == place.rank and row[1] == slot.local_hour:
                out.append(PlaceHour(place.rank, slot.date, slot.hour, slot.seconds, place.capacity, int(row[2]),
                                     int(row[3]), float(row[4]), float(row[5])))
                pos += 1
            else:
                if row is not None and (row[0], row[1]) < (place.rank, slot.local_hour):
                    raise RuntimeError(f"occupancy row outside the hour grid: place {row[0]}, hour {row[1]}")
                out.append(PlaceHour(place.rank, slot.date, slot.hour, slot.seconds, place.capacity, 0, 0, 0.0, 0.0))
        yield out
    await result.close()
