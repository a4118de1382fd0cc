"""Money on every window change: a reservation's price is always the price of its current window.

booking.transitions.change_window moves the window (PostgreSQL's constraints decide) and re-prices it with the lot's
rules; this module makes the money follow, in the same transaction, so a refused payment changes nothing:

- held (nothing authorised yet): the intent's amount follows the new price.
- authorised, not captured, price up: the authorisation is raised to cover price + fees (an incremental
  authorisation with an idempotency key derived from the reservation and the new total); the issuer refusing it
  is 402 and the window stays as it was.
- authorised, not captured, price down: the lot's cancellation policy applied to the removed part gives the
  refundable share; the rest is a change fee. Nothing moves now: the capture (at exit or start) takes price +
  fees and releases the remainder of the authorisation.
- already captured: 409 (a second intent for captured reservations is not built; see ADR 0021).

The amount to capture is booking.settlement's `capture_basis` (price + change fees, at most the authorisation):
settlement, cancellation and this module all use it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from booking import queries as q
from booking.deps import BookingDeps, Priced, create_intent
from booking.settlement import capture_basis, change_fees
from booking.transitions import change_window
from core.errors import Conflict, PaymentFailed


@dataclass(frozen=True)
class WindowChange:
    """What a window change did to the money (minor units of `currency`)."""

    previous_price: int
    price: int
    currency: str
    #: the part of the removed time's price the lot keeps (its cancellation policy), added to the capture
    fee: int = 0
    #: how much the authorisation grew (incremental authorisation)
    authorised_added: int = 0
    #: of the authorisation, what will not be captured because of this change (released at capture)
    released: int = 0

    def as_json(self) -> dict[str, Any]:
        def m(amount: int) -> dict[str, Any]:
            return {"amount": amount, "currency": self.currency}

        return {"previous_price": m(self.previous_price), "price": m(self.price),
                "difference": m(self.price - self.previous_price), "fee": m(self.fee),
                "authorised_added": m(self.authorised_added), "released": m(self.released)}


async def amend_window(*, deps: BookingDeps, reservation_id: uuid.UUID, user_id: uuid.UUID | None,
                       starts_at: datetime, ends_at: datetime, now: datetime) -> WindowChange:
    """Move a reservation's window and make its money follow (402 when more cannot be authorised)."""
    done: list[WindowChange] = []

    async def follow(conn: AsyncConnection, row: Any, priced: Priced) -> None:
        done.append(await _follow(deps, conn, row, priced, starts_at=starts_at, ends_at=ends_at, now=now))

    await change_window(deps=deps, reservation_id=reservation_id, user_id=user_id, starts_at=starts_at,
                        ends_at=ends_at, now=now, money=follow)
    return done[0]


async def _follow(deps: BookingDeps, conn: AsyncConnection, row: Any, priced: Priced, *, starts_at: datetime,
                  ends_at: datetime, now: datetime) -> WindowChange:
    old, new, currency = int(row.price_amount), int(priced.price.amount), row.currency.strip()
    pay = (await conn.execute(q.PAYMENT_FOR_RESERVATION, {"lot_id": row.lot_id, "reservation_id": row.id})).first()
    change = WindowChange(old, new, currency)
    if pay is not None and pay.status == "canceled":
        pay = None
    if pay is None:
        if new > 0 and row.status != "held":
            raise Conflict("this reservation was booked without payment: its window cannot change to a priced one")
        if new > 0:  # a free hold that now costs something: its intent, as a priced hold gets one
            intent = await create_intent(deps, reservation_id=row.id, lot_id=row.lot_id, amount=new,
                                         currency=currency)
            await conn.execute(q.INSERT_PAYMENT, {"lot_id": row.lot_id, "reservation_id": row.id,
                                                  "provider": deps.payments.name, "intent_id": intent.intent_id,
                                                  "status": intent.status, "amount": new, "currency": currency})
    elif int(pay.amount_captured) > 0:
        if new != old:
            raise Conflict("the payment was already captured: this reservation's price can no longer change")
    elif int(pay.amount_authorised) == 0:
        if new != int(pay.amount):
            await deps.payments.update_amount(intent_id=pay.intent_id, amount=new,
                                              idempotency_key=f"reservation:{row.id}:amount:{new}")
            await conn.execute(q.PAYMENT_AMOUNT, {"lot_id": row.lot_id, "id": pay.id, "amount": new, "now": now})
    else:
        change = await _follow_authorised(deps, conn, row, pay, change, now=now)
    await conn.execute(q.INSERT_CHANGE, {
        "lot_id": row.lot_id, "reservation_id": row.id, "now": now, "previous_starts_at": row.starts_at,
        "previous_ends_at": row.ends_at, "starts_at": starts_at, "ends_at": ends_at, "previous_price": old,
        "price": new, "fee": change.fee, "authorised_added": change.authorised_added, "currency": currency})
    return change


async def _follow_authorised(deps: BookingDeps, conn: AsyncConnection, row: Any, pay: Any, change: WindowChange,
                             *, now: datetime) -> WindowChange:
    authorised, fees = int(pay.amount_authorised), await change_fees(conn, row.id)
    old, new = change.previous_price, change.price
    fee = 0
    if new < old:  # the removed time is refunded as a cancellation of that part would be
        removed = old - new
        fee = removed - max(0, min(removed, await deps.refund_policy(conn, row, removed, now)))
    needed = new + fees + fee
    if needed > authorised:
        result = await deps.payments.increment_authorization(
            intent_id=pay.intent_id, amount=needed, idempotency_key=f"reservation:{row.id}:increment:{needed}")
        if result.status != "requires_capture" or result.amount_capturable < needed:
            raise PaymentFailed(f"the extra {needed - authorised} could not be authorised: "
                                f"{result.decline_code or result.status}", decline_code=result.decline_code)
        updated = (await conn.execute(q.PAYMENT_INCREMENTED, {"lot_id": row.lot_id, "id": pay.id, "amount": needed,
                                                              "previous": authorised, "now": now})).first()
        if updated is None:
            raise Conflict("the payment changed meanwhile; retry")
        return WindowChange(old, new, change.currency, fee=fee, authorised_added=needed - authorised)
    before = capture_basis(authorised=authorised, price=old, fees=fees)
    after = capture_basis(authorised=authorised, price=new, fees=fees + fee)
    return WindowChange(old, new, change.currency, fee=fee, released=max(0, before - after))
