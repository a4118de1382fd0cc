"""What a charger's OCPP messages do (boot, heartbeat, status, id tags, transactions, meter values) and what
charging adds to a car's exit fee (idle fees). The protocol itself is the `ocpp` library's (controllers.ocpp_central);
these are plain keyword-only functions on an asyncpg connection, each committing what it acknowledges.

Idle fees: once charging has finished (the EV stops drawing: SuspendedEV or Finishing, or the transaction stops)
the car is idle until it is unplugged (its connector Available again, or the transaction stopped as
EVDisconnected) or the car leaves the lot, whichever is first.
Past the rate card's `idle_grace_minutes`, every started minute costs `idle_fee_per_hour / 60` (rounded up to a
whole minor unit for the session), plus the card's tax, itemised on the exit decision.
"""

from __future__ import annotations

import hmac
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg

from booking.access import qr_token
from controllers import queries_chargers as q
from controllers.chargers import Charger
from core.errors import ValidationFailed
from core.money import Money, percent_of
from core.security import normalise_plate, plate_hash
from pricing.rates import RateCard

ID_TAG_MAX = 20  # OCPP 1.6 IdToken is a CiString20Type
ENERGY_REGISTER = "Energy.Active.Import.Register"
ENDED = frozenset({"SuspendedEV", "Finishing"})


class UnknownCharger(Exception):
    """The charger was revoked (or deleted) while connected: its connection is to be closed."""


async def boot(*, conn: asyncpg.Connection, charger: Charger, vendor: str, model: str, serial: str | None,
               firmware: str | None, interval_s: int, now: datetime) -> None:
    """Record a BootNotification; the charger is told `interval_s` as its heartbeat interval."""
    if await conn.fetchval(q.BOOT, charger.lot_id, charger.id, now, vendor, model, serial, firmware,
                           interval_s) is None:
        raise UnknownCharger(charger.charge_point_id)


async def seen(*, conn: asyncpg.Connection, charger: Charger, now: datetime) -> None:
    """A sign of life (Heartbeat, or any message that writes nothing else about the charger)."""
    if await conn.fetchval(q.TOUCH, charger.lot_id, charger.id, now) is None:
        raise UnknownCharger(charger.charge_point_id)


def _connector(charger: Charger, connector_id: int, *, allow_zero: bool) -> int:
    low = 0 if allow_zero else 1
    if not low <= connector_id <= charger.connectors:
        raise ValidationFailed(f"connector_id must be between {low} and {charger.connectors}", loc=("connectorId",))
    return connector_id


async def record_status(*, conn: asyncpg.Connection, charger: Charger, connector_id: int, status: str,
                        error_code: str, at: datetime | None, now: datetime) -> None:
    """A StatusNotification: connector 0 is the charger as a whole; a connector's status also moves its open
    charging session (charging finished, or charging again) and ends the idle time of its last one (unplugged)."""
    _connector(charger, connector_id, allow_zero=True)
    at = at or now
    async with conn.transaction():
        if await conn.fetchval(q.CHARGER_STATUS if connector_id == 0 else q.TOUCH, charger.lot_id, charger.id, now,
                               *((status,) if connector_id == 0 else ())) is None:
            raise UnknownCharger(charger.charge_point_id)
        if connector_id == 0:
            return
        await conn.execute(q.CONNECTOR_STATUS, charger.lot_id, charger.id, connector_id, status, error_code, at)
        if status in ENDED:
            await conn.execute(q.CHARGING_ENDED, charger.lot_id, charger.id, connector_id, at)
        elif status == "Charging":
            await conn.execute(q.CHARGING_AGAIN, charger.lot_id, charger.id, connector_id)
        elif status == "Available":
            await conn.execute(q.UNPLUGGED, charger.lot_id, charger.id, connector_id, at)


# -- id tags ------------------------------------------------------------------------------------------------------

def reservation_id_tag(token: str) -> str:
    """The idTag a reservation's QR token gives a charger. OCPP 1.6 idTags are at most 20 characters, a QR token
    is ~150: its signature's first 20 characters (120 bits of the HMAC) stand for it."""
    return token.rsplit(".", 1)[-1][:ID_TAG_MAX]


