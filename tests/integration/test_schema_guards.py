"""The last guard: PostgreSQL refuses double assignment whatever the application does."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from core.context import AppContext
from tests.factories import insert_lot

T0 = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)

INSERT = text(
    "INSERT INTO reservations (lot_id, spot_id, vehicle_type, plate_hash, starts_at, ends_at, period, status,"
    " hold_expires_at) VALUES (:lot, :spot, 'regular', :plate, :s, :e, tstzrange(:s, :e, '[)'), :status,"
    " :s)")


async def _spot(ctx: AppContext) -> tuple[object, object]:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 2})
        spot = await conn.scalar(text("SELECT id FROM spots WHERE lot_id = :l ORDER BY idx LIMIT 1"), {"l": lot})
    return lot, spot


async def _insert(ctx: AppContext, lot: object, spot: object, start: datetime, hours: float,
                  status: str = "held", plate: bytes | None = None) -> None:
    async with ctx.engine.begin() as conn:
        await conn.execute(INSERT, {"lot": lot, "spot": spot, "s": start, "e": start + timedelta(hours=hours),
                                    "status": status, "plate": plate})


async def test_overlapping_insert_on_same_spot_is_refused(ctx: AppContext) -> None:
    lot, spot = await _spot(ctx)
    await _insert(ctx, lot, spot, T0, 2)
    with pytest.raises(IntegrityError, match="reservations_no_double_booking"):
        await _insert(ctx, lot, spot, T0 + timedelta(minutes=105), 1, status="confirmed")


async def test_back_to_back_windows_are_allowed_and_inactive_rows_do_not_block(ctx: AppContext) -> None:
    lot, spot = await _spot(ctx)
    await _insert(ctx, lot, spot, T0, 2)
    await _insert(ctx, lot, spot, T0 + timedelta(hours=2), 1)  # [) bounds: touching is not overlapping
    await _insert(ctx, lot, spot, T0, 3, status="cancelled")
    await _insert(ctx, lot, spot, T0, 3, status="expired")


async def test_same_plate_cannot_hold_two_overlapping_reservations(ctx: AppContext) -> None:
    lot, spot = await _spot(ctx)
    async with ctx.engine.connect() as conn:
        other = await conn.scalar(text("SELECT id FROM spots WHERE lot_id = :l AND id <> :s"), {"l": lot, "s": spot})
    await _insert(ctx, lot, spot, T0, 2, plate=b"plate-1")
    with pytest.raises(IntegrityError, match="reservations_one_car_one_reservation"):
        await _insert(ctx, lot, other, T0 + timedelta(hours=1), 2, plate=b"plate-1")
    await _insert(ctx, lot, other, T0 + timedelta(hours=1), 2, plate=b"plate-2")


async def test_empty_or_unbounded_periods_are_refused(ctx: AppContext) -> None:
    lot, spot = await _spot(ctx)
    async with ctx.engine.begin() as conn:
        with pytest.raises(IntegrityError):
            async with conn.begin_nested():
                await conn.execute(text(
                    "INSERT INTO reservations (lot_id, spot_id, vehicle_type, starts_at, ends_at, period, status,"
                    " hold_expires_at) VALUES (:l, :s, 'regular', :a, :b, tstzrange(:a, :a, '[)'), 'held', :a)"),
                    {"l": lot, "s": spot, "a": T0, "b": T0 + timedelta(hours=1)})
        with pytest.raises(IntegrityError):
            async with conn.begin_nested():
                await conn.execute(text(
                    "INSERT INTO reservations (lot_id, spot_id, vehicle_type, starts_at, ends_at, period, status,"
                    " hold_expires_at) VALUES (:l, :s, 'regular', :a, :b, tstzrange(:a, NULL, '[)'), 'held', :a)"),
                    {"l": lot, "s": spot, "a": T0, "b": T0 + timedelta(hours=1)})
