"""Where a reservation's money should be, given its status and the policy it was sold under, and getting it there.

Policies (snapshotted in the reservation's quote by pricing.service when it was priced):
- capture `at_exit` (default): the authorisation is captured in full when the reservation completes;
  `at_start`: captured when the window starts or the car enters, whichever comes first.
- no-show: the fee (at most the authorisation) is captured and the rest released; if the payment was
  already captured (at_start), everything above the fee is refunded.
- hold expired, or cancelled before capture with nothing to keep: the intent is cancelled.
- cancellation refunds are booking.transitions.cancel with pricing.service.cancellation_refund_policy.

Money moves at most once per intent and kind: every provider call carries an idempotency key derived from
the reservation id, and every database write is a conditional UPDATE that only moves an amount away from 0
(or a status away from a terminal one). Provider truth (call replies and webhooks) goes through the same
`apply_intent_state`, so a webhook racing our own call records the same amounts once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from booking import queries as q
from booking.deps import BookingDeps
from booking.payments import IntentResult
from core.errors import Conflict
from core.logging import get_logger

log = get_logger("parkgrid.payments")


class PaymentEventDeferred(Conflict):
    slug, title = "payment-event-deferred", "Payment event arrived too early"


@dataclass(frozen=True)
class Action:
    kind: str  # "capture" | "cancel" | "refund"
    amount: int = 0


def capture_basis(*, authorised: int, price: int, fees: int) -> int:
    """What a reservation's payment captures in full: its price plus change fees, never above the authorisation."""
    return max(0, min(authorised, price + fees))


async def change_fees(conn: AsyncConnection, reservation_id: uuid.UUID) -> int:
    """Fees kept by earlier shortenings of a reservation (booking.amendments)."""
    return int(await conn.scalar(q.CHANGE_FEES, {"id": reservation_id}) or 0)


def settlement_action(p: Any, *, now: datetime, cancel_keep: int = 0) -> Action | None:
    """The one money move a payment row (booking.queries.PAYMENT_TO_SETTLE) still needs, or None.

    `cancel_keep` is the cancellation fee a cancelled reservation keeps (its policy at `cancelled_at`).
    """
    if p.status == "canceled":
        return None
    authorised, captured, refunded = int(p.amount_authorised), int(p.amount_captured), int(p.amount_refunded)
    status = p.reservation_status
    if status == "cancelled":
        keep = min(cancel_keep, authorised)
        if captured == 0:
            return Action("capture", keep) if keep > 0 else Action("cancel")
        return Action("refund", captured - keep) if refunded == 0 and captured > keep else None
    if status == "expired":
        return Action("cancel") if captured == 0 else None
    at_start = p.capture_policy == "at_start" and (status == "active" or (status == "confirmed" and p.starts_at <= now))
    if status == "completed" or at_start:  # price + change fees (booking.amendments); the rest is released
        basis = int(getattr(p, "capture_basis", authorised))
        return Action("capture", basis) if basis > 0 and captured == 0 else None
    if status == "no_show":
        keep = min(int(p.no_show_fee), authorised)
        if captured == 0:
            return Action("capture", keep) if keep > 0 else Action("cancel")
        if refunded == 0 and captured > keep:
            return Action("refund", captured - keep)
    return None


async def apply_intent_state(conn: AsyncConnection, *, intent_id: str, status: str, now: datetime,
                             amount_capturable: int = 0, amount_received: int = 0,
                             amount_refunded: int | None = None) -> str:
    """Record what the provider says about an intent; idempotent and order-free. Returns an outcome label."""
    params: dict[str, Any] = {"intent_id": intent_id, "now": now}
    if amount_refunded is not None:
        res = await conn.execute(q.INTENT_REFUNDED, {**params, "amount": amount_refunded})
        if res.first():
            return "applied"
        row = (await conn.execute(q.PAYMENT_BY_INTENT, {"intent_id": intent_id})).first()
        if row is None:
            return "unknown_intent"
        # A refund larger than what we know was captured: the capture's event has not arrived yet.
        return "deferred" if amount_refunded > int(row.amount_captured) else "no_change"
    if status == "requires_capture":
        res = await conn.execute(q.INTENT_AUTHORISED, {**params, "amount": amount_capturable})
    elif status == "succeeded":
        res = await conn.execute(q.INTENT_CAPTURED, {**params, "amount": amount_received})
    elif status == "canceled":
        res = await conn.execute(q.INTENT_CANCELED, params)
    elif status in ("requires_payment_method", "requires_action"):
        res = await conn.execute(q.INTENT_FAILED, {**params, "status": status})
    else:
        return "ignored"
    if res.first():
        return "applied"
    row = (await conn.execute(q.PAYMENT_BY_INTENT, {"intent_id": intent_id})).first()
    if row is None:
        return "unknown_intent"
    if row.status == "canceled" and status in ("succeeded", "requires_capture"):
        # A late success after we cancelled (e.g. webhooks delivered out of order): our state stands.
        log.warning("payment_event_after_cancel", intent_id=intent_id, provider_status=status)
        return "ignored_after_cancel"
    return "no_change"


