"""The hold's single write (reservation + payment in one statement) and its refusals, on both paths.

The hold reads the lot before Redis picks a spot; the write re-checks what can change in between (the lot
closing, the driver's other holds). A pricer with a side effect makes that change happen at exactly that
moment: it runs after the read and before the write.
"""

import asyncio
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from booking import holds, transitions
from booking.deps import Priced
from booking.wiring import booking_deps
from core.clock import ManualClock
from core.context import AppContext
from core.errors import Conflict, PlateConflict, SoldOut, TooManyRequests
from core.money import Money
from core.vocabulary import Window
from tests.factories import UserFactory, insert_lot
from tests.payment_fakes import StrictProvider

PRICE = 900


@pytest.fixture
def provider(ctx: AppContext) -> StrictProvider:
    fake = StrictProvider()
    ctx.extras["payment_provider"] = fake
    return fake


def _pricer(then: Any = None):  # type: ignore[no-untyped-def]
    """Prices every window at PRICE; `then()` runs after the hold's read of the lot, before its write."""
    async def pricer(conn: AsyncConnection, lot_id: uuid.UUID, vehicle_type: str, window: Window,
                     quote_token: str | None, discount_code: str | None = None, lot: Any = None) -> Priced:
        if then is not None:
            await then()
        return Priced(Money(PRICE, "usd"), {"total": {"amount": PRICE, "currency": "usd"}})

    return pricer


async def _rows(ctx: AppContext) -> tuple[int, int]:
    async with ctx.engine.connect() as conn:
        return (int(await conn.scalar(text("SELECT count(*) FROM reservations")) or 0),
                int(await conn.scalar(text("SELECT count(*) FROM payments")) or 0))


def _voided(provider: StrictProvider) -> list[str]:
    return [i.status for i in provider.intents.values()]


@pytest.mark.parametrize("use_redis", [True, False], ids=["redis", "postgres-only"])
async def test_priced_hold_writes_reservation_and_payment_and_answers_the_stored_row(
        ctx: AppContext, clock: ManualClock, provider: StrictProvider, users: UserFactory, use_redis: bool) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 2})
    driver = await users.create()
    deps = booking_deps(ctx, pricer=_pricer(), use_redis=use_redis)
    start = clock.now() + timedelta(hours=1)
    held = await holds.hold_reservation(deps=deps, user_id=driver.id, lot_id=lot, vehicle_type="regular",
                                        starts_at=start, ends_at=start + timedelta(hours=2), plate="W1",
                                        now=clock.now())
    async with ctx.engine.connect() as conn:
        stored = await transitions.get_reservation(conn, reservation_id=held.id, user_id=driver.id)
    assert dict(vars(held.row)) == dict(stored._mapping)
    assert held.row.intent_id is not None and held.row.payment_status == "requires_payment_method"
    assert held.client_secret == f"{held.row.intent_id}_secret"
    assert await _rows(ctx) == (1, 1)
    # the intent is the reservation's: asking for it again creates nothing new
    assert await transitions.create_payment_intent(deps=deps, reservation_id=held.id) == held.client_secret
    assert len(provider.intents) == 1 and await _rows(ctx) == (1, 1)


async def test_free_hold_has_no_intent_and_no_payment(ctx: AppContext, clock: ManualClock,
                                                      provider: StrictProvider) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 1})
    start = clock.now() + timedelta(hours=1)
    held = await holds.hold_reservation(deps=booking_deps(ctx), user_id=None, lot_id=lot, vehicle_type="regular",
                                        starts_at=start, ends_at=start + timedelta(hours=1), plate="F1",
                                        now=clock.now())
    assert held.client_secret is None and held.row.intent_id is None
    assert provider.intents == {} and await _rows(ctx) == (1, 0)


@pytest.mark.parametrize("use_redis", [True, False], ids=["redis", "postgres-only"])
async def test_lot_closed_after_the_read_refuses_the_write_voids_the_intent_and_frees_the_spot(
        ctx: AppContext, clock: ManualClock, provider: StrictProvider, use_redis: bool) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 1})

    async def set_status(status: str) -> None:
        async with ctx.engine.begin() as conn:
            await conn.execute(text("UPDATE lots SET status = :s WHERE id = :id"), {"s": status, "id": lot})

    start = clock.now() + timedelta(hours=1)
    args = {"user_id": None, "lot_id": lot, "vehicle_type": "regular", "starts_at": start,
            "ends_at": start + timedelta(hours=2), "now": clock.now()}
    closing = booking_deps(ctx, pricer=_pricer(lambda: set_status("closed")), use_redis=use_redis)
    with pytest.raises(Conflict, match="closed"):
        await holds.hold(deps=closing, plate="C1", **args)
    assert _voided(provider) == ["canceled"] and await _rows(ctx) == (0, 0)

    await set_status("open")  # the lot's only spot was given back: Redis (or PostgreSQL) grants it again
    await holds.hold(deps=booking_deps(ctx, pricer=_pricer(), use_redis=use_redis), plate="C2", **args)
    assert await _rows(ctx) == (1, 1)


