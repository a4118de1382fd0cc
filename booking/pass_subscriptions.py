"""Monthly passes drivers buy (FR-7): priced by the lot's card, charged at purchase and at each renewal.

A subscription holds the plate, the price and the payment method given at purchase. Each calendar month (in the
lot's time zone) is one monthly_passes row, written unpaid and marked paid in the same transaction once its charge
is captured; the gate honours only paid passes. The renewal sweeper (Celery beat, `passes.renew_due`) charges
each active subscription for the month that has begun; a declined renewal lapses the subscription with a notice
and leaves that month without a pass. Cancelling takes effect at the period's end: the paid month stays valid,
and the next renewal ends the subscription instead of charging.

Every provider call carries an idempotency key derived from (subscription, month), so a retried purchase or a
sweep that ran twice charges a month at most once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from booking import queries as q
from booking.deps import BookingDeps
from core.errors import Conflict, NotFound, PaymentFailed, ValidationFailed
from core.logging import get_logger
from core.security import normalise_plate, plate_hash
from pricing.rates import parse_rate_card

log = get_logger("parkgrid.passes")


def month_of(now: datetime, timezone: str) -> date:
    """The first day of `now`'s calendar month in the lot's time zone."""
    local = now.astimezone(ZoneInfo(timezone))
    return date(local.year, local.month, 1)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


@dataclass(frozen=True)
class Charge:
    ok: bool
    intent_id: str | None
    decline_code: str | None = None


async def _charge(deps: BookingDeps, conn: AsyncConnection, sub: Any, month: date, now: datetime) -> Charge:
    """Authorise and capture one month of a subscription (keys from the subscription and the month)."""
    key = f"pass:{sub.id}:{month:%Y-%m}"
    amount, currency = int(sub.price_amount), sub.currency.strip()
    intent = await deps.payments.create_intent(
        amount=amount, currency=currency, idempotency_key=f"{key}:intent",
        metadata={"pass_subscription_id": str(sub.id), "lot_id": str(sub.lot_id), "month": f"{month:%Y-%m}"})
    await conn.execute(q.INSERT_PASS_PAYMENT, {"lot_id": sub.lot_id, "provider": deps.payments.name,
                                               "intent_id": intent.intent_id, "status": intent.status,
                                               "amount": amount, "currency": currency})
    auth = await deps.payments.authorize(intent_id=intent.intent_id, payment_method=sub.payment_method,
                                         amount=amount, idempotency_key=f"{key}:authorize")
    if auth.status != "requires_capture":
        return Charge(False, intent.intent_id, auth.decline_code or auth.status)
    captured = await deps.payments.capture(intent_id=intent.intent_id, amount=amount, idempotency_key=f"{key}:capture")
    if captured.status != "succeeded":
        await deps.payments.cancel(intent_id=intent.intent_id, idempotency_key=f"{key}:cancel")
        return Charge(False, intent.intent_id, captured.status)
    await conn.execute(q.PASS_PAYMENT_CAPTURED, {"intent_id": intent.intent_id, "amount": amount, "now": now})
    return Charge(True, intent.intent_id)


async def _paid_pass(deps: BookingDeps, conn: AsyncConnection, sub: Any, month: date, now: datetime) -> Charge:
    """Write `month`'s pass unpaid, charge it, and mark it paid; a decline leaves no pass for the month."""
    row = (await conn.execute(q.INSERT_UNPAID_PASS, {
        "lot_id": sub.lot_id, "user_id": sub.user_id, "plate_hash": sub.plate_hash, "spot_type": sub.spot_type,
        "month": month, "price": sub.price_amount, "currency": sub.currency, "now": now, "sub": sub.id})).first()
    if row is None:
        raise Conflict(f"this plate already has a pass for {month:%Y-%m} at this lot")
    charge = await _charge(deps, conn, sub, month, now)
    if charge.ok:
        await conn.execute(q.MARK_PASS_PAID, {"lot_id": sub.lot_id, "id": row.id, "now": now})
    return charge


