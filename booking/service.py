"""Holds, confirmations, cancellations and window changes: Redis decides first, PostgreSQL last.

The write path (docs/design.md): a Lua hold in Redis claims a spot's slot bits, then the reservation
row is inserted in PostgreSQL in the same request. If PostgreSQL refuses (Redis was stale), the
bits are released, that spot is repaired from PostgreSQL and the next spot is tried. When Redis
cannot answer, a PostgreSQL-only path (per-lot advisory lock, candidate query, exclusion
constraint) serves the request.
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, Protocol, cast

import asyncpg
import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from booking import lifecycle as lc
from booking import queries as q
from booking.holdwriter import HoldWriter
from booking.payments import IntentResult, PaymentActionRequired, PaymentProvider
from booking.runtime import REDIS_DOWN, RedisBreaker, log
from booking.slots import compatible_types, widen
from booking.slotstore import SlotStateMissing, SlotStore
from core.db import LazyReads
from core.errors import (
    Conflict,
    HoldExpired,
    NotFound,
    PaymentFailed,
    PlateConflict,
    ServiceUnavailable,
    SoldOut,
    TooManyRequests,
    ValidationFailed,
)
from core.money import Money
from core.security import normalise_plate, plate_hash
from core.vocabulary import Window

#: spots tried per hold before giving up (Redis path: stale spots; PostgreSQL-only path: spots taken meanwhile)
MAX_SPOT_ATTEMPTS = 6
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


def _constraint(exc: IntegrityError | asyncpg.IntegrityConstraintViolationError) -> str | None:
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


async def _lot(conn: AsyncConnection, lot_id: uuid.UUID) -> Any:
    row = (await conn.execute(q.LOT_FOR_BOOKING, {"lot_id": lot_id})).first()
    if row is None:
        raise NotFound(f"lot {lot_id} not found")
    return row


async def hold(*, deps: BookingDeps, user_id: uuid.UUID | None, lot_id: uuid.UUID, vehicle_type: str,
               starts_at: datetime, ends_at: datetime, plate: str | None, now: datetime,
               quote_token: str | None = None, idempotency_key: str | None = None,
               kind: str = "reservation", status: str = lc.HELD, discount_code: str | None = None) -> uuid.UUID:
    """Hold a compatible spot for the window; returns the reservation id (409 sold-out / plate-conflict)."""
    held = await hold_reservation(deps=deps, user_id=user_id, lot_id=lot_id, vehicle_type=vehicle_type,
                                  starts_at=starts_at, ends_at=ends_at, plate=plate, now=now, quote_token=quote_token,
                                  idempotency_key=idempotency_key, kind=kind, status=status,
                                  discount_code=discount_code)
    return held.id


@dataclass(frozen=True)
class Held:
    """A new hold: its id, its row as RESERVATION_BY_ID reads it, and its PaymentIntent's client secret
    (None when the hold is free)."""

    id: uuid.UUID
    row: Any
    client_secret: str | None


@dataclass(frozen=True)
class KeyRecord:
    """An Idempotency-Key to record with a hold, in the same statement (docs/adr/0015): `scope` is whose key and
    for what route, `request_hash` the request's body digest. A key already recorded fails the hold's write."""

    scope: str
    request_hash: str


async def hold_reservation(*, deps: BookingDeps, user_id: uuid.UUID | None, lot_id: uuid.UUID, vehicle_type: str,
                           starts_at: datetime, ends_at: datetime, plate: str | None, now: datetime,
                           quote_token: str | None = None, idempotency_key: str | None = None,
                           kind: str = "reservation", status: str = lc.HELD,
                           discount_code: str | None = None, key_record: KeyRecord | None = None) -> Held:
    """`hold`, answering the new row too; a priced hold is created with its PaymentIntent. With `key_record`
    (and `idempotency_key`), the key's row is written by the hold's own statement."""
    if key_record is not None and not idempotency_key:
        raise ValueError("a key record needs its idempotency_key")
    if discount_code and deps.discount_lock:
        # A code's max_uses is counted from committed reservations: holds using one code in one lot take
        # turns (a session advisory lock on its own connection), so counting and inserting are not raced.
        async with deps.engine.connect() as locker:
            locker = await locker.execution_options(isolation_level="AUTOCOMMIT")
            key = {"k": f"discount:{lot_id}:{discount_code.upper()}"}
            await locker.execute(q.CODE_LOCK, key)
            try:
                return await _hold_reservation(
                    deps=deps, user_id=user_id, lot_id=lot_id, vehicle_type=vehicle_type, starts_at=starts_at,
                    ends_at=ends_at, plate=plate, now=now, quote_token=quote_token, idempotency_key=idempotency_key,
                    kind=kind, status=status, discount_code=discount_code, key_record=key_record)
            finally:
                await locker.execute(q.CODE_UNLOCK, key)
    return await _hold_reservation(
        deps=deps, user_id=user_id, lot_id=lot_id, vehicle_type=vehicle_type, starts_at=starts_at, ends_at=ends_at,
        plate=plate, now=now, quote_token=quote_token, idempotency_key=idempotency_key, kind=kind, status=status,
        discount_code=discount_code, key_record=key_record)


async def _hold_reservation(*, deps: BookingDeps, user_id: uuid.UUID | None, lot_id: uuid.UUID, vehicle_type: str,
                            starts_at: datetime, ends_at: datetime, plate: str | None, now: datetime,
                            quote_token: str | None, idempotency_key: str | None, kind: str, status: str,
                            discount_code: str | None, key_record: KeyRecord | None) -> Held:
    compatible_types(vehicle_type)  # validates the type (422 naming vehicle_type)
    normalised = normalise_plate(plate) if plate else None
    p_hash = plate_hash(deps.secret, normalised) if normalised else None
    # The lot and its card as this process last read them: the write refuses if either row changed since, and
    # the hold is decided again from a fresh read; a refusal decided from a remembered copy is confirmed on one.
    info, fresh = deps.lots.get(lot_id), False
    for _ in range(3):
        if info is None:
            info, fresh = await _read_lot(deps, lot_id), True
        try:
            _refuse_closed(info.status)
            window = make_window(starts_at, ends_at, now=now, max_span=deps.max_window,
                                 horizon_days=info.booking_horizon_days)
            async with LazyReads(deps.pg) as reads:  # the pricer reads only what the card does not say
                priced = await deps.pricer(cast(AsyncConnection, reads), lot_id, vehicle_type, window, quote_token,
                                           discount_code=discount_code, lot=info)
        except (Conflict, ValidationFailed):
            if fresh:
                raise
            info = None
            continue
        row: dict[str, Any] = {
            "lot_id": lot_id, "id": uuid.uuid4(), "kind": kind, "user_id": user_id, "vehicle_type": vehicle_type,
            "plate": normalised, "plate_hash": p_hash, "starts_at": window.starts_at, "ends_at": window.ends_at,
            "slot_start": window.slot_start, "slot_end": window.slot_end, "status": status,
            "hold_expires_at": now + deps.hold_ttl if status == lc.HELD else None,
            "price": priced.price.amount, "currency": priced.price.currency,
            "quote": orjson.dumps(priced.quote).decode() if priced.quote is not None else None, "idem": idempotency_key,
            "now": now, "lot_version": info.lot_version, "card_row_version": info.card_row_version,
            "key_scope": key_record.scope if key_record else None,
            "request_hash": key_record.request_hash if key_record else None,
        }
        payment = _Payment(deps, row)
        try:
            inserted: Any = _GAVE_UP
            if deps.use_redis and deps.slots is not None and deps.breaker.available():
                try:
                    inserted = await _hold_via_redis(deps, row, window, payment)
                except REDIS_DOWN as exc:
                    deps.breaker.trip(exc)
            if inserted is _GAVE_UP:
                inserted = await _hold_via_postgres(deps, info, row, window, payment)
        except _LotChanged as changed:  # the write remembered the fresh copy
            await payment.void()
            info, fresh = changed.fresh, True
            continue
        except Exception:
            await payment.void()
            raise
        # the quote as the caller priced it: asyncpg hands jsonb back as text
        return Held(row["id"], SimpleNamespace(**{**inserted, "quote": priced.quote}), payment.client_secret)
    raise ServiceUnavailable("the lot is being changed; retry shortly")


@dataclass(frozen=True)
class LotInfo:
    """What a hold reads of its lot (HOLD_LOT), with the row versions of the lot and of its rate card that its
    write checks: remembered per process (LotInfos), so a hold usually reads nothing before Redis decides."""

    status: str
    ev_overflow: bool
    booking_horizon_days: int
    timezone: str
    lot_version: str
    card_body: str | None
    card_version: int | None
    card_row_version: str | None

    @classmethod
    def of(cls, record: Any) -> LotInfo:
        return cls(record["status"], record["ev_overflow"], record["booking_horizon_days"], record["timezone"],
                   record["lot_version"], record["card_body"], record["card_version"], record["card_row_version"])


class LotInfos:
    """The LotInfo of recently held lots, per process, least recently read dropped first. Nothing here is
    trusted blindly: every hold's write compares the row versions, so an entry is never stale for longer
    than one refused write, and there is no expiry to tune."""

    def __init__(self, max_entries: int = 20_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[uuid.UUID, LotInfo] = OrderedDict()

    def get(self, lot_id: uuid.UUID) -> LotInfo | None:
        return self._entries.get(lot_id)

    def put(self, lot_id: uuid.UUID, info: LotInfo) -> None:
        self._entries[lot_id] = info
        self._entries.move_to_end(lot_id)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class _LotChanged(Exception):
    """A hold's write was refused because the lot or its card changed after they were read: decide again."""

    def __init__(self, fresh: LotInfo) -> None:
        self.fresh = fresh


