"""The rebuild from PostgreSQL (packed read + numpy) against the Redis state live holds build, bit for bit."""

from __future__ import annotations

import contextlib
import random
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text

from booking import holds, reconcile, transitions
from booking.runtime import slot_store
from booking.slotstore import RepairStats, SlotStore
from booking.wiring import booking_deps
from core.clock import ManualClock
from core.context import AppContext
from core.errors import PlateConflict, SoldOut, ValidationFailed
from tests.factories import insert_lot
from tests.slots_fixtures import counters, delete_prefix, spot_bits


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def lot_state(store: SlotStore, lot: uuid.UUID, days: list[date]) -> dict[str, bytes]:
    """Every day key of the lot, trailing zero bytes dropped: a hold released leaves zero bytes
    behind that a rebuild does not write, and both read as free."""
    out = {}
    for day in days:
        for key in (store.keys.bitmap(str(lot), day), store.keys.booked_counters(str(lot), day)):
            out[key] = (await store.redis.get(key) or b"").rstrip(b"\0")
    return out


async def test_rebuild_from_postgres_equals_the_state_live_holds_built(ctx: AppContext, clock: ManualClock) -> None:
    rng = random.Random(20300107)
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 5, "compact": 2, "large": 1, "ev": 2, "handicap": 1},
                               levels=2)
    deps = booking_deps(ctx)
    store = slot_store(ctx)
    now = clock.now()
    held: list[uuid.UUID] = []
    for i in range(300):
        if held and rng.random() < 0.2:
            await transitions.cancel(deps=deps, reservation_id=held.pop(rng.randrange(len(held))), user_id=None, now=now)
            continue
        # windows of 15 min to 10 h over four days, many across midnight, not aligned to slots
        start = now + timedelta(minutes=rng.randrange(0, 4 * 24 * 60))
        with contextlib.suppress(SoldOut, PlateConflict):
            held.append(await holds.hold(
                deps=deps, user_id=None, lot_id=lot, vehicle_type=rng.choice(["regular", "compact", "large", "ev"]),
                starts_at=start, ends_at=start + timedelta(minutes=rng.randrange(5, 600)), plate=f"RB{i}", now=now))
    assert len(held) > 100
    days = reconcile._days(now, reconcile.DEFAULT_HORIZON_DAYS)
    live = await lot_state(store, lot, days)
    assert sum(bin(int.from_bytes(v, "big")).count("1") for k, v in live.items() if ":bm:" in k) > 1000

    # Nothing drifted: a rebuild over the live state changes no bit.
    assert await reconcile.rebuild_lot(engine=ctx.engine, slots=store, lot_id=lot, now=now) == RepairStats(0, 0)
    assert await lot_state(store, lot, days) == live
    # Redis lost everything: the rebuild alone writes back exactly what the holds had built.
    await delete_prefix(store.redis, ctx.settings.redis_prefix)
    stats = await reconcile.rebuild_lot(engine=ctx.engine, slots=store, lot_id=lot, now=now)
    assert await lot_state(store, lot, days) == live
    assert stats.bits_cleared == 0
    assert stats.bits_set == sum(bin(int.from_bytes(v, "big")).count("1") for k, v in live.items() if ":bm:" in k)


async def test_rebuild_marks_out_of_service_spots_busy_over_the_whole_horizon(ctx: AppContext,
                                                                            clock: ManualClock) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 3})
        await conn.execute(text("UPDATE spots SET status = 'out_of_service' WHERE lot_id = :lot AND idx = 1"),
                           {"lot": lot})
    store = slot_store(ctx)
    now = clock.now()
    await reconcile.rebuild_lot(engine=ctx.engine, slots=store, lot_id=lot, now=now)
    for day in reconcile._days(now, reconcile.DEFAULT_HORIZON_DAYS):
        assert await store.redis.get(store.keys.bitmap(str(lot), day)) == bytes(12) + b"\xff" * 12