async def buy_pass(*, deps: BookingDeps, user_id: uuid.UUID, lot_id: uuid.UUID, plate: str, payment_token: str,
                   spot_type: str | None, now: datetime) -> Any:
    """Subscribe `plate` to monthly passes at a lot and pay the current month (402 when declined: nothing kept;
    422 on lot_id when the lot's card sells no passes; 409 when the plate has a pass this month)."""
    async with deps.engine.begin() as conn:
        lot = (await conn.execute(q.LOT_FOR_PASS, {"lot_id": lot_id})).first()
        if lot is None:
            raise NotFound(f"lot {lot_id} not found")
        card = parse_rate_card(lot.card) if lot.card is not None else None
        if card is None or card.monthly_pass_amount is None:
            raise ValidationFailed("this lot sells no monthly passes (its rate card has no monthly_pass_amount)",
                                   loc=("body", "lot_id"))
        month = month_of(now, lot.timezone)
        sub = (await conn.execute(q.INSERT_SUBSCRIPTION, {
            "lot_id": lot_id, "user_id": user_id, "plate_hash": plate_hash(deps.secret, normalise_plate(plate)),
            "spot_type": spot_type, "price": card.monthly_pass_amount, "currency": card.currency,
            "payment_method": payment_token, "month": month, "now": now})).one()
        full = _with_secret(sub, plate_hash(deps.secret, normalise_plate(plate)), payment_token)
        charge = await _paid_pass(deps, conn, full, month, now)
        if not charge.ok:  # the transaction rolls back: no subscription, no pass
            raise PaymentFailed(f"pass not paid: {charge.decline_code}", decline_code=charge.decline_code)
    return sub


def _with_secret(sub: Any, p_hash: bytes, payment_method: str) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(**sub._mapping, plate_hash=p_hash, payment_method=payment_method)


async def cancel_at_period_end(*, conn: AsyncConnection, user_id: uuid.UUID, subscription_id: uuid.UUID,
                               now: datetime) -> Any:
    """The paid month stays valid; the next renewal ends the subscription (404 for another's or an ended one)."""
    row = (await conn.execute(q.SUBSCRIPTION_CANCEL_AT_END, {"id": subscription_id, "user_id": user_id,
                                                             "now": now})).first()
    if row is None:
        raise NotFound(f"active pass subscription {subscription_id} not found")
    return row


async def renew_due(*, deps: BookingDeps, now: datetime, limit: int = 200) -> dict[str, int]:
    """The renewal sweeper: each active subscription behind its lot's month is renewed (charged), ended (cancelled
    at period end) or lapsed (declined, with a notice). Idempotent; returns counts by outcome."""
    counts = {"renewed": 0, "ended": 0, "lapsed": 0}
    while True:
        async with deps.engine.begin() as conn:
            sub = (await conn.execute(q.SUBSCRIPTIONS_DUE, {"now": now, "limit": 1})).first()
            if sub is None:
                return counts
            month = month_of(now, sub.timezone)
            params = {"lot_id": sub.lot_id, "id": sub.id, "now": now}
            if sub.cancel_at_period_end:
                await conn.execute(q.SUBSCRIPTION_ENDS, {**params, "status": "cancelled",
                                                         "notice": f"ended at the end of {sub.current_month:%Y-%m}"})
                counts["ended"] += 1
                continue
            try:
                async with conn.begin_nested() as attempt:
                    charge = await _paid_pass(deps, conn, sub, month, now)
                    if not charge.ok:
                        await attempt.rollback()  # no unpaid pass is left for the month
            except Conflict:  # the plate already holds this month's pass (an operator sold one): nothing to charge
                charge = Charge(True, None)
            if charge.ok:
                await conn.execute(q.SUBSCRIPTION_RENEWED, {**params, "month": month, "previous": sub.current_month})
                counts["renewed"] += 1
            else:
                notice = (f"renewal for {month:%Y-%m} was declined ({charge.decline_code}); the pass lapsed: "
                          "buy a new one to park on it")
                await conn.execute(q.SUBSCRIPTION_ENDS, {**params, "status": "lapsed", "notice": notice})
                log.info("pass_lapsed", subscription_id=str(sub.id), month=f"{month:%Y-%m}",
                         decline_code=charge.decline_code)
                counts["lapsed"] += 1
        if sum(counts.values()) >= limit:
            return counts