@pytest.mark.parametrize("use_redis", [True, False], ids=["redis", "postgres-only"])
async def test_unpaid_hold_made_after_the_read_refuses_the_write(ctx: AppContext, clock: ManualClock,
                                                                 provider: StrictProvider, users: UserFactory,
                                                                 use_redis: bool) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 3})
    driver = await users.create()
    start = clock.now() + timedelta(hours=1)
    args = {"user_id": driver.id, "lot_id": lot, "vehicle_type": "regular", "starts_at": start,
            "ends_at": start + timedelta(hours=2), "now": clock.now()}
    one_hold = replace(booking_deps(ctx, use_redis=use_redis), max_holds_per_user=1)

    async def another_hold() -> None:  # the same driver, in another request that wins the race
        await holds.hold(deps=one_hold, plate="U2", **args)

    racing = replace(one_hold, pricer=_pricer(another_hold))
    with pytest.raises(TooManyRequests):
        await holds.hold(deps=racing, plate="U1", **args)
    assert _voided(provider) == ["canceled"] and await _rows(ctx) == (1, 0)  # the winner's free hold only


@pytest.mark.parametrize("use_redis", [True, False], ids=["redis", "postgres-only"])
async def test_plate_conflict_from_the_write_voids_the_intent(ctx: AppContext, clock: ManualClock,
                                                              provider: StrictProvider, use_redis: bool) -> None:
    async with ctx.engine.begin() as conn:
        lot_a = await insert_lot(conn, spots={"regular": 1})
        lot_b = await insert_lot(conn, spots={"regular": 1})
    deps = booking_deps(ctx, pricer=_pricer(), use_redis=use_redis)
    start = clock.now() + timedelta(hours=1)
    args = {"user_id": None, "vehicle_type": "regular", "starts_at": start, "ends_at": start + timedelta(hours=2),
            "plate": "SAME 1", "now": clock.now()}
    await holds.hold(deps=deps, lot_id=lot_a, **args)
    with pytest.raises(PlateConflict):
        await holds.hold(deps=deps, lot_id=lot_b, **args)
    assert sorted(_voided(provider)) == ["canceled", "requires_payment_method"]
    assert await _rows(ctx) == (1, 1)
    # lot B's only spot was not kept by the refused hold
    await holds.hold(deps=deps, lot_id=lot_b, **{**args, "plate": "OTHER 2"})


async def test_sold_out_in_redis_creates_no_intent_and_on_the_postgres_path_voids_it(
        ctx: AppContext, clock: ManualClock, provider: StrictProvider) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 1})
    start = clock.now() + timedelta(hours=1)
    args = {"user_id": None, "lot_id": lot, "vehicle_type": "regular", "starts_at": start,
            "ends_at": start + timedelta(hours=2), "now": clock.now()}
    await holds.hold(deps=booking_deps(ctx, pricer=_pricer()), plate="S1", **args)
    with pytest.raises(SoldOut):
        await holds.hold(deps=booking_deps(ctx, pricer=_pricer()), plate="S2", **args)
    assert _voided(provider) == ["requires_payment_method"]  # the winner's: Redis refused before any intent
    # the PostgreSQL-only path makes the intent before it takes the lot's lock (no provider call inside it)
    with pytest.raises(SoldOut):
        await holds.hold(deps=booking_deps(ctx, pricer=_pricer(), use_redis=False), plate="S3", **args)
    assert _voided(provider) == ["requires_payment_method", "canceled"]


async def test_postgres_path_tries_the_next_spot_when_a_hold_outside_its_lock_took_the_candidate(
        ctx: AppContext, clock: ManualClock, provider: StrictProvider) -> None:
    """Redis-placed holds do not take the lot's advisory lock: one still uncommitted when the candidate query
    runs is not seen by it, and the insert is refused by the constraint once it commits."""
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 2})
    start = clock.now() + timedelta(hours=1)
    args = {"user_id": None, "lot_id": lot, "vehicle_type": "regular", "starts_at": start,
            "ends_at": start + timedelta(hours=2), "now": clock.now()}
    async with ctx.engine.connect() as other:
        await other.execute(text(  # the first candidate, taken by a writer that has not committed yet
            "INSERT INTO reservations (lot_id, kind, spot_id, vehicle_type, starts_at, ends_at, period, status,"
            " hold_expires_at) SELECT s.lot_id, 'reservation', s.id, 'regular', :s, :e, tstzrange(:s, :e, '[)'),"
            " 'held', :x FROM spots s WHERE s.lot_id = :lot AND s.idx = 0"),
            {"s": start, "e": start + timedelta(hours=2), "x": clock.now() + timedelta(minutes=15), "lot": lot})
        held = asyncio.create_task(holds.hold_reservation(
            deps=booking_deps(ctx, pricer=_pricer(), use_redis=False), plate="N1", **args))
        for _ in range(500):  # until the hold's insert waits on the uncommitted row
            async with ctx.engine.connect() as conn:
                if await conn.scalar(text(  # this database's waits only: pg_locks is the whole cluster's
                        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                        " WHERE NOT l.granted AND a.datname = current_database()")):
                    break
            await asyncio.sleep(0.01)
        await other.commit()
    assert (await held).row.spot_idx == 1
    assert [i.status for i in provider.intents.values()] == ["requires_payment_method"]


