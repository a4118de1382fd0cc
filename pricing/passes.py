"""Monthly passes: a plate may enter a lot without a reservation for one calendar month (the lot's timezone).

Table semantics (kept for the gates code, which may query monthly_passes directly): `month` is the first day
of the month, `status` is 'active' or 'cancelled', one pass per (lot, plate hash, month), `spot_type` NULL
means any type.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import Conflict, NotFound, ValidationFailed
from core.security import normalise_plate, plate_hash
from pricing import queries as q
from pricing.rates import parse_rate_card


async def active_pass(conn: AsyncConnection, *, lot_id: uuid.UUID, plate_hash: bytes, now: datetime,
                      spot_type: str | None = None) -> Any | None:
    """The active pass admitting this plate at `now` (its month in the lot's timezone), or None."""
    if now.utcoffset() is None:
        raise ValueError("now must carry a timezone offset")
    return (await conn.execute(q.ACTIVE_PASS, {"lot_id": lot_id, "plate_hash": plate_hash, "now": now,
                                               "spot_type": spot_type})).first()


async def create_pass(conn: AsyncConnection, *, lot_id: uuid.UUID, secret: bytes, plate: str, month: date,
                      spot_type: str | None, price: int | None, user_id: uuid.UUID | None, now: datetime) -> Any:
    """Sell a pass for `plate` and `month`, priced by the card's monthly_pass_amount unless `price` is given.

    409 if the plate already has a pass for that month at this lot; 422 on `price` when neither gives a price.
    """
    if month.day != 1:
        raise ValidationFailed("month must be the first day of a month", loc=("body", "month"))
    card_row = (await conn.execute(q.CARD_OF_LOT, {"lot_id": lot_id})).first()
    card = parse_rate_card(card_row.body) if card_row is not None else None
    amount = price if price is not None else (card.monthly_pass_amount if card is not None else None)
    if amount is None:
        raise ValidationFailed("this lot's rate card has no monthly_pass_amount; give a price", loc=("body", "price"))
    currency = card.currency if card is not None else "usd"
    normalised = normalise_plate(plate)
    row = (await conn.execute(q.INSERT_PASS, {
        "lot_id": lot_id, "user_id": user_id, "plate_hash": plate_hash(secret, normalised), "spot_type": spot_type,
        "month": month, "price": amount, "currency": currency, "now": now})).first()
    if row is None:
        raise Conflict(f"this plate already has a pass for {month:%Y-%m} at this lot")
    return row


async def list_passes(conn: AsyncConnection, *, lot_id: uuid.UUID, month: date | None, after_id: uuid.UUID | None,
                      limit: int) -> list[Any]:
    """A lot's passes in id order, optionally for one month."""
    return list(await conn.execute(q.PASSES_OF_LOT, {"lot_id": lot_id, "month": month, "after_id": after_id,
                                                     "limit": limit}))


async def cancel_pass(conn: AsyncConnection, *, lot_id: uuid.UUID, pass_id: uuid.UUID) -> Any:
    """active -> cancelled (404 for another lot's pass or one already cancelled)."""
    row = (await conn.execute(q.CANCEL_PASS, {"lot_id": lot_id, "id": pass_id})).first()
    if row is None:
        raise NotFound(f"active pass {pass_id} not found")
    return row
