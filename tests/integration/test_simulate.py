"""The simulator: its history keeps the booking invariants, and the same seed gives the same history."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from analytics.simulate import simulate
from core.clock import ManualClock
from core.context import AppContext, build_context
from core.settings import Settings
from tests.conftest import make_settings

END = datetime(2030, 1, 9, 18, 0, tzinfo=UTC)  # a Wednesday


async def _history(ctx: AppContext) -> list[tuple]:
    async with ctx.engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT lot_id, bucket, spot_type, round(occupied::numeric, 3), capacity FROM occupancy_15m "
            "ORDER BY 1, 2, 3"))
        return [tuple(r) for r in rows]


@pytest.fixture
async def simulated(ctx: AppContext) -> dict:
    return await simulate(ctx, lots=4, days=2, seed=11, end=END, domain_hours=1.5)


async def test_the_simulated_past_keeps_the_booking_invariants(ctx: AppContext, simulated: dict) -> None:
    assert simulated["domain"]["calls"] > 100 and not simulated["domain"]["errors"]
    assert simulated["visits"] > 500 and simulated["center"].keys() == {"lat", "lng"}
    async with ctx.engine.connect() as conn:
        # no two cars on one spot at once: sessions (physical) and occupying reservations (the exclusion guard)
        overlapping = await conn.scalar(text(
            "SELECT count(*) FROM parking_sessions a JOIN parking_sessions b ON a.lot_id = b.lot_id "
            "AND a.spot_id = b.spot_id AND a.id < b.id "
            "AND tstzrange(a.entered_at, coalesce(a.exited_at, 'infinity')) "
            "&& tstzrange(b.entered_at, coalesce(b.exited_at, 'infinity'))"))
        assert overlapping == 0
        assert await conn.scalar(text(
            "SELECT count(*) FROM reservations a JOIN reservations b ON a.lot_id = b.lot_id AND a.spot_id = b.spot_id "
            "AND a.id < b.id AND a.period && b.period "
            "WHERE a.status IN ('held','confirmed','active') AND b.status IN ('held','confirmed','active')")) == 0
        # counters in range: every 15-minute row and every live count
        bad = await conn.scalar(text("SELECT count(*) FROM occupancy_15m WHERE occupied < 0 OR occupied > capacity"))
        assert bad == 0
        peak = await conn.scalar(text("SELECT max(occupied / capacity) FROM occupancy_15m WHERE capacity > 0"))
        assert 0.5 < peak <= 1  # believable: some lot gets busy
        parked_now = await conn.execute(text(
            "SELECT s.lot_id, count(*) AS n, l.capacity FROM parking_sessions s JOIN lots l ON l.id = s.lot_id "
            "WHERE s.status = 'active' GROUP BY s.lot_id, l.capacity"))
        assert all(0 <= r.n <= r.capacity for r in parked_now)
        kinds = dict((await conn.execute(text("SELECT status, count(*) FROM reservations GROUP BY 1"))).all())
        assert {"completed", "cancelled", "no_show", "active"} <= kinds.keys()
        gate_events = await conn.scalar(text("SELECT count(*) FROM controller_events WHERE source = 'gate'"))
        assert gate_events > 50  # the recent part went through the gates


async def test_the_same_seed_gives_the_same_history(ctx: AppContext, settings: Settings, simulated: dict,
                                                    private_db_url: str) -> None:
    other = make_settings(database_url=private_db_url, redis_prefix=settings.redis_prefix + "b")
    second = build_context(other, clock=ManualClock(END))
    try:
        again = await simulate(second, lots=4, days=2, seed=11, end=END, domain_hours=1.5)
        assert await _history(second) == await _history(ctx)
        assert {k: again[k] for k in ("visits", "reservations", "walk_ins", "no_shows", "turned_away")} == \
            {k: simulated[k] for k in ("visits", "reservations", "walk_ins", "no_shows", "turned_away")}
        # simulating the same lots again leaves their past alone
        rerun = await simulate(second, lots=4, days=2, seed=11, end=END)
        assert rerun["skipped"] is True
    finally:
        await second.aclose()
        import redis

        client = redis.Redis.from_url(other.redis_url)
        keys = list(client.scan_iter(match=f"{other.redis_prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