async def _read_lot(deps: BookingDeps, lot_id: uuid.UUID) -> LotInfo:
    async with (await deps.pg()).acquire() as con:  # a read only: autocommit, no BEGIN and ROLLBACK round trips
        record = await con.fetchrow(q.HOLD_LOT, lot_id, None, None)
    if record is None:
        raise NotFound(f"lot {lot_id} not found")
    info = LotInfo.of(record)
    deps.lots.put(lot_id, info)
    return info


_GAVE_UP = object()


class _Payment:
    """A priced hold's PaymentIntent: created once, just before the first write that records it (the provider's
    idempotency key makes a retry get the same intent); voided when the hold fails after creating it."""

    def __init__(self, deps: BookingDeps, row: dict[str, Any]) -> None:
        self.deps, self.row = deps, row
        self.intent: IntentResult | None = None

    @property
    def client_secret(self) -> str | None:
        return self.intent.client_secret if self.intent is not None else None

    async def columns(self) -> tuple[str | None, str | None, str | None]:
        """HOLD_WRITE's provider, intent id and status (all None for a hold that is not paid for)."""
        if self.row["status"] != lc.HELD or self.row["price"] == 0:
            return None, None, None
        if self.intent is None:
            self.intent = await _create_intent(self.deps, reservation_id=self.row["id"], lot_id=self.row["lot_id"],
                                               amount=self.row["price"], currency=self.row["currency"])
        return self.deps.payments.name, self.intent.intent_id, self.intent.status

    async def void(self) -> None:
        if self.intent is None:
            return
        try:
            await self.deps.payments.cancel(intent_id=self.intent.intent_id,
                                            idempotency_key=f"reservation:{self.row['id']}:cancel")
        except Exception as exc:  # never recorded, never authorised: an orphan intent moves no money
            log.warning("hold_intent_not_voided", intent_id=self.intent.intent_id, error=repr(exc)[:200])