@dataclass(frozen=True)
class TagOwner:
    kind: str  # reservation | plate
    reservation_id: uuid.UUID | None
    plate_hash: bytes | None


async def resolve_id_tag(*, conn: asyncpg.Connection, lot_id: uuid.UUID, id_tag: str, secret: bytes,
                         now: datetime) -> TagOwner | None:
    """Whose idTag this is at this lot: a reservation of the lot current now (by its QR token's tag), or a plate
    registered by a driver; None when neither."""
    for r in await conn.fetch(q.TAG_RESERVATIONS, lot_id, now):
        tag = reservation_id_tag(qr_token(secret=secret, reservation_id=r["id"], lot_id=r["lot_id"],
                                          not_after=r["ends_at"]))
        if hmac.compare_digest(tag.encode(), id_tag.encode()):
            return TagOwner("reservation", r["id"], r["plate_hash"])
    try:
        hashed = plate_hash(secret, normalise_plate(id_tag))
    except ValidationFailed:
        return None
    if await conn.fetchval(q.REGISTERED_PLATE, hashed) is None:
        return None
    return TagOwner("plate", None, hashed)


async def authorize(*, conn: asyncpg.Connection, charger: Charger, id_tag: str, secret: bytes, now: datetime) -> bool:
    """An Authorize: whether the tag may charge at this charger's lot."""
    await seen(conn=conn, charger=charger, now=now)
    return await resolve_id_tag(conn=conn, lot_id=charger.lot_id, id_tag=id_tag, secret=secret, now=now) is not None


# -- transactions -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Started:
    transaction_id: int
    accepted: bool


async def start_transaction(*, conn: asyncpg.Connection, charger: Charger, connector_id: int, id_tag: str,
                            meter_start_wh: int, at: datetime, secret: bytes, now: datetime) -> Started:
    """A StartTransaction: a charging session on the connector (a repeat of the same start returns the same id;
    a connector's unstopped previous session is closed as superseded). An unknown tag still gets its session
    recorded (the charger must be given a transaction id) but is answered Invalid, and the charger stops it."""
    _connector(charger, connector_id, allow_zero=False)
    if meter_start_wh < 0:
        raise ValidationFailed("meterStart must be >= 0", loc=("meterStart",))
    owner = await resolve_id_tag(conn=conn, lot_id=charger.lot_id, id_tag=id_tag, secret=secret, now=now)
    async with conn.transaction():
        await seen(conn=conn, charger=charger, now=now)
        current = await conn.fetchrow(q.OPEN_SESSION, charger.id, connector_id)
        if current is not None:
            if current["started_at"] == at and current["meter_start_wh"] == meter_start_wh:
                return Started(int(current["id"]), owner is not None)  # the same start, retried
            await conn.execute(q.SUPERSEDE, charger.lot_id, current["id"], at)
        tx_id = await conn.fetchval(q.START_SESSION, charger.lot_id, charger.id, connector_id,
                                    owner.kind if owner else "invalid", owner.reservation_id if owner else None,
                                    owner.plate_hash if owner else None, meter_start_wh, at)
    return Started(int(tx_id), owner is not None)


async def stop_transaction(*, conn: asyncpg.Connection, charger: Charger, transaction_id: int, meter_stop_wh: int,
                           at: datetime, reason: str | None, now: datetime) -> bool:
    """A StopTransaction; True when this charger has such a session (stopped now, or already: a retry)."""
    async with conn.transaction():
        await seen(conn=conn, charger=charger, now=now)
        if await conn.fetchval(q.STOP_SESSION, charger.lot_id, charger.id, transaction_id, meter_stop_wh, at,
                               reason or "Local") is not None:
            return True
        return await conn.fetchrow(q.SESSION_OF_CHARGER, charger.lot_id, charger.id, transaction_id) is not None


