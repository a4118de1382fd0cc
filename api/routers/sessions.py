"""Parking sessions for a lot's operators: list, lost ticket, violations (API.md, Lots (operators))."""

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
    """The operator's view of a session (plates in full: only the lot's operators and admins get here)."""
    return {
        "id": str(row.id), "kind": row.kind, "status": row.status, "plate": row.plate, "spot": _spot(row),
        "entered_at": row.entered_at, "exited_at": row.exited_at,
        "reservation_id": str(row.reservation_id) if row.reservation_id else None,
        "fee": money(row.fee_amount, row.currency) if row.fee_amount is not None else None,
        "paid": money(row.paid_amount, row.currency), "flags": list(row.flags),
        "pay_requested_at": row.pay_requested_at, "lost_ticket_at": row.lost_ticket_at,
        "overstay_risk_at": row.overstay_risk_at,
    }


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