async def test_rebuild_widens_unaligned_periods_and_clips_them_to_the_horizon(ctx: AppContext,
                                                                              clock: ManualClock) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 3})
        # Rows written outside the hold path: bounds off the slot grid, one far into the past, one
        # running past the horizon.
        for idx, start, end in ((0, utc(2030, 1, 7, 8, 5, 30), utc(2030, 1, 7, 9, 0, 1)),
                                (1, utc(2029, 6, 1), utc(2030, 1, 6, 0, 20)),
                                (2, utc(2030, 2, 7, 23, 10), utc(2030, 3, 1))):
            await conn.execute(text(
                "INSERT INTO reservations (lot_id, spot_id, vehicle_type, starts_at, ends_at, period, status)"
                " SELECT lot_id, id, 'regular', :s, :e, tstzrange(:s, :e, '[)'), 'confirmed'"
                " FROM spots WHERE lot_id = :lot AND idx = :idx"), {"lot": lot, "idx": idx, "s": start, "e": end})
    store = slot_store(ctx)
    days = reconcile._days(clock.now(), reconcile.DEFAULT_HORIZON_DAYS)
    assert (days[0], days[-1]) == (date(2030, 1, 6), date(2030, 2, 7))
    await reconcile.rebuild_lot(engine=ctx.engine, slots=store, lot_id=lot, now=clock.now())
    assert await spot_bits(store, str(lot), date(2030, 1, 7), 0) == list(range(32, 37))  # 08:00-09:15
    assert await spot_bits(store, str(lot), date(2030, 1, 6), 1) == [0, 1]  # from the horizon's start to 00:30
    assert await spot_bits(store, str(lot), date(2030, 2, 7), 2) == [92, 93, 94, 95]  # to the horizon's end
    assert sum(sum(c) for c in (await counters(store, str(lot), date(2030, 1, 7))).values()) == 5


async def test_reconcile_rebuilds_lots_side_by_side_each_once(ctx: AppContext, clock: ManualClock) -> None:
    async with ctx.engine.begin() as conn:
        lots = [await insert_lot(conn, name=f"Lot {i}", spots={"regular": 2}) for i in range(5)]
    deps = booking_deps(ctx)
    store = slot_store(ctx)
    now = clock.now()
    for lot in lots[1::2]:  # bookings in PostgreSQL that Redis then loses: drift on lots 1 and 3
        await holds.hold(deps=deps, user_id=None, lot_id=lot, vehicle_type="regular", starts_at=now,
                         ends_at=now + timedelta(hours=1), plate=f"SBS{lot.hex[:6]}", now=now)
    await delete_prefix(store.redis, ctx.settings.redis_prefix)
    report = await reconcile.reconcile(engine=ctx.engine, slots=store, now=now, lot_ids=lots + lots[:2],
                                       concurrency=3)
    assert (report.lots, report.bits_set, report.bits_cleared) == (5, 8, 0)
    assert report.repaired_lots == [str(lots[1]), str(lots[3])]
    assert await reconcile.reconcile_stats(store) == {"runs": 1, "lots": 5, "bits_set": 8, "bits_cleared": 0,
                                                      "resets": 1}


async def test_a_lot_that_cannot_be_rebuilt_fails_reconcile_after_the_others_are_rebuilt(
        ctx: AppContext, clock: ManualClock) -> None:
    async with ctx.engine.begin() as conn:
        lots = [await insert_lot(conn, name=f"Lot {i}", spots={"regular": 3}) for i in range(4)]
        await conn.execute(text("UPDATE spots SET idx = 7 WHERE lot_id = :lot AND idx = 1"), {"lot": lots[1]})
    store = slot_store(ctx)
    with pytest.raises(ValidationFailed, match="dense"):
        await reconcile.reconcile(engine=ctx.engine, slots=store, now=clock.now(), lot_ids=lots, concurrency=2)
    assert [await store.redis.exists(store.keys.meta(str(lot))) for lot in lots] == [1, 0, 1, 1]
