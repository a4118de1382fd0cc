"""The hourly source computed from parking sessions (PostgreSQL) agrees with the hour grid (Python) across a DST
change, in a half-hour timezone, for H3 cells holding two lots, and for a car still parked."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from analytics.exports import source
from analytics.exports.places import LotRow, build_places
from analytics.exports.source import PlaceHours, chunks, place_hours_from_sessions
from core.context import AppContext
from tests.exports_world import add_session
from tests.factories import insert_lot


def _by_hour(block: PlaceHours) -> dict[tuple[str, int], tuple[int, int, float, float, float]]:
    g = block.grid
    return {(str(g.dates[i]), int(g.hours[i])): (int(block.sessions[i]), int(block.started[i]),
                                                 float(block.occupied_s[i]), float(block.dwell_s[i]),
                                                 float(g.seconds[i])) for i in range(len(g))}


async def _blocks(ctx: AppContext, lots: list[LotRow], *, start: datetime, end: datetime, now: datetime,
                  resolution: int | None = None) -> list[PlaceHours]:
    places = build_places(lots, resolution=resolution)
    async with ctx.engine.connect() as conn:
        return [b async for b in place_hours_from_sessions(conn, places=places, start=start, end=end, now=now)]


@pytest.mark.parametrize("cut", ["hours", "quarters"])
async def test_sessions_fall_into_local_hours_across_dst_and_half_hour_zones(
        ctx: AppContext, cut: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if cut == "quarters":  # the path of zones whose offset changes its minutes: must give the same numbers
        whole = source.hour_grid
        monkeypatch.setattr(source, "hour_grid", lambda tz, a, b: dataclasses.replace(whole(tz, a, b), hour_phase=None))
    async with ctx.engine.begin() as conn:
        la = await insert_lot(conn, name="LA", spots={"regular": 4})
        india = await insert_lot(conn, name="Pune", lat=18.52, lng=73.85, timezone="Asia/Kolkata", spots={"regular": 2})
        # 01:30 PDT -> 02:30 PST on the night DST ends: 01:00 happens twice (08:00-10:00 UTC)
        await add_session(conn, ctx, lot_id=la, plate="DST1", entered=datetime(2026, 11, 1, 8, 30, tzinfo=UTC),
                          exited=datetime(2026, 11, 1, 10, 30, tzinfo=UTC))
        # 05:45-06:15 IST: two local hours of the half-hour zone
        await add_session(conn, ctx, lot_id=india, plate="IST1", entered=datetime(2026, 11, 1, 0, 15, tzinfo=UTC),
                          exited=datetime(2026, 11, 1, 0, 45, tzinfo=UTC))
        # still parked since 11:00 UTC (04:00 PST)
        await add_session(conn, ctx, lot_id=la, plate="OPEN1", entered=datetime(2026, 11, 1, 12, 0, tzinfo=UTC),
                          exited=None)
    start, end = datetime(2026, 11, 1, 0, 0, tzinfo=UTC), datetime(2026, 11, 1, 14, 0, tzinfo=UTC)
    now = datetime(2026, 11, 1, 13, 30, tzinfo=UTC)
    lots = [LotRow(la, "America/Los_Angeles", 4, 37.7793, -122.4193), LotRow(india, "Asia/Kolkata", 2, 18.52, 73.85)]
    blocks = {b.capacity: _by_hour(b) for b in await _blocks(ctx, lots, start=start, end=end, now=now)}
    us, ist = blocks[4], blocks[2]
    assert us[("2026-11-01", 1)] == (1, 1, 5400.0, 7200.0, 7200.0)  # the doubled hour: 2 h of it in the period
    assert us[("2026-11-01", 2)] == (1, 0, 1800.0, 7200.0, 3600.0)
    assert us[("2026-10-31", 17)][0] == 0 and ("2026-11-01", 0) in us
    # the open session counts until `now` (13:30 UTC = 05:30 PST): a half hour in 05:00, none in 06:00
    assert us[("2026-11-01", 4)] == (1, 1, 3600.0, 5400.0, 3600.0)
    assert us[("2026-11-01", 5)][:3] == (1, 0, 1800.0)
    assert ist[("2026-11-01", 5)] == (1, 1, 900.0, 1800.0, 1800.0)  # 05:30-06:00 IST is in the period
    assert ist[("2026-11-01", 6)] == (1, 0, 900.0, 1800.0, 3600.0)
    assert sum(v[4] for v in us.values()) == sum(v[4] for v in ist.values()) == 14 * 3600


async def test_cells_sum_their_lots_and_runs_of_places_change_nothing(ctx: AppContext) -> None:
    async with ctx.engine.begin() as conn:
        a = await insert_lot(conn, name="A", spots={"regular": 3})
        b = await insert_lot(conn, name="B", lat=37.7800, lng=-122.4190, spots={"regular": 5})
        t = datetime(2026, 1, 6, 18, 0, tzinfo=UTC)
        for i, lot in enumerate((a, b, b)):
            await add_session(conn, ctx, lot_id=lot, plate=f"C{i}", entered=t + timedelta(minutes=10 * i),
                              exited=t + timedelta(minutes=10 * i + 20))
    lots = [LotRow(a, "America/Los_Angeles", 3, 37.7793, -122.4193), LotRow(b, "America/Los_Angeles", 5, 37.7800,
                                                                          -122.4190)]
    start, end, now = t - timedelta(hours=2), t + timedelta(hours=2), t + timedelta(days=1)
    (cell,) = await _blocks(ctx, lots, start=start, end=end, now=now, resolution=6)
    assert cell.capacity == 8 and _by_hour(cell)[("2026-01-06", 10)] == (3, 3, 3600.0, 3600.0, 3600.0)
    # one query per lot gives what one query for both gave
    places = build_places(lots, resolution=None)
    assert len(chunks(places, days=1, lot_days=1)) == 2 and len(chunks(places, days=1, lot_days=10)) == 1
    together = await _blocks(ctx, lots, start=start, end=end, now=now)
    source.CHUNK_LOT_DAYS, saved = 0, source.CHUNK_LOT_DAYS
    try:
        assert len(chunks(places, days=1)) == 2
        apart = await _blocks(ctx, lots, start=start, end=end, now=now)
    finally:
        source.CHUNK_LOT_DAYS = saved
    assert [_by_hour(x) for x in together] == [_by_hour(x) for x in apart]
