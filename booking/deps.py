"""What every booking function is handed (BookingDeps), and the small pieces the hold, repair, lifecycle and
settlement modules share: pricing and refund hooks, window validation, the guards' names, a reservation's intent.

This module imports no other module of the booking flow (docs/design.md, Layout): they all import it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import asyncpg
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from booking.holdwriter import HoldWriter
from booking.lotinfo import LotInfo, LotInfos
from booking.payments import IntentResult, PaymentProvider
from booking.runtime import RedisBreaker
from booking.slots import widen
from booking.slotstore import SlotStore
from core.errors import ValidationFailed
from core.money import Money
from core.vocabulary import Window

#: the exclusion constraints whose refusal means "the spot is taken" and "this car is booked elsewhere then"
SPOT_GUARD = "reservations_no_double_booking"
PLATE_GUARD = "reservations_one_car_one_reservation"


@dataclass(frozen=True)
class Priced:
    price: Money
    quote: dict[str, Any] | None = None


class Pricer(Protocol):
    """Prices a window for a vehicle type: a valid quote token fixes the total; a discount code applies.

    `conn` only reads, through `execute(...)` (`.first()` or iteration) and `scalar(...)`: a hold passes
    core.db.LazyReads over the raw asyncpg pool, the other callers a SQLAlchemy connection. `lot`, when given,
    is the lot and card as the hold read them (its write checks they did not change): no need to read them."""

    async def __call__(self, conn: AsyncConnection, lot_id: uuid.UUID, vehicle_type: str, window: Window,
                       quote_token: str | None, discount_code: str | None = None,
                       lot: LotInfo | None = None) -> Priced: ...


async def free_pricer(conn: AsyncConnection, lot_id: uuid.UUID, vehicle_type: str, window: Window,
                      quote_token: str | None, discount_code: str | None = None,
                      lot: LotInfo | None = None) -> Priced:
    """Prices nothing: for lots without rates and for tests of the slot logic alone."""
    return Priced(Money(0, "usd"))


#: refund policy: (conn, reservation row, paid amount, now) -> amount to refund
RefundPolicy = Callable[[AsyncConnection, Any, int, datetime], Awaitable[int]]


async def full_refund_policy(conn: AsyncConnection, row: Any, paid: int, now: datetime) -> int:
    """Refund everything: the policy of lots sold without a rate card."""
    return paid


@dataclass
class BookingDeps:
    """What the booking functions need; built by the caller (API, worker, tests)."""

    engine: AsyncEngine
    #: the raw asyncpg pool of the hot paths (AppContext.pg, ADR 0007): a hold's writes go through it
    pg: Callable[[], Awaitable[asyncpg.Pool]]
    slots: SlotStore | None
    breaker: RedisBreaker
    payments: PaymentProvider
    hold_ttl: timedelta
    max_holds_per_user: int
    secret: bytes
    max_window: timedelta = timedelta(days=7)
    pricer: Pricer = free_pricer
    refund_policy: RefundPolicy = full_refund_policy
    use_redis: bool = True
    #: the PostgreSQL-only path's per-lot advisory lock; only a race test's negative control turns it off
    pg_lot_lock: bool = True
    #: holds with one discount code take turns (max_uses); only a race test's negative control turns it off
    discount_lock: bool = True
    #: the lots this process has held in, as last read (booking.wiring.lot_infos shares one per process)
    lots: LotInfos = field(default_factory=lambda: LotInfos())
    #: writes the Redis path's holds in batches (booking.wiring.hold_writer, one per process); None: one by one
    writer: HoldWriter | None = None


def make_window(starts_at: datetime, ends_at: datetime, *, now: datetime, max_span: timedelta,
                horizon_days: int | None = None, loc: str = "body") -> Window:
    """Validate a window against the clock and widen it to whole slots."""
    if starts_at.tzinfo is None:
        raise ValidationFailed("starts_at must carry a timezone offset", loc=(loc, "starts_at"))
    if ends_at.tzinfo is None:
        raise ValidationFailed("ends_at must carry a timezone offset", loc=(loc, "ends_at"))
    if ends_at <= starts_at:
        raise ValidationFailed("ends_at must be after starts_at", loc=(loc, "ends_at"))
    if ends_at - starts_at > max_span:
        raise ValidationFailed(f"a window may last at most {max_span.days} days", loc=(loc, "ends_at"))
    if starts_at < now - timedelta(minutes=15):
        raise ValidationFailed("starts_at is in the past", loc=(loc, "starts_at"))
    if horizon_days is not None and starts_at > now + timedelta(days=horizon_days):
        raise ValidationFailed(f"this lot takes bookings at most {horizon_days} days ahead", loc=(loc, "starts_at"))
    slot_start, slot_end = widen(starts_at, ends_at, max_span=max_span + timedelta(minutes=30))
    return Window(starts_at, ends_at, slot_start, slot_end)


def constraint_name(exc: IntegrityError | asyncpg.IntegrityConstraintViolationError) -> str | None:
    """The constraint that refused a write, from SQLAlchemy's wrapper or asyncpg's own error."""
    orig = getattr(exc, "orig", exc)
    name = getattr(orig, "constraint_name", None) or getattr(getattr(orig, "__cause__", None), "constraint_name", None)
    if name:
        return str(name)
    text_ = str(exc)
    for candidate in (SPOT_GUARD, PLATE_GUARD):
        if candidate in text_:
            return candidate
    return None


async def create_intent(deps: BookingDeps, *, reservation_id: uuid.UUID, lot_id: uuid.UUID, amount: int,
                        currency: str) -> IntentResult:
    """The provider's PaymentIntent of a reservation, idempotent by a key derived from its id."""
    return await deps.payments.create_intent(
        amount=amount, currency=currency, idempotency_key=f"reservation:{reservation_id}:intent",
        metadata={"reservation_id": str(reservation_id), "lot_id": str(lot_id)})
