"""Holds written in batches (booking.holdwriter): one statement for the holds ready at the same moment, each
written only under the single write's conditions; a hold the batch skips is written alone."""

import asyncio
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from booking import holds
from booking.holds import _params
from booking.holdwriter import HoldWriter
from booking.wiring import booking_deps
from core.clock import ManualClock
from core.context import AppContext
from core.errors import SoldOut, TooManyRequests
from tests.booking_helpers import overlapping_pairs
from tests.factories import UserFactory, insert_lot


async def test_concurrent_holds_share_statements_and_never_overlap(ctx: AppContext, clock: ManualClock) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 20})
    writer = HoldWriter(ctx.pg)
    deps = replace(booking_deps(ctx), writer=writer)
    start = clock.now() + timedelta(hours=1)
    args = {"user_id": None, "lot_id": lot, "vehicle_type": "regular", "starts_at": start,
            "ends_at": start + timedelta(hours=2), "now": clock.now()}
    results = await asyncio.gather(*(holds.hold(deps=deps, plate=f"B{i}", **args) for i in range(30)),
                                   return_exceptions=True)
    assert sum(isinstance(r, uuid.UUID) for r in results) == 20
    assert all(isinstance(r, SoldOut) for r in results if not isinstance(r, uuid.UUID))
    assert writer.holds == 20 and writer.batches < 20  # some statements carried several holds
    assert await overlapping_pairs(ctx.engine) == 0


async def test_a_drivers_holds_in_one_batch_count_against_their_limit_in_turn(
        ctx: AppContext, clock: ManualClock, users: UserFactory) -> None:
    """Without the batch's per-driver numbering (`nth` in HOLD_WRITE_MANY) every hold of the second batch would
    see one unpaid hold and all four would be written: five holds against a limit of two."""
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 10})
    driver = await users.create()
    writer = HoldWriter(ctx.pg, max_in_flight=1)  # batches one after the other: the second sees the first
    deps = replace(booking_deps(ctx), writer=writer, max_holds_per_user=2)
    start = clock.now() + timedelta(hours=1)
    args = {"user_id": driver.id, "lot_id": lot, "vehicle_type": "regular", "starts_at": start,
            "ends_at": start + timedelta(hours=2), "now": clock.now()}
    results = await asyncio.gather(*(holds.hold(deps=deps, plate=f"L{i}", **args) for i in range(5)),
                                   return_exceptions=True)
    assert sum(isinstance(r, uuid.UUID) for r in results) == 2
    assert sum(isinstance(r, TooManyRequests) for r in results) == 3


async def test_a_conflict_inside_a_batch_skips_the_later_hold(ctx: AppContext, clock: ManualClock) -> None:
    """Two holds placed on one spot (as a stale Redis could): one statement writes the first, skips the second
    (the caller then writes it alone and meets the exclusion constraint)."""
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 2})
    deps = booking_deps(ctx)
    info = await holds._read_lot(deps, lot)
    start = clock.now() + timedelta(hours=1)

    def params(plate: str) -> tuple[object, ...]:
        row = {"lot_id": lot, "id": uuid.uuid4(), "kind": "reservation", "user_id": None, "vehicle_type": "regular",
               "plate": plate, "plate_hash": None, "starts_at": start, "ends_at": start + timedelta(hours=1),
               "slot_start": start, "slot_end": start + timedelta(hours=1), "status": "held",
               "hold_expires_at": clock.now() + timedelta(minutes=15), "price": 0, "currency": "usd", "quote": None,
               "idem": None, "now": clock.now(), "lot_version": info.lot_version,
               "card_row_version": info.card_row_version}
        return _params(deps, row, 0, (None, None, None))

    writer = HoldWriter(ctx.pg)
    written = await asyncio.gather(*(writer.write(params(p)) for p in ("C1", "C2", "C3")))
    assert writer.batches == 1  # all three were ready together
    assert sum(r is not None for r in written) == 1  # the others met the first on spot 0 and were skipped


@pytest.mark.parametrize("change", ["card", "status"])
async def test_a_batch_skips_a_hold_whose_lot_changed(ctx: AppContext, clock: ManualClock, change: str) -> None:
    from sqlalchemy import text

    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 2})
    deps = booking_deps(ctx)
    info = await holds._read_lot(deps, lot)
    async with ctx.engine.begin() as conn:
        await conn.execute(text("UPDATE lots SET status = 'closed' WHERE id = :id" if change == "status"
                                else "UPDATE lots SET ev_overflow = NOT ev_overflow WHERE id = :id"), {"id": lot})
    start = clock.now() + timedelta(hours=1)
    row = {"lot_id": lot, "id": uuid.uuid4(), "kind": "reservation", "user_id": None, "vehicle_type": "regular",
           "plate": "X1", "plate_hash": None, "starts_at": start, "ends_at": start + timedelta(hours=1),
           "slot_start": start, "slot_end": start + timedelta(hours=1), "status": "held",
           "hold_expires_at": clock.now() + timedelta(minutes=15), "price": 0, "currency": "usd", "quote": None,
           "idem": None, "now": clock.now(), "lot_version": info.lot_version, "card_row_version": info.card_row_version}
    assert await HoldWriter(ctx.pg).write(_params(deps, row, 1, (None, None, None))) is None
