"""A reservation's life after its hold (docs/design.md, Lifecycle): pay, confirm, cancel, check in and out, change
its window; and reading reservations. Each transition commits in PostgreSQL first; Redis's bits and the money
(booking.settlement) follow the commit."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from booking import lifecycle as lc
from booking import queries as q
from booking.deps import (
    PLATE_GUARD,
    SPOT_GUARD,
    BookingDeps,
    Priced,
    RefundPolicy,
    constraint_name,
    create_intent,
    make_window,
)
from booking.payments import PaymentActionRequired
from booking.repair import release_slots, resync_spot
from booking.runtime import REDIS_DOWN
from booking.settlement import capture_basis, change_fees, settle_quietly
from core.errors import (
    Conflict,
    HoldExpired,
    NotFound,
    PaymentFailed,
    PlateConflict,
    SoldOut,
    ValidationFailed,
)
from core.money import Money
from core.vocabulary import Window


async def _lot(conn: AsyncConnection, lot_id: uuid.UUID) -> Any:
    row = (await conn.execute(q.LOT_FOR_BOOKING, {"lot_id": lot_id})).first()
    if row is None:
        raise NotFound(f"lot {lot_id} not found")
    return row


async def _locked(conn: AsyncConnection, reservation_id: uuid.UUID, user_id: uuid.UUID | None) -> Any:
    row = (await conn.execute(q.RESERVATION_FOR_UPDATE, {"id": reservation_id})).first()
    if row is None or (user_id is not None and row.user_id != user_id):
        raise NotFound(f"reservation {reservation_id} not found")
    return row


async def create_payment_intent(*, deps: BookingDeps, reservation_id: uuid.UUID) -> str | None:
    """Create (idempotently) the PaymentIntent of a held reservation; returns its client secret."""
    async with deps.engine.begin() as conn:
        row = await _locked(conn, reservation_id, None)
        if row.price_amount == 0:
            return None
        intent = await create_intent(deps, reservation_id=row.id, lot_id=row.lot_id, amount=int(row.price_amount),
                                     currency=row.currency.strip())
        # The intent id is stored before anything depends on it (webhooks look it up).
        await conn.execute(q.INSERT_PAYMENT, {"lot_id": row.lot_id, "reservation_id": row.id,
                                              "provider": deps.payments.name, "intent_id": intent.intent_id,
                                              "status": intent.status, "amount": int(row.price_amount),
                                              "currency": row.currency.strip()})
    return intent.client_secret


async def confirm(*, deps: BookingDeps, reservation_id: uuid.UUID, user_id: uuid.UUID | None, payment_token: str,
                  now: datetime) -> None:
    """held -> confirmed after the payment is authorised (402 when declined; 409 when the hold expired)."""
    expired = False
    async with deps.engine.begin() as conn:
        row = await _locked(conn, reservation_id, user_id)
        lc.check_transition(row.status, lc.CONFIRMED)
        if row.hold_expires_at <= now:
            await conn.execute(q.SET_STATUS, {"id": row.id, "status": lc.EXPIRED, "expected": lc.HELD, "now": now})
            expired = True
        else:
            if row.price_amount > 0:
                pay = (await conn.execute(q.PAYMENT_FOR_RESERVATION, {"lot_id": row.lot_id,
                                                                     "reservation_id": row.id})).first()
                if pay is None:
                    raise Conflict("no payment intent for this reservation")
                result = await deps.payments.authorize(intent_id=pay.intent_id, payment_method=payment_token,
                                                       amount=int(pay.amount),
                                                       idempotency_key=f"reservation:{row.id}:authorize:{payment_token}")
                if result.status == "requires_action":  # 3-D Secure: the app acts, then confirms again
                    raise PaymentActionRequired.of(result)
                if result.status != "requires_capture":
                    await conn.execute(q.PAYMENT_STATUS, {"lot_id": row.lot_id, "id": pay.id, "status": result.status,
                                                          "now": now})
                    raise PaymentFailed(f"payment not authorised: {result.decline_code or result.status}",
                                        decline_code=result.decline_code)
                await conn.execute(q.PAYMENT_AUTHORISED, {"lot_id": row.lot_id, "id": pay.id,
                                                          "amount": int(pay.amount), "now": now})
            await conn.execute(q.SET_STATUS, {"id": row.id, "status": lc.CONFIRMED, "expected": lc.HELD, "now": now})
    if expired:
        await release_slots(deps, row.lot_id, row.id)
        await settle_quietly(deps=deps, reservation_id=row.id, now=now)  # cancels the intent of the expired hold
        raise HoldExpired()
    if deps.slots is not None and deps.breaker.available():
        try:  # keep the release handle as long as the reservation can still free its slots
            await deps.slots.keep_hold(lot_id=str(row.lot_id), hold_id=str(row.id), until=row.ends_at)
        except REDIS_DOWN as exc:
            deps.breaker.trip(exc)


async def cancel(*, deps: BookingDeps, reservation_id: uuid.UUID, user_id: uuid.UUID | None, now: datetime,
                 refund_policy: RefundPolicy | None = None) -> Money:
    """held|confirmed -> cancelled, committed first; then the money follows (fee captured or the authorisation
    voided, or a refund after capture) through settlement, whose idempotency keys make a retry after a lost
    provider reply replay the same call. Returns the refund the policy grants."""
    policy = refund_policy or deps.refund_policy
    async with deps.engine.begin() as conn:
        row = await _locked(conn, reservation_id, user_id)
        lc.check_transition(row.status, lc.CANCELLED)
        refund = 0
        pay = (await conn.execute(q.PAYMENT_FOR_RESERVATION, {"lot_id": row.lot_id, "reservation_id": row.id})).first()
        if pay is not None and pay.amount_authorised > 0:
            # the policy applies to what the reservation costs (price + change fees); the refund is everything
            # of the authorisation not kept: voided before capture, refunded after
            paid = capture_basis(authorised=int(pay.amount_authorised), price=int(row.price_amount),
                                 fees=await change_fees(conn, row.id))
            keep = paid - max(0, min(paid, await policy(conn, row, paid, now)))
            refund = int(pay.amount_authorised) - keep
            if pay.amount_captured > 0:  # already captured: what exceeds the fee kept, once
                refund = max(0, int(pay.amount_captured) - keep) if pay.amount_refunded == 0 else 0
        await conn.execute(q.SET_STATUS, {"id": row.id, "status": lc.CANCELLED, "expected": row.status, "now": now})
    await release_slots(deps, row.lot_id, row.id)
    if pay is not None:
        # a failure here is retried by the settlement sweeper
        await settle_quietly(deps=deps, reservation_id=row.id, now=now)
    return Money(refund, row.currency.strip())


async def get_reservation(conn: AsyncConnection, *, reservation_id: uuid.UUID,
                          user_id: uuid.UUID | None) -> Any:
    """A reservation row with its spot and payment; someone else's answers 404."""
    row = (await conn.execute(q.RESERVATION_BY_ID, {"id": reservation_id})).first()
    if row is None or (user_id is not None and row.user_id != user_id):
        raise NotFound(f"reservation {reservation_id} not found")
    return row