def energy_reading_wh(meter_values: Sequence[dict[str, Any]]) -> int | None:
    """The highest energy register reading (Wh) among MeterValues' sampled values, or None when there is none.
    A sampled value without a measurand is the energy register (OCPP 1.6 default); kWh are converted."""
    best: int | None = None
    for mv in meter_values:
        for sv in mv.get("sampled_value", ()):
            if sv.get("measurand", ENERGY_REGISTER) != ENERGY_REGISTER or sv.get("phase"):
                continue
            try:
                value = Decimal(str(sv["value"]))
            except (InvalidOperation, KeyError):
                continue
            if not value.is_finite():
                continue
            wh = int(value * 1000) if sv.get("unit", "Wh") == "kWh" else int(value)
            best = wh if best is None else max(best, wh)
    return best


async def meter_values(*, conn: asyncpg.Connection, charger: Charger, connector_id: int,
                       transaction_id: int | None, values: Sequence[dict[str, Any]], now: datetime) -> None:
    """MeterValues: the session's latest energy register reading (readings only move forward)."""
    _connector(charger, connector_id, allow_zero=True)
    async with conn.transaction():
        await seen(conn=conn, charger=charger, now=now)
        reading = energy_reading_wh(values)
        if transaction_id is not None and reading is not None:
            await conn.execute(q.METER, charger.lot_id, charger.id, transaction_id, reading)


# -- idle fees at the exit ----------------------------------------------------------------------------------------

def idle_fee(*, per_hour: int, grace_minutes: int, tax_bp: int, charging_ended_at: datetime | None,
             idle_until: datetime) -> tuple[int, int]:
    """(idle minutes, fee in minor units with tax) for a car idle from `charging_ended_at` to `idle_until`:
    every started minute past the grace costs per_hour / 60, the sum rounded up once."""
    if charging_ended_at is None or idle_until <= charging_ended_at:
        return 0, 0
    minutes = math.ceil((idle_until - charging_ended_at).total_seconds() / 60)
    billable = minutes - grace_minutes
    if billable <= 0 or per_hour <= 0:
        return minutes, 0
    fee = -(-billable * per_hour // 60)
    return minutes, fee + percent_of(fee, tax_bp, basis_points=True)


@dataclass(frozen=True)
class EvCharge:
    """One charging session of a car leaving the lot, as its exit fee itemises it."""

    charging_session_id: int
    energy_wh: int
    idle_minutes: int
    fee: Money

    def as_item(self) -> dict[str, Any]:
        return {"kind": "ev_idle_fee", "charging_session_id": self.charging_session_id, "energy_wh": self.energy_wh,
                "idle_minutes": self.idle_minutes, "amount": self.fee.as_json()}


async def charges_at_exit(*, conn: asyncpg.Connection, lot_id: uuid.UUID, plate_hash: bytes | None,
                          reservation_id: uuid.UUID | None, entered_at: datetime, card: RateCard | None,
                          now: datetime) -> list[EvCharge]:
    """The unbilled charging sessions of a parking session leaving at `now` (by its plate or reservation, started
    since its entry), each with its idle fee; locked until the exit's transaction ends."""
    if plate_hash is None and reservation_id is None:
        return []
    currency = card.currency if card is not None else "usd"
    charges = []
    for r in await conn.fetch(q.UNBILLED_FOR_EXIT, lot_id, plate_hash, reservation_id, entered_at):
        idle_until = min(r["unplugged_at"] or now, now)
        minutes, fee = (0, 0) if card is None else idle_fee(
            per_hour=card.idle_fee_per_hour, grace_minutes=card.idle_grace_minutes, tax_bp=card.tax_bp,
            charging_ended_at=r["charging_ended_at"], idle_until=idle_until)
        charges.append(EvCharge(int(r["id"]), max(int(r["meter_wh"]) - int(r["meter_start_wh"]), 0), minutes,
                                Money(fee, currency)))
    return charges


async def bill_charges(*, conn: asyncpg.Connection, lot_id: uuid.UUID, session_id: uuid.UUID,
                       charges: Iterable[EvCharge]) -> None:
    """Mark the charging sessions billed on this parking session (in the exit's transaction)."""
    for c in charges:
        await conn.execute(q.BILL, lot_id, c.charging_session_id, session_id, c.idle_minutes, c.fee.amount,
                           c.fee.currency)
