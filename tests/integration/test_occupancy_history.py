"""Occupancy history: 15-minute rows from sessions and sensors, hourly rollups, idempotent runs, retention."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from analytics import history
from core.context import AppContext
from tests.factories import insert_lot

T0 = datetime(2030, 1, 7, 10, 0, tzinfo=UTC)


async def _session(conn, lot_id: uuid.UUID, spot_id: uuid.UUID | None, entered: datetime,
                   exited: datetime | None) -> None:
    await conn.execute(text(
        "INSERT INTO parking_sessions (lot_id, kind, spot_id, status, entered_at, exited_at) "
        "VALUES (:lot, 'walk_in', :spot, :status, :a, :z)"),
        {"lot": lot_id, "spot": spot_id, "status": "completed" if exited else "active", "a": entered, "z": exited})


async def _spots(conn, lot_id: uuid.UUID) -> list[uuid.UUID]:
    return list((await conn.execute(text("SELECT id FROM spots WHERE lot_id = :l ORDER BY idx"), {"l": lot_id})).scalars())


async def _rows(ctx: AppContext, table: str = "occupancy_15m") -> dict[tuple, tuple]:
    key = "bucket" if table == "occupancy_15m" else "hour"
    cols = "occupied, capacity, source" if table == "occupancy_15m" else "occupied_avg, occupied_max, capacity"
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(text(f"SELECT lot_id, {key}, spot_type, {cols} FROM {table}"))).all()
    return {(r[0], r[1], r[2]): tuple(r[3:]) for r in rows}


async def test_sessions_become_time_averaged_15_minute_rows_and_hourly_rollups(ctx: AppContext) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 4, "ev": 2})
        spots = await _spots(conn, lot)
        await _session(conn, lot, spots[0], T0, T0 + timedelta(minutes=30))  # two whole buckets
        await _session(conn, lot, spots[1], T0 + timedelta(minutes=5), T0 + timedelta(minutes=10))  # a third of one
        await _session(conn, lot, spots[4], T0 + timedelta(minutes=50), None)  # ev, still parked
    run = await history.compute(engine=ctx.engine, t0=T0, t1=T0 + timedelta(hours=2), now=T0 + timedelta(hours=1))
    assert (run.t0, run.t1) == (T0, T0 + timedelta(hours=1))  # only closed buckets
    rows = await _rows(ctx)
    occ = {(k[1], k[2]): round(v[0], 4) for k, v in rows.items()}
    assert occ[(T0, "regular")] == round(1 + 1 / 3, 4)
    assert occ[(T0 + timedelta(minutes=15), "regular")] == 1
    assert occ[(T0 + timedelta(minutes=30), "regular")] == 0
    assert occ[(T0 + timedelta(minutes=45), "ev")] == round(10 / 15, 4)
    assert {v[1] for k, v in rows.items() if k[2] == "regular"} == {4}
    assert len(rows) == 8  # 4 buckets x 2 spot types, zero rows included
    hourly = await _rows(ctx, "occupancy_hourly")
    avg, peak, cap = hourly[(lot, T0, "regular")]
    assert (round(avg, 4), round(peak, 4), cap) == (round((4 / 3 + 1) / 4, 4), round(4 / 3, 4), 4)


async def test_running_twice_writes_the_same_rows_and_a_backfill_chunks_by_day(ctx: AppContext) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 3})
        spots = await _spots(conn, lot)
        for day in range(3):
            await _session(conn, lot, spots[day], T0 + timedelta(days=day), T0 + timedelta(days=day, hours=5))
    end = T0 + timedelta(days=3)
    first = await history.backfill(engine=ctx.engine, t0=T0, t1=end, now=end)
    before = await _rows(ctx)
    again = await history.backfill(engine=ctx.engine, t0=T0, t1=end, now=end)
    assert first.rows_15m == again.rows_15m == 3 * 96
    assert await _rows(ctx) == before
    assert sum(v[0] for v in before.values()) == 3 * 5 * 4  # 3 sessions of 5 hours: 60 bucket-spots


async def test_sensor_spots_follow_their_sensor_and_other_spots_their_sessions(ctx: AppContext) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 3})
        spots = await _spots(conn, lot)
        await conn.execute(text("INSERT INTO sensors (lot_id, id, spot_id) VALUES (:l, 's1', :s)"),
                           {"l": lot, "s": spots[0]})
        for i, (minute, state) in enumerate(((0, "occupied"), (15, "vacant"))):
            await conn.execute(text(
                "INSERT INTO sensor_events (lot_id, event_id, sensor_id, state, confidence, occurred_at) "
                "VALUES (:l, :e, 's1', :st, 0.9, :at)"), {"l": lot, "e": f"e{i}", "st": state,
                                                          "at": T0 + timedelta(minutes=minute)})
        # a session on the sensed spot for the whole hour: the sensor says it left after 15 minutes
        await _session(conn, lot, spots[0], T0, T0 + timedelta(hours=1))
        await _session(conn, lot, spots[1], T0, T0 + timedelta(minutes=30))
    await history.compute(engine=ctx.engine, t0=T0, t1=T0 + timedelta(hours=1), now=T0 + timedelta(hours=1))
    rows = await _rows(ctx)
    assert rows[(lot, T0, "regular")][0] == 2 and rows[(lot, T0, "regular")][2] == "sensors"
    assert rows[(lot, T0 + timedelta(minutes=15), "regular")][0] == 1
    assert rows[(lot, T0 + timedelta(minutes=45), "regular")][0] == 0


async def test_retention_drops_old_sensor_events_and_15_minute_rows_but_keeps_hourly(ctx: AppContext) -> None:
    now = T0 + timedelta(days=100)
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 2})
        spots = await _spots(conn, lot)
        await _session(conn, lot, spots[0], T0, T0 + timedelta(hours=1))
        await _session(conn, lot, spots[0], now - timedelta(days=2), now - timedelta(days=2, minutes=-30))
        for i, at in enumerate((now - timedelta(days=8), now - timedelta(days=6))):
            await conn.execute(text(
                "INSERT INTO sensor_events (lot_id, event_id, sensor_id, state, confidence, occurred_at) "
                "VALUES (:l, :e, 's1', 'occupied', 0.9, :at)"), {"l": lot, "e": f"e{i}", "at": at})
    await history.compute(engine=ctx.engine, t0=T0, t1=T0 + timedelta(hours=1), now=now)
    await history.compute(engine=ctx.engine, t0=now - timedelta(days=2), t1=now - timedelta(days=1), now=now)
    pruned = await history.prune(engine=ctx.engine, now=now)
    assert pruned.as_json() == {"sensor_events": 1, "rows_15m": 4}
    async with ctx.engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM occupancy_15m WHERE bucket < :c"),
                                 {"c": now - timedelta(days=90)}) == 0
        assert await conn.scalar(text("SELECT count(*) FROM occupancy_hourly WHERE hour = :h"), {"h": T0}) == 1
        assert await conn.scalar(text("SELECT count(*) FROM occupancy_15m")) == 96


async def test_the_backfill_command(ctx: AppContext, settings) -> None:
    import asyncio

    from typer.testing import CliRunner

    from cli.app import app
    from tests.conftest import TEST_SECRET

    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 2})
        spots = await _spots(conn, lot)
        past = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # the command runs on the wall clock: a closed past day
        await _session(conn, lot, spots[0], past, past + timedelta(hours=1))
    env = {"PARKGRID_DATABASE_URL": settings.database_url, "PARKGRID_SECRET_KEY": TEST_SECRET,
           "PARKGRID_REDIS_PREFIX": settings.redis_prefix}
    runner = CliRunner()
    args = ["history", "backfill", "--from", "2026-11-02T00:00:00Z", "--to", "2026-11-03T00:00:00Z", "--json"]
    out = await asyncio.to_thread(runner.invoke, app, args, env=env)
    assert out.exit_code == 0, out.output
    assert '"rows_15m": 96' in out.stdout and '"rows_hourly": 24' in out.stdout
    assert (await _rows(ctx))[(lot, past, "regular")][0] == 1
    bad = await asyncio.to_thread(runner.invoke, app, ["history", "backfill", "--from", "2030-01-07T00:00:00",
                                                       "--to", "2030-01-08T00:00:00Z"], env=env)
    assert bad.exit_code == 2 and "--from must carry a timezone offset" in bad.stderr
