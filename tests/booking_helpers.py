"""Helpers for booking tests: lots, windows, a fixed pricer, and the SQL self-join overlap check."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from booking.deps import Priced
from core.money import Money
from core.vocabulary import Window

OVERLAPS = text(
    "SELECT count(*) FROM reservations a JOIN reservations b ON a.lot_id = b.lot_id AND a.spot_id = b.spot_id"
    " AND a.id < b.id AND a.period && b.period WHERE a.status IN ('held','confirmed','active')"
    " AND b.status IN ('held','confirmed','active')")


async def overlapping_pairs(engine: AsyncEngine) -> int:
    """Pairs of occupying reservations sharing a spot in overlapping slots (must be 0)."""
    async with engine.connect() as conn:
        return int(await conn.scalar(OVERLAPS) or 0)


def fixed_pricer(amount: int):  # type: ignore[no-untyped-def]
    async def pricer(conn: AsyncConnection, lot_id: uuid.UUID, vehicle_type: str, window: Window,
                     quote_token: str | None, discount_code: str | None = None, lot: Any = None) -> Priced:
        return Priced(Money(amount, "usd"), {"total": {"amount": amount, "currency": "usd"}})

    return pricer


def at(now: datetime, hours: float = 1, minutes: int = 0) -> datetime:
    return now + timedelta(hours=hours, minutes=minutes)