@pytest.mark.parametrize("use_redis", [True, False], ids=["redis", "postgres-only"])
async def test_a_lot_remembered_by_the_process_is_rechecked_by_every_write(
        ctx: AppContext, clock: ManualClock, provider: StrictProvider, use_redis: bool) -> None:
    """Holds decide from the lot and card this process last read (no read before Redis); the write checks
    both rows are unchanged, so a new card, horizon or status applies to the very next hold."""
    from core.errors import ValidationFailed
    from pricing.service import put_rate_card
    from tests.pricing_helpers import card, give_card

    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 4})
        await give_card(conn, lot)
    deps = booking_deps(ctx, use_redis=use_redis)  # the real card pricer
    start = clock.now() + timedelta(hours=1)
    args = {"user_id": None, "lot_id": lot, "vehicle_type": "regular", "starts_at": start,
            "ends_at": start + timedelta(hours=2), "now": clock.now()}
    first = await holds.hold_reservation(deps=deps, plate="V1", **args)
    assert deps.lots.get(lot) is not None  # remembered

    raised = card()
    for rule in raised["rules"]:
        rule["rate_per_hour"] *= 3
    async with ctx.engine.begin() as conn:
        await put_rate_card(conn, lot_id=lot, data=raised, now=clock.now())
    second = await holds.hold_reservation(deps=deps, plate="V2", **args)
    assert second.row.price_amount > first.row.price_amount
    assert second.row.quote["card_version"] == first.row.quote["card_version"] + 1

    async with ctx.engine.begin() as conn:
        await conn.execute(text("UPDATE lots SET booking_horizon_days = 1 WHERE id = :id"), {"id": lot})
    later = clock.now() + timedelta(days=2)
    with pytest.raises(ValidationFailed, match="at most 1 days ahead"):
        await holds.hold(deps=deps, plate="V3", **{**args, "starts_at": later, "ends_at": later + timedelta(hours=1)})

    async with ctx.engine.begin() as conn:
        await conn.execute(text("UPDATE lots SET status = 'closed' WHERE id = :id"), {"id": lot})
    with pytest.raises(Conflict, match="closed"):
        await holds.hold(deps=deps, plate="V4", **args)
    assert await _rows(ctx) == (2, 2)
    # a hold decided from a stale copy voids its intent before it is decided again: only the two written live on
    assert sorted(_voided(provider)) == ["canceled"] * 3 + ["requires_payment_method"] * 2


@pytest.mark.parametrize("batched", [True, False], ids=["batched-write", "single-write"])
async def test_a_deadlock_with_another_writer_of_the_spot_is_a_retry_not_an_error(
        ctx: AppContext, clock: ManualClock, provider: StrictProvider, batched: bool) -> None:
    """An exclusion constraint inserts, then checks: two writers of one spot can each wait on the other's
    uncommitted row. PostgreSQL aborts one (here the hold, which waited first); the hold takes the next spot.
    Seen in bench_booking phase C as a 500 when Redis came back while PostgreSQL-path holds were in flight."""
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 2})
    start = clock.now() + timedelta(hours=1)
    args = {"user_id": None, "lot_id": lot, "vehicle_type": "regular", "starts_at": start,
            "ends_at": start + timedelta(hours=2), "now": clock.now()}
    insert = text(
        "INSERT INTO reservations (lot_id, kind, spot_id, vehicle_type, starts_at, ends_at, period, status,"
        " hold_expires_at) SELECT s.lot_id, 'reservation', s.id, 'regular', :s, :e, tstzrange(:s, :e, '[)'),"
        " 'held', :x FROM spots s WHERE s.lot_id = :lot AND s.idx = 0")
    expires = clock.now() + timedelta(minutes=15)
    async with ctx.engine.connect() as other:
        # the first half of the hold's window on spot 0, not committed: the hold's insert waits for it
        await other.execute(insert, {"s": start, "e": start + timedelta(hours=1), "x": expires, "lot": lot})
        deps = booking_deps(ctx, pricer=_pricer())
        deps = deps if batched else replace(deps, writer=None)
        held = asyncio.create_task(holds.hold_reservation(deps=deps, plate="D1", **args))
        for _ in range(500):
            async with ctx.engine.connect() as conn:
                if await conn.scalar(text(  # this database's waits only: pg_locks is the whole cluster's
                        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                        " WHERE NOT l.granted AND a.datname = current_database()")):
                    break
            await asyncio.sleep(0.01)
        # the second half: waits for the hold's row, which waits for ours
        await other.execute(insert, {"s": start + timedelta(hours=1), "e": start + timedelta(hours=2),
                                     "x": expires, "lot": lot})
        await other.rollback()
    # written alone, the hold took the next spot; a batch that deadlocked is written again alone, after the
    # other writer gave up its rows
    assert (await held).row.spot_idx == (1 if not batched else 0)