def _params(deps: BookingDeps, row: dict[str, Any], idx: int,
            payment: tuple[str | None, str | None, str | None], client_secret: str | None = None) -> tuple[Any, ...]:
    """HOLD_WRITE's parameters ($1..$28) for the hold `row` on spot `idx`."""
    counted = row["user_id"] is not None and row["status"] == lc.HELD
    return (row["lot_id"], row["id"], row["kind"], row["user_id"], row["vehicle_type"], row["plate"],
            row["plate_hash"], row["starts_at"], row["ends_at"], row["slot_start"], row["slot_end"], row["status"],
            row["hold_expires_at"], row["price"], row["currency"], row["quote"], row["idem"], row["now"], idx,
            deps.max_holds_per_user if counted else None, *payment, row["lot_version"], row["card_row_version"],
            row.get("key_scope"), row.get("request_hash"), client_secret)


async def _write(con: asyncpg.Connection, deps: BookingDeps, row: dict[str, Any], idx: int,
                 payment: _Payment) -> asyncpg.Record:
    """HOLD_WRITE on spot `idx`; a refusal by the lot's status or the driver's unpaid holds raises its error."""
    counted = row["user_id"] is not None and row["status"] == lc.HELD
    written = await con.fetchrow(q.HOLD_WRITE, *_params(deps, row, idx, await payment.columns(),
                                                         payment.client_secret))
    if written is None:
        why = await con.fetchrow(q.HOLD_LOT, row["lot_id"], row["user_id"] if counted else None, row["now"])
        if why is None:
            raise NotFound(f"lot {row['lot_id']} not found")
        fresh = LotInfo.of(why)
        if (fresh.lot_version, fresh.card_row_version) != (row["lot_version"], row["card_row_version"]):
            deps.lots.put(row["lot_id"], fresh)
            raise _LotChanged(fresh)
        _refuse_closed(why["status"])
        _refuse_too_many(deps, why["unpaid"])
        raise RuntimeError(f"spot {idx} of lot {row['lot_id']} is gone")  # spots are never deleted
    return written


