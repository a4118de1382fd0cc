"""Holds: Redis decides first, PostgreSQL last.

The write path (docs/design.md): a Lua hold in Redis claims a spot's slot bits, then the reservation
row is inserted in PostgreSQL in the same request. If PostgreSQL refuses (Redis was stale), the
bits are released, that spot is repaired from PostgreSQL and the next spot is tried. When Redis
cannot answer, a PostgreSQL-only path (per-lot advisory lock, candidate query, exclusion
constraint) serves the request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from booking import lifecycle as lc
from booking import queries as q
from booking.deps import PLATE_GUARD, SPOT_GUARD, BookingDeps, constraint_name, create_intent, make_window
from booking.lotinfo import LotInfo
from booking.payments import IntentResult
from booking.reconcile import repair_spot
from booking.repair import load_missing_lot, rebuild_if_dirty, repair_spot_or_mark
from booking.runtime import REDIS_DOWN, log
from booking.slots import compatible_types
from booking.slotstore import SlotStateMissing
from core.db import LazyReads
from core.errors import (
    Conflict,
    NotFound,
    PlateConflict,
    ServiceUnavailable,
    SoldOut,
    TooManyRequests,
    ValidationFailed,
)
from core.security import normalise_plate, plate_hash
from core.vocabulary import Window

#: spots tried per hold before giving up (Redis path: stale spots; PostgreSQL-only path: spots taken meanwhile)
MAX_SPOT_ATTEMPTS = 6


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
            self.intent = await create_intent(self.deps, reservation_id=self.row["id"], lot_id=self.row["lot_id"],
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
            # Two writers of one spot that each wait on the other's uncommitted row (an exclusion constraint
            # checks after inserting) are a deadlock, and PostgreSQL aborts one: for it, the spot was taken.
            guard = SPOT_GUARD if isinstance(exc, asyncpg.DeadlockDetectedError) else constraint_name(exc)
            if guard != SPOT_GUARD:
                await deps.slots.release(lot_id=lot_key, hold_id=hold_id)
                if guard == PLATE_GUARD:
                    raise PlateConflict() from None
                raise
            # Redis was stale for this spot: make its bits on the window's days PostgreSQL's (which covers every
            # bit this claim set), then drop the claim's record, and try the next spot. Releasing the claim first
            # would clear the bits for a moment, in which a concurrent hold could claim them and, failing in
            # turn, clear them again after this repair: on a hot window Redis then stayed stale for good.
            try:
                await repair_spot(engine=deps.engine, slots=deps.slots, lot_id=row["lot_id"], spot_idx=idx,
                                  window=window)
            except BaseException:
                await deps.slots.release(lot_id=lot_key, hold_id=hold_id)
                raise
            await deps.slots.forget_hold(lot_id=lot_key, hold_id=hold_id)
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
            if constraint_name(exc) == PLATE_GUARD:
                raise PlateConflict() from None
            if constraint_name(exc) != SPOT_GUARD:
                raise
            continue
        except asyncpg.LockNotAvailableError:
            raise ServiceUnavailable("the lot is busy; retry shortly") from None
        await repair_spot_or_mark(deps, row["lot_id"], idx, window)
        return inserted
    raise ServiceUnavailable("the lot is busy; retry shortly")


