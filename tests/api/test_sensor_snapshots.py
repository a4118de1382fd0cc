"""Occupancy snapshots from sensor states: one row per type per 5-minute mark, unknown never occupied."""

from __future__ import annotations

from sqlalchemy import text

from controllers.occupancy import counters_for
from controllers.sensors import ingest_sensor_events
from controllers.snapshots import snapshot_all
from core.clock import ManualClock
from core.context import AppContext
from tests.factories import insert_lot


async def test_snapshots_every_five_minutes_are_idempotent(ctx: AppContext, clock: ManualClock) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 3, "ev": 1}, levels=2)
    now = clock.now()
    events = [{"event_id": f"e{i}", "sensor_id": f"L{lvl}-{i:03d}", "state": "occupied", "confidence": 0.9,
               "occurred_at": now.isoformat()} for lvl, i in ((0, 1), (0, 2), (1, 5), (1, 8))]
    res = await ingest_sensor_events(pg=await ctx.pg(), counters=counters_for(ctx), lot_id=lot, events=events, now=now)
    assert res.accepted == 4
    assert await snapshot_all(engine=ctx.engine, counters=counters_for(ctx), now=now) == 2
    clock.advance(minutes=2)
    assert await snapshot_all(engine=ctx.engine, counters=counters_for(ctx), now=clock.now()) == 0  # same mark
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT spot_type, occupied, capacity, source FROM occupancy_snapshots ORDER BY spot_type"))).all()
    # capacity counts the level/type groups that have sensors (level 0 has no ev sensor)
    assert [(r.spot_type, r.occupied, r.capacity, r.source) for r in rows] == [("ev", 1, 1, "sensor"),
                                                                               ("regular", 3, 6, "sensor")]