def _refuse_closed(status: str) -> None:
    if status != "open":
        raise Conflict("this lot is closed", loc=["body", "lot_id"])


def _refuse_too_many(deps: BookingDeps, unpaid: int) -> None:
    if unpaid >= deps.max_holds_per_user:
        raise TooManyRequests(f"at most {deps.max_holds_per_user} unpaid holds per driver", retry_after=60)


async def load_missing_lot(deps: BookingDeps, lot_id: uuid.UUID, now: datetime) -> None:
    """Rebuild a lot Redis does not know, once per process however many requests noticed it."""
    assert deps.slots is not None
    from booking.reconcile import rebuild_lot

    async with deps.breaker.rebuild_lock(lot_id):
        if not await deps.slots.redis.exists(deps.slots.keys.meta(str(lot_id))):
            await rebuild_lot(engine=deps.engine, slots=deps.slots, lot_id=lot_id, now=now)


async def _hold_via_redis(deps: BookingDeps, row: dict[str, Any], window: Window, payment: _Payment) -> Any:
    """Redis picks the spot; PostgreSQL confirms (the new row). _GAVE_UP means 'use the SQL path'."""
    assert deps.slots is not None
    lot_key, hold_id = str(row["lot_id"]), str(row["id"])
    await rebuild_if_dirty(deps, row["lot_id"], row["now"])
    exclude: list[int] = []
    for _ in range(MAX_SPOT_ATTEMPTS):
        try:
            idx = await deps.slots.hold(lot_id=lot_key, hold_id=hold_id, vehicle_type=row["vehicle_type"],
                                        starts_at=window.slot_start, ends_at=window.slot_end, exclude=exclude)
        except SlotStateMissing:
            await load_missing_lot(deps, row["lot_id"], row["now"])  # never loaded (or evicted): load it now
            continue
        if idx is None:
            raise SoldOut()
        try:
            if deps.writer is not None:  # with the holds ready at the same moment (booking.holdwriter)
                written = await deps.writer.write(_params(deps, row, idx, await payment.columns(),
                                                          payment.client_secret))
                if written is not None:
                    return written
            async with (await deps.pg()).acquire() as con:  # alone: autocommit, the statement is its transaction
                return await _write(con, deps, row, idx, payment)
        except (asyncpg.IntegrityConstraintViolationError, asyncpg.DeadlockDetectedError) as exc:
            await deps.slots.release(lot_id=lot_key, hold_id=hold_id)
            # Two writers of one spot that each wait on the other's uncommitted row (an exclusion constraint
            # checks after inserting) are a deadlock, and PostgreSQL aborts one: for it, the spot was taken.
            guard = SPOT_GUARD if isinstance(exc, asyncpg.DeadlockDetectedError) else _constraint(exc)
            if guard == PLATE_GUARD:
                raise PlateConflict() from None
            if guard != SPOT_GUARD:
                raise
            # Redis was stale for this spot: make it exact from PostgreSQL and try the next one.
            from booking.reconcile import repair_spot

            await repair_spot(engine=deps.engine, slots=deps.slots, lot_id=row["lot_id"], spot_idx=idx,
                              window=window)
            exclude.append(idx)
        except Exception:
            await deps.slots.release(lot_id=lot_key, hold_id=hold_id)
            raise
    log.warning("redis_stale_falling_back", lot_id=lot_key, excluded=exclude)
    return _GAVE_UP


