"""No double assignment, end to end through Redis and PostgreSQL, with negative controls."""

import asyncio
import random
import uuid
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import text

from booking import holds
from booking.deps import BookingDeps
from booking.wiring import booking_deps
from core.clock import ManualClock
from core.context import AppContext, build_context
from core.errors import PlateConflict, SoldOut
from tests.booking_helpers import overlapping_pairs
from tests.conftest import make_settings
from tests.factories import insert_lot


async def _attempt(deps: BookingDeps, lot: uuid.UUID, start, end, now, plate: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        await holds.hold(deps=deps, user_id=None, lot_id=lot, vehicle_type="regular", starts_at=start,
                         ends_at=end, plate=plate, now=now)
        return True
    except (SoldOut, PlateConflict):
        return False


async def test_200_concurrent_holds_for_20_spots_grant_exactly_20(ctx: AppContext, clock: ManualClock) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 20})
    deps = booking_deps(ctx)
    start = clock.now() + timedelta(hours=2)
    results = await asyncio.gather(*(_attempt(deps, lot, start, start + timedelta(hours=2), clock.now(), f"P{i}")
                                     for i in range(200)))
    assert sum(results) == 20
    assert await overlapping_pairs(ctx.engine) == 0
    async with ctx.engine.connect() as conn:
        spots = await conn.scalar(text("SELECT count(DISTINCT spot_id) FROM reservations WHERE status = 'held'"))
    assert spots == 20


async def test_same_race_on_the_postgres_only_path(ctx: AppContext, clock: ManualClock) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 20})
    deps = booking_deps(ctx, use_redis=False)
    start = clock.now() + timedelta(hours=2)
    results = await asyncio.gather(*(_attempt(deps, lot, start, start + timedelta(hours=2), clock.now(), f"P{i}")
                                     for i in range(200)))
    assert sum(results) == 20
    assert await overlapping_pairs(ctx.engine) == 0


async def test_negative_control_without_lock_and_constraint_double_books(private_db_url: str, redis_prefix: str,
                                                                         clock: ManualClock) -> None:
    """Guard off (no Redis, no advisory lock, exclusion constraint dropped): the race happens."""
    ctx = build_context(make_settings(database_url=private_db_url, redis_prefix=redis_prefix), clock=clock)
    try:
        async with ctx.engine.begin() as conn:
            lot = await insert_lot(conn, spots={"regular": 20})
            await conn.execute(text("ALTER TABLE reservations DROP CONSTRAINT reservations_no_double_booking"))
        deps = replace(booking_deps(ctx, use_redis=False), pg_lot_lock=False)
        start = clock.now() + timedelta(hours=2)
        results = await asyncio.gather(*(_attempt(deps, lot, start, start + timedelta(hours=2), clock.now(), f"P{i}")
                                         for i in range(200)))
        assert sum(results) > 20
        assert await overlapping_pairs(ctx.engine) > 0
    finally:
        await ctx.aclose()


async def _random_windows(deps: BookingDeps, lot: uuid.UUID, clock: ManualClock, n: int, plates: str = "R") -> int:
    rng = random.Random(1234)
    day = (clock.now() + timedelta(days=1)).replace(hour=0, minute=0)

    async def one(i: int) -> bool:
        start = day + timedelta(minutes=15 * rng.randrange(0, 90))
        end = start + timedelta(minutes=rng.choice((7, 15, 40, 60, 95, 180)))
        return await _attempt(deps, lot, start, end, clock.now(), f"{plates}{i}")

    return sum(await asyncio.gather(*(one(i) for i in range(n))))


async def test_random_windows_over_a_day_never_overlap(ctx: AppContext, clock: ManualClock) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 4, "compact": 2})
    granted = await _random_windows(booking_deps(ctx), lot, clock, 150)
    assert granted > 20
    assert await overlapping_pairs(ctx.engine) == 0


async def test_negative_control_random_windows_without_guards_overlap(private_db_url: str, redis_prefix: str,
                                                                      clock: ManualClock) -> None:
    ctx = build_context(make_settings(database_url=private_db_url, redis_prefix=redis_prefix), clock=clock)
    try:
        async with ctx.engine.begin() as conn:
            lot = await insert_lot(conn, spots={"regular": 4, "compact": 2})
            await conn.execute(text("ALTER TABLE reservations DROP CONSTRAINT reservations_no_double_booking"))
        deps = replace(booking_deps(ctx, use_redis=False), pg_lot_lock=False)
        for storm in "RST":  # a race: on a loaded machine one storm of 150 can come out clean; three seldom do
            await _random_windows(deps, lot, clock, 150, plates=storm)
            if await overlapping_pairs(ctx.engine) > 0:
                break
        assert await overlapping_pairs(ctx.engine) > 0
    finally:
        await ctx.aclose()
