"""Sweepers move by the clock, are idempotent, and never free a spot twice."""

import asyncio
from datetime import timedelta

from sqlalchemy import text

from booking import holds, sweepers, transitions
from booking.runtime import slot_store
from booking.wiring import booking_deps
from core.clock import ManualClock
from core.context import AppContext
from tests.factories import insert_lot


async def _statuses(ctx: AppContext) -> dict[str, int]:
    async with ctx.engine.connect() as conn:
        rows = await conn.execute(text("SELECT status, count(*) AS n FROM reservations GROUP BY status"))
        return {r.status: r.n for r in rows}


async def _hold_n(ctx: AppContext, clock: ManualClock, lot, n: int, start_in: timedelta):  # type: ignore[no-untyped-def]
    deps = booking_deps(ctx)
    start = clock.now() + start_in
    return [await holds.hold(deps=deps, user_id=None, lot_id=lot, vehicle_type="regular", starts_at=start,
                             ends_at=start + timedelta(hours=2), plate=f"SW{i}", now=clock.now())
            for i in range(n)]


async def test_holds_expire_when_the_clock_passes_their_ttl(ctx: AppContext, clock: ManualClock) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 3})
    await _hold_n(ctx, clock, lot, 3, timedelta(hours=1))
    deps = booking_deps(ctx)
    clock.advance(seconds=ctx.settings.hold_ttl_seconds - 1)
    assert await sweepers.expire_holds(deps=deps, now=clock.now()) == 0
    clock.advance(seconds=1)
    assert await sweepers.expire_holds(deps=deps, now=clock.now()) == 3
    assert await _statuses(ctx) == {"expired": 3}
    start = clock.now() + timedelta(minutes=45)
    free = await slot_store(ctx).free_count(lot_id=str(lot), vehicle_type="regular", starts_at=start,
                                            ends_at=start + timedelta(hours=2))
    assert free == 3


async def test_two_sweepers_at_once_free_each_hold_once(ctx: AppContext, clock: ManualClock) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 10})
    await _hold_n(ctx, clock, lot, 10, timedelta(hours=1))
    clock.advance(minutes=20)
    deps_a, deps_b = booking_deps(ctx), booking_deps(ctx)
    counts = await asyncio.gather(sweepers.expire_holds(deps=deps_a, now=clock.now()),
                                  sweepers.expire_holds(deps=deps_b, now=clock.now()),
                                  sweepers.expire_holds(deps=deps_a, now=clock.now()))
    assert sum(counts) == 10
    store = slot_store(ctx)
    assert await store.drift(lot_id=str(lot)) == 0  # no counter was pushed below zero by a double free
    # a duplicated expiry task changes nothing
    assert await sweepers.expire_holds(deps=deps_a, now=clock.now()) == 0


async def test_confirmed_without_entry_becomes_no_show_after_grace(ctx: AppContext, clock: ManualClock) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 2}, no_show_grace_minutes=30)
    deps = booking_deps(ctx)
    [rid] = await _hold_n(ctx, clock, lot, 1, timedelta(minutes=10))
    await transitions.confirm(deps=deps, reservation_id=rid, user_id=None, payment_token="pm_card_visa", now=clock.now())
    clock.advance(minutes=39)
    assert await sweepers.mark_no_shows(deps=deps, now=clock.now()) == 0
    clock.advance(minutes=1)
    assert await sweepers.mark_no_shows(deps=deps, now=clock.now()) == 1
    assert await sweepers.mark_no_shows(deps=deps, now=clock.now()) == 0
    assert await _statuses(ctx) == {"no_show": 1}
    free = await slot_store(ctx).free_count(lot_id=str(lot), vehicle_type="regular", starts_at=clock.now(),
                                            ends_at=clock.now() + timedelta(hours=1))
    assert free == 2