async def list_reservations(conn: AsyncConnection, *, user_id: uuid.UUID, status: str | None, limit: int,
                            after: tuple[datetime, uuid.UUID] | None) -> list[Any]:
    rows = await conn.execute(q.RESERVATIONS_OF_USER, {
        "user_id": user_id, "status": status, "limit": limit,
        "after_created": after[0] if after else None, "after_id": after[1] if after else None})
    return list(rows)


async def check_in(*, deps: BookingDeps, reservation_id: uuid.UUID, now: datetime) -> None:
    """confirmed -> active at the entry gate."""
    async with deps.engine.begin() as conn:
        row = await _locked(conn, reservation_id, None)
        lc.check_transition(row.status, lc.ACTIVE)
        await conn.execute(q.SET_ACTIVE, {"id": row.id, "now": now})
    await settle_quietly(deps=deps, reservation_id=row.id, now=now)  # captures now when the lot captures at start


async def check_out(*, deps: BookingDeps, reservation_id: uuid.UUID, now: datetime) -> None:
    """active -> completed at the exit gate; an early departure frees the remaining slots."""
    async with deps.engine.begin() as conn:
        row = await _locked(conn, reservation_id, None)
        lc.check_transition(row.status, lc.COMPLETED)
        await conn.execute(q.SET_COMPLETED, {"id": row.id, "now": now})
    if now < row.ends_at:
        await release_slots(deps, row.lot_id, row.id, from_=now)
    # captures at exit (a failure is retried by the sweeper)
    await settle_quietly(deps=deps, reservation_id=row.id, now=now)


#: makes a reservation's money follow its re-priced window, inside the change's transaction (booking.amendments)
MoneyFollower = Callable[[AsyncConnection, Any, Priced], Awaitable[None]]


async def change_window(*, deps: BookingDeps, reservation_id: uuid.UUID, user_id: uuid.UUID | None,
                        starts_at: datetime, ends_at: datetime, now: datetime,
                        money: MoneyFollower | None = None) -> None:
    """Extend or shorten a reservation on its own spot; PostgreSQL's constraint decides, Redis is repaired.

    An extension happens only if the spot is free for the added slots (409 sold-out otherwise). The price
    becomes the new window's; `money` (booking.amendments) moves the payment in the same transaction, so a
    refused payment changes nothing. After the change the hold record no longer describes the bits, so it is
    dropped: later releases repair the spot from PostgreSQL instead of trusting stale ranges.
    """
    async with deps.engine.begin() as conn:
        row = await _locked(conn, reservation_id, user_id)
        if row.status not in (lc.HELD, lc.CONFIRMED, lc.ACTIVE):
            raise Conflict(f"a {row.status} reservation cannot change its window")
        if row.status == lc.ACTIVE and starts_at != row.starts_at:
            raise ValidationFailed("an active reservation can only change its end", loc=("body", "starts_at"))
        lot = await _lot(conn, row.lot_id)
        window = make_window(starts_at, ends_at, now=now if row.status != lc.ACTIVE else row.starts_at,
                             max_span=deps.max_window, horizon_days=lot.booking_horizon_days)
        priced = await deps.pricer(conn, row.lot_id, row.vehicle_type, window, None)
        try:
            async with conn.begin_nested():
                await conn.execute(q.CHANGE_WINDOW, {
                    "id": row.id, "status": row.status, "starts_at": window.starts_at, "ends_at": window.ends_at,
                    "slot_start": window.slot_start, "slot_end": window.slot_end, "now": now,
                    "price": priced.price.amount if money is not None or row.status == lc.HELD else row.price_amount,
                    "quote": json.dumps(priced.quote) if priced.quote is not None else None})
        except IntegrityError as exc:
            if constraint_name(exc) == PLATE_GUARD:
                raise PlateConflict() from None
            if constraint_name(exc) == SPOT_GUARD:
                raise SoldOut("the spot is not free for the new window") from None
            raise
        if money is not None:
            await money(conn, row, priced)
        spot_idx = (await conn.execute(q.RESERVATION_SLOTS, {"id": row.id})).one().idx
    old = Window(row.starts_at, row.ends_at, row.starts_at, row.ends_at)
    await resync_spot(deps, row.lot_id, row.id, spot_idx, old, window)