async def _hold_via_postgres(deps: BookingDeps, lot: LotInfo, row: dict[str, Any], window: Window,
                             payment: _Payment) -> Any:
    """Per-lot advisory lock, candidate query, insert; the exclusion constraint still guards. Holds placed by
    Redis do not take the lock: when one takes the candidate first, the next candidate is tried."""
    types = list(compatible_types(row["vehicle_type"], ev_overflow=lot.ev_overflow))
    await payment.columns()  # a provider call never waits inside the lot's lock
    for _ in range(MAX_SPOT_ATTEMPTS):
        try:
            async with (await deps.pg()).acquire() as con, con.transaction():
                await con.execute("SET LOCAL lock_timeout = '3000ms'")
                if deps.pg_lot_lock:
                    await con.execute(q.LOT_ADVISORY_LOCK, row["lot_id"])
                idx = await con.fetchval(q.FREE_SPOT_CANDIDATE, row["lot_id"], types, window.slot_start,
                                         window.slot_end)
                if idx is None:
                    raise SoldOut()
                inserted = await _write(con, deps, row, idx, payment)
        except asyncpg.DeadlockDetectedError:
            continue  # another writer of the candidate won (see _hold_via_redis): the next candidate
        except asyncpg.IntegrityConstraintViolationError as exc:
            if _constraint(exc) == PLATE_GUARD:
                raise PlateConflict() from None
            if _constraint(exc) != SPOT_GUARD:
                raise
            continue
        except asyncpg.LockNotAvailableError:
            raise ServiceUnavailable("the lot is busy; retry shortly") from None
        await repair_spot_or_mark(deps, row["lot_id"], idx, window)
        return inserted
    raise ServiceUnavailable("the lot is busy; retry shortly")


async def repair_spot_or_mark(deps: BookingDeps, lot_id: uuid.UUID, spot_idx: int, window: Window, *,
                              drop_hold: uuid.UUID | None = None) -> None:
    """Make one spot's bits what PostgreSQL says (after a booking Redis did not make, or changed bits);
    when Redis cannot be used now, mark the whole lot for a rebuild before Redis is trusted for it again.
    `drop_hold` removes a hold record whose ranges no longer describe the bits."""
    if deps.slots is not None and deps.use_redis and deps.breaker.available():
        from booking.reconcile import repair_spot

        try:
            if drop_hold is not None:
                await deps.slots.redis.delete(deps.slots.keys.hold(str(lot_id), str(drop_hold)))
            await repair_spot(engine=deps.engine, slots=deps.slots, lot_id=lot_id, spot_idx=spot_idx, window=window)
            return
        except SlotStateMissing:
            return  # the lot is not loaded: its next use rebuilds it whole from PostgreSQL
        except REDIS_DOWN as exc:
            deps.breaker.trip(exc)
    deps.breaker.dirty_lots.add(lot_id)


async def rebuild_if_dirty(deps: BookingDeps, lot_id: uuid.UUID, now: datetime) -> None:
    """Before trusting Redis for a lot this process booked without it, rebuild that lot from PostgreSQL."""
    if deps.slots is not None and lot_id in deps.breaker.dirty_lots:
        from booking.reconcile import rebuild_lot

        async with deps.breaker.rebuild_lock(lot_id):
            if lot_id in deps.breaker.dirty_lots:
                await rebuild_lot(engine=deps.engine, slots=deps.slots, lot_id=lot_id, now=now)
                deps.breaker.dirty_lots.discard(lot_id)


