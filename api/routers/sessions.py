"""Parking sessions for a lot's operators: list, lost ticket, violations (docs/api.md, Lots (operators))."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.authz import OperatedLotId
from api.deps import ConnDep, CtxDep, NowDep
from api.schemas.common import decode_cursor, encode_cursor, money, parse_cursor_time
from controllers import sessions
from controllers.gates import gate_deps
from core.errors import ValidationFailed

router = APIRouter(prefix="/lots", tags=["sessions"])


class LostTicketIn(BaseModel):
    plate: str = Field(min_length=1, max_length=32)


def _spot(row: Any) -> dict[str, Any] | None:
    return {"id": str(row.spot_id), "label": row.spot_label, "level": row.level_name} if row.spot_id else None


def session_json(row: Any) -> dict[str, Any]:
    """The operator's view of a session (plates in full: only the lot's operators and admins get here).

    Money tells the truth: `fee` is everything the stay cost (a reservation's prepaid price plus any exit fee),
    `paid` what was taken for it (the reservation's captured payment net of refunds, plus exit payments),
    `unpaid` what was left owing at the exit (a plate debt), and `payment_status` sums it up."""
    fees = session_money(row)
    return {
        "id": str(row.id), "kind": row.kind, "status": row.status, "plate": row.plate, "spot": _spot(row),
        "entered_at": row.entered_at, "exited_at": row.exited_at,
        "reservation_id": str(row.reservation_id) if row.reservation_id else None,
        **{k: money(v, row.currency) if v is not None else None for k, v in fees.items() if k != "status"},
        "payment_status": fees["status"], "flags": list(row.flags),
        "pay_requested_at": row.pay_requested_at, "lost_ticket_at": row.lost_ticket_at,
        "overstay_risk_at": row.overstay_risk_at,
    }


def session_money(row: Any) -> dict[str, Any]:
    """fee, paid, prepaid, unpaid (integers or None) and status: open | unpaid | free | paid | pending."""
    prepaid = int(row.prepaid_amount) if row.prepaid_amount is not None else None
    paid = int(row.paid_amount) + int(row.prepaid_captured)
    fee = int(row.fee_amount) + (prepaid or 0) if row.fee_amount is not None else None
    unpaid: int | None = int(row.unpaid_amount) if row.unpaid_amount else None
    if unpaid is None and "unpaid" in row.flags and row.fee_amount is not None:  # no plate, so no plate debt
        unpaid = max(int(row.fee_amount) - int(row.paid_amount), 0) or None
    if row.status == "active":
        status = "open"
    elif unpaid:
        status = "unpaid"
    elif not fee:
        status = "free"
    else:
        status = "paid" if paid >= fee else "pending"  # pending: a reservation's capture not done yet
    return {"fee": fee, "paid": paid, "prepaid": prepaid, "unpaid": unpaid, "status": status}


@router.get("/{lot_id}/debts", summary="The lot's plate debts (open ones unless status=all), newest first")
async def list_debts(lot_id: OperatedLotId, conn: ConnDep,
                     status: Annotated[Literal["open", "all"], Query()] = "open",
                     limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
    found = await sessions.list_debts(conn, lot_id=lot_id, open_only=status == "open", limit=limit)
    totals = await sessions.open_debt_totals(conn, lot_id=lot_id)
    items = [{"id": str(d.id), "session_id": str(d.session_id) if d.session_id else None, "plate": d.plate,
              "amount": money(d.amount, d.currency), "reason": d.reason, "created_at": d.created_at,
              "settled_at": d.settled_at} for d in found]
    total = totals[0] if totals else None
    return {"items": items, "next_cursor": None,
            "total": money(total.amount, total.currency) if total is not None else None,
            "open_count": sum(int(t.n) for t in totals)}


@router.get("/{lot_id}/sessions", summary="The lot's parking sessions, newest entry first (operators of the lot)")
async def list_sessions(lot_id: OperatedLotId, conn: ConnDep,
                        status: Annotated[Literal["active", "completed"] | None, Query()] = None,
                        limit: Annotated[int, Query(ge=1, le=200)] = 50,
                        cursor: Annotated[str | None, Query(max_length=500)] = None) -> dict[str, Any]:
    after: tuple[datetime, uuid.UUID] | None = None
    if cursor:
        data = decode_cursor(cursor, fields=("e", "i"))
        try:
            after = (parse_cursor_time(data["e"]), uuid.UUID(str(data["i"])))
        except ValueError:
            raise ValidationFailed("malformed cursor", loc=("query", "cursor")) from None
    rows = await sessions.list_sessions(conn, lot_id=lot_id, status=status, limit=limit + 1, after=after)
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor({"e": last.entered_at.isoformat(), "i": str(last.id)})
    return {"items": [session_json(r) for r in rows[:limit]], "next_cursor": next_cursor}


@router.post("/{lot_id}/sessions/lost-ticket",
             summary="Fee for a lost ticket: from the entry time of the plate's session, else the lot's lost-ticket fee")
async def lost_ticket(lot_id: OperatedLotId, body: LostTicketIn, conn: ConnDep, ctx: CtxDep,
                      now: NowDep) -> dict[str, Any]:
    found = await sessions.lost_ticket(deps=gate_deps(ctx), conn=conn, lot_id=lot_id, plate=body.plate, now=now)
    return {"session_id": str(found.session_id) if found.session_id else None, "plate": found.plate,
            "entered_at": found.entered_at, "fee": found.fee.as_json(), "basis": found.basis}


@router.get("/{lot_id}/violations",
            summary="Overstays, walk-ins at overstay risk, and bays occupied with no booking (by bay sensors)")
async def list_violations(lot_id: OperatedLotId, conn: ConnDep, ctx: CtxDep, now: NowDep) -> dict[str, Any]:
    found = await sessions.violations(deps=gate_deps(ctx), conn=conn, lot_id=lot_id, now=now)
    items = [{"kind": v.kind, "session_id": str(v.session_id) if v.session_id else None, "plate": v.plate,
              "spot": v.spot, "entered_at": v.entered_at, "ends_at": v.ends_at, "minutes_over": v.minutes_over,
              "fee_so_far": v.fee_so_far.as_json() if v.fee_so_far else None, "sensor_id": v.sensor_id}
             for v in found]
    return {"items": items, "next_cursor": None, "checked": list(sessions.CHECKED_VIOLATIONS),
            "not_checked": list(sessions.UNCHECKED_VIOLATIONS)}