async def _record(conn: AsyncConnection, result: IntentResult, now: datetime) -> None:
    await apply_intent_state(conn, intent_id=result.intent_id, status=result.status, now=now,
                             amount_capturable=result.amount_capturable, amount_received=result.amount_received)


async def settle_reservation(*, deps: BookingDeps, reservation_id: uuid.UUID, now: datetime) -> Action | None:
    """Move the reservation's money to where its status says (at most one provider call); returns what was done."""
    async with deps.engine.begin() as conn:
        p = (await conn.execute(q.PAYMENT_TO_SETTLE, {"reservation_id": reservation_id})).first()
        if p is None:
            return None
        keep = 0
        if p.reservation_status == "cancelled" and int(p.amount_authorised) > 0:
            # the same fee the cancellation computed: the policy evaluated at the moment of cancelling
            paid = int(p.capture_basis)
            shown = SimpleNamespace(id=p.reservation_id, currency=p.currency, starts_at=p.starts_at)
            keep = paid - max(0, min(paid, await deps.refund_policy(conn, shown, paid, p.cancelled_at or now)))
        action = settlement_action(p, now=now, cancel_keep=keep)
        if action is None:
            return None
        key = f"reservation:{reservation_id}:{action.kind}"
        if action.kind == "capture":
            result = await deps.payments.capture(intent_id=p.intent_id, amount=action.amount, idempotency_key=key)
            await _record(conn, result, now)
        elif action.kind == "cancel":
            result = await deps.payments.cancel(intent_id=p.intent_id, idempotency_key=key)
            await _record(conn, result, now)
        else:
            refund = await deps.payments.refund(intent_id=p.intent_id, amount=action.amount, idempotency_key=key)
            await conn.execute(q.PAYMENT_REFUNDED, {"lot_id": p.lot_id, "id": p.id, "amount": refund.amount, "now": now})
    log.info("payment_settled", reservation_id=str(reservation_id), action=action.kind, amount=action.amount)
    return action


async def settle_quietly(*, deps: BookingDeps, reservation_id: uuid.UUID, now: datetime) -> None:
    """settle_reservation for the gate and sweeper paths: a provider failure is logged and left to the sweeper."""
    try:
        await settle_reservation(deps=deps, reservation_id=reservation_id, now=now)
    except Exception as exc:  # never keep a barrier down or stop a sweep over one payment; the sweeper retries
        log.warning("payment_settlement_failed", reservation_id=str(reservation_id), error=repr(exc)[:300])


async def settle_due_payments(*, deps: BookingDeps, now: datetime, limit: int = 500) -> int:
    """The settlement sweeper: settle every reservation whose money lags its status. Idempotent; returns moves made."""
    async with deps.engine.connect() as conn:
        ids = [r.id for r in await conn.execute(q.PAYMENTS_TO_SETTLE, {"now": now, "limit": limit})]
    done = 0
    for rid in ids:
        try:
            done += await settle_reservation(deps=deps, reservation_id=rid, now=now) is not None
        except Exception as exc:  # one failing payment must not stop the others; it stays on the list
            log.warning("payment_settlement_failed", reservation_id=str(rid), error=repr(exc)[:300])
    return done


async def apply_payment_event(conn: AsyncConnection, *, provider: str, event_id: str, event_type: str,
                              intent_id: str | None, state: dict[str, Any] | None, now: datetime) -> str:
    """Apply one provider event at most once (deduplicated by event id in payment_events); returns its outcome."""
    first = (await conn.execute(q.INSERT_PAYMENT_EVENT, {"provider": provider, "event_id": event_id,
                                                         "type": event_type, "intent_id": intent_id,
                                                         "now": now})).first()
    if first is None:
        return "duplicate"
    if intent_id is None or state is None:
        outcome = "ignored"
    else:
        outcome = await apply_intent_state(conn, intent_id=intent_id, now=now, **state)
    if outcome == "deferred":  # not recorded (the caller's transaction rolls back): the provider redelivers it
        raise PaymentEventDeferred(f"event {event_id} arrived before the state it builds on; retry later")
    await conn.execute(q.SET_PAYMENT_EVENT_OUTCOME, {"provider": provider, "event_id": event_id, "outcome": outcome})
    log.info("payment_event", provider=provider, event_id=event_id, type=event_type, outcome=outcome)
    return outcome