async def release_slots(deps: BookingDeps, lot_id: uuid.UUID, reservation_id: uuid.UUID,
                        from_: datetime | None = None) -> bool:
    """Free a reservation's bits in Redis (idempotent). Redis trouble is left to the reconciler.

    A reservation booked on the PostgreSQL-only path, or whose bits came from a rebuild, has no
    hold record to release by: its spot is repaired from PostgreSQL instead (the new status is
    already committed there, so the repair clears exactly its bits).
    """
    if deps.slots is None:
        return False
    if not deps.use_redis or not deps.breaker.available():
        deps.breaker.dirty_lots.add(lot_id)  # rebuilt before this process trusts Redis for the lot again
        return False
    try:
        if await deps.slots.release(lot_id=str(lot_id), hold_id=str(reservation_id), from_=from_):
            return True
        async with deps.engine.connect() as conn:
            row = (await conn.execute(q.RESERVATION_SLOTS, {"id": reservation_id})).first()
        if row is not None:
            from booking.reconcile import repair_spot

            window = Window(row.slot_start, row.slot_end, row.slot_start, row.slot_end)
            await repair_spot(engine=deps.engine, slots=deps.slots, lot_id=lot_id, spot_idx=row.idx, window=window)
        return False
    except SlotStateMissing:
        return False  # the lot is not loaded in Redis: its next use rebuilds it from PostgreSQL
    except REDIS_DOWN as exc:
        deps.breaker.trip(exc)
        deps.breaker.dirty_lots.add(lot_id)
        return False


async def _locked(conn: AsyncConnection, reservation_id: uuid.UUID, user_id: uuid.UUID | None) -> Any:
    row = (await conn.execute(q.RESERVATION_FOR_UPDATE, {"id": reservation_id})).first()
    if row is None or (user_id is not None and row.user_id != user_id):
        raise NotFound(f"reservation {reservation_id} not found")
    return row


async def _create_intent(deps: BookingDeps, *, reservation_id: uuid.UUID, lot_id: uuid.UUID, amount: int,
                         currency: str) -> IntentResult:
    """The provider's PaymentIntent of a reservation, idempotent by a key derived from its id."""
    return await deps.payments.create_intent(
        amount=amount, currency=currency, idempotency_key=f"reservation:{reservation_id}:intent",
        metadata={"reservation_id": str(reservation_id), "lot_id": str(lot_id)})


async def create_payment_intent(*, deps: BookingDeps, reservation_id: uuid.UUID) -> str | None:
    """Create (idempotently) the PaymentIntent of a held reservation; returns its client secret."""
    async with deps.engine.begin() as conn:
        row = await _locked(conn, reservation_id, None)
        if row.price_amount == 0:
            return None
        intent = await _create_intent(deps, reservation_id=row.id, lot_id=row.lot_id, amount=int(row.price_amount),
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
        from booking.settlement import settle_quietly  # cancels the intent of the expired hold

        await settle_quietly(deps=deps, reservation_id=row.id, now=now)
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
            from booking.amendments import capture_basis, change_fees

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
        from booking.settlement import settle_quietly  # a failure here is retried by the settlement sweeper

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
    from booking.settlement import settle_quietly  # captures now when the lot captures at start

    await settle_quietly(deps=deps, reservation_id=row.id, now=now)


async def check_out(*, deps: BookingDeps, reservation_id: uuid.UUID, now: datetime) -> None:
    """active -> completed at the exit gate; an early departure frees the remaining slots."""
    async with deps.engine.begin() as conn:
        row = await _locked(conn, reservation_id, None)
        lc.check_transition(row.status, lc.COMPLETED)
        await conn.execute(q.SET_COMPLETED, {"id": row.id, "now": now})
    if now < row.ends_at:
        await release_slots(deps, row.lot_id, row.id, from_=now)
    from booking.settlement import settle_quietly  # captures at exit (a failure is retried by the sweeper)

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
            if _constraint(exc) == PLATE_GUARD:
                raise PlateConflict() from None
            if _constraint(exc) == SPOT_GUARD:
                raise SoldOut("the spot is not free for the new window") from None
            raise
        if money is not None:
            await money(conn, row, priced)
        spot_idx = (await conn.execute(q.RESERVATION_SLOTS, {"id": row.id})).one().idx
    old = Window(row.starts_at, row.ends_at, row.starts_at, row.ends_at)
    await _resync_spot(deps, row.lot_id, row.id, spot_idx, old, window)


async def _resync_spot(deps: BookingDeps, lot_id: uuid.UUID, reservation_id: uuid.UUID, spot_idx: int,
                       old: Window, new: Window) -> None:
    start, end = min(old.slot_start, new.slot_start), max(old.slot_end, new.slot_end)
    await repair_spot_or_mark(deps, lot_id, spot_idx, Window(start, end, start, end), drop_hold=reservation_id)
