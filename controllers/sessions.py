"""Parking sessions for a lot's operators: the list, the lost-ticket flow and violations (overstays)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from controllers import queries_gates as q
from controllers.fees import minutes_over, reservation_exit_fee, session_fee
from controllers.gates import GateDeps, rate_card
from core.errors import NotFound
from core.money import Money
from core.security import normalise_plate, plate_hash

#: violation kinds this module checks; the last two need a bay sensor mapped to the spot
CHECKED_VIOLATIONS = ("overstay", "overstay_risk", "wrong_spot_type", "occupied_without_session")
UNCHECKED_VIOLATIONS: tuple[str, ...] = ()
#: bays only some vehicles may use: a car in one with no booking of it is in the wrong type of spot
RESTRICTED_BAYS = ("ev", "handicap")


async def list_sessions(conn: AsyncConnection, *, lot_id: uuid.UUID, status: str | None, limit: int,
                        after: tuple[datetime, uuid.UUID] | None) -> list[Any]:
    """A lot's sessions, newest entry first (keyset pagination on entered_at, id)."""
    rows = await conn.execute(q.SESSIONS_OF_LOT, {
        "lot_id": lot_id, "status": status, "limit": limit,
        "after_entered": after[0] if after else None, "after_id": after[1] if after else None})
    return list(rows)


async def list_debts(conn: AsyncConnection, *, lot_id: uuid.UUID, open_only: bool, limit: int) -> list[Any]:
    """A lot's plate debts, newest first (open ones only unless `open_only` is False)."""
    return list(await conn.execute(q.DEBTS_OF_LOT, {"lot_id": lot_id, "open_only": open_only, "limit": limit}))


async def open_debt_totals(conn: AsyncConnection, *, lot_id: uuid.UUID) -> list[Any]:
    """What the lot is owed in open plate debts, per currency (amount, n)."""
    return list(await conn.execute(q.OPEN_DEBT_TOTALS, {"lot_id": lot_id}))


@dataclass(frozen=True)
class LostTicket:
    session_id: uuid.UUID | None
    plate: str
    entered_at: datetime | None
    fee: Money
    basis: str  # the fee's basis: entry_time (a session was found) or lost_ticket_fee


async def lost_ticket(*, deps: GateDeps, conn: AsyncConnection, lot_id: uuid.UUID, plate: str,
                      now: datetime) -> LostTicket:
    """The fee for a driver without a ticket: from the entry time when the plate has an active session
    (which is marked `lost_ticket_at`), otherwise the lot's flat lost-ticket fee (404 when the lot has none).

    The fee is then collected at the exit like any other: a pay terminal's token on the exit event, or
    `pay` once and a plate debt after that (controllers.gates)."""
    normalised = normalise_plate(plate)
    lot = (await conn.execute(q.LOT, {"lot_id": lot_id})).first()
    if lot is None:
        raise NotFound(f"lot {lot_id} not found")
    session = (await conn.execute(q.ACTIVE_SESSION_BY_PLATE, {
        "lot_id": lot_id, "plate_hash": plate_hash(deps.booking.secret, normalised)})).first()
    if session is not None:
        fee = session_fee(card=await rate_card(deps, conn, lot_id), timezone=lot.timezone, kind=session.kind,
                          entered_at=session.entered_at, ends_at=session.ends_at, spot_type=session.spot_type, now=now)
        await conn.execute(q.MARK_LOST_TICKET, {"lot_id": lot_id, "id": session.id, "now": now})
        due = max(fee.amount.amount - int(session.paid_amount), 0)
        return LostTicket(session.id, normalised, session.entered_at, Money(due, fee.amount.currency), "entry_time")
    if lot.lost_ticket_fee_amount is None:
        raise NotFound("no active session for this plate, and this lot has no lost-ticket fee")
    card = await rate_card(deps, conn, lot_id)
    currency = card.currency if card is not None else "usd"
    return LostTicket(None, normalised, None, Money(int(lot.lost_ticket_fee_amount), currency), "lost_ticket_fee")


@dataclass(frozen=True)
class Violation:
    kind: str  # overstay | overstay_risk | wrong_spot_type | occupied_without_session
    session_id: uuid.UUID | None
    plate: str | None
    spot: dict[str, Any] | None
    entered_at: datetime | None
    ends_at: datetime | None
    minutes_over: int
    fee_so_far: Money | None
    sensor_id: str | None = None


async def violations(*, deps: GateDeps, conn: AsyncConnection, lot_id: uuid.UUID, now: datetime,
                     limit: int = 200) -> list[Violation]:
    """Overstays: reservations still inside past their end (with the overstay fee so far); walk-ins whose
    booked occupancy could not be extended because the spot is booked next (overstay risk); and bays a
    sensor reports occupied with nothing booked on them now (an EV or accessible bay: wrong spot type)."""
    lot = (await conn.execute(q.LOT, {"lot_id": lot_id})).first()
    if lot is None:
        raise NotFound(f"lot {lot_id} not found")
    card = await rate_card(deps, conn, lot_id)
    out: list[Violation] = []
    for row in await conn.execute(q.OVERSTAYS, {"lot_id": lot_id, "now": now, "limit": limit}):
        spot = {"id": str(row.spot_id), "label": row.spot_label, "level": row.level_name} if row.spot_id else None
        over = minutes_over(ends_at=row.ends_at, now=now, grace_minutes=0)
        fee = None
        if row.kind == "reservation":
            fee = reservation_exit_fee(card=card, ends_at=row.ends_at, now=now).amount
        out.append(Violation("overstay" if row.kind == "reservation" else "overstay_risk", row.id, row.plate, spot,
                             row.entered_at, row.ends_at, over, fee))
    # Bay sensors: a bay reported occupied while nothing booked occupies it now.
    for row in await conn.execute(q.UNBOOKED_OCCUPIED_BAYS, {"lot_id": lot_id, "now": now, "limit": limit}):
        spot = {"id": str(row.spot_id), "label": row.spot_label, "level": row.level_name, "type": row.spot_type}
        kind = "wrong_spot_type" if row.spot_type in RESTRICTED_BAYS else "occupied_without_session"
        since = row.state_since
        minutes = int((now - since).total_seconds() // 60) if since else 0
        out.append(Violation(kind, None, None, spot, since, None, minutes, None, sensor_id=row.sensor_id))
    return out
