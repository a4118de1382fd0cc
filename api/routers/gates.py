"""Gate controllers: entry and exit events by plate or QR token (docs/api.md, Lot controllers)."""

from __future__ import annotations

import uuid
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from api.authz import GateDevice
from api.deps import CtxDep, NowDep
from api.schemas.common import MoneyOut
from controllers import gates
from controllers.messages import GateEventIn

router = APIRouter(prefix="/gates", tags=["lot controllers"])


class SpotOut(BaseModel):
    id: str
    label: str
    level: str


class GateDecisionOut(BaseModel):
    decision: Literal["open", "deny", "pay", "attendant"]
    session_id: str | None
    spot: SpotOut | None
    fee: MoneyOut | None
    message: str
    fee_items: list[dict[str, Any]] | None = Field(
        None, description="present when the car charged: the parking fee and each EV charging session's idle fee "
                          "(`{kind: ev_idle_fee, charging_session_id, energy_wh, idle_minutes, amount}`)")


@router.post("/{gate_id}/events", response_model=GateDecisionOut,
             summary="An entry or exit at a gate: open, deny, pay or attendant (a repeated event_id returns the first)")
async def gate_event(gate_id: uuid.UUID, body: GateEventIn, device: GateDevice, ctx: CtxDep,
                     now: NowDep) -> Response:
    event = gates.gate_event(body)
    outcome = await gates.decide(deps=gates.gate_deps(ctx), lot_id=device.lot_id, device_id=device.device_id,
                                 gate_id=gate_id, event=event, now=now)
    # Written straight out: the decision is plain JSON already (response_model documents it, unvalidated).
    return Response(orjson.dumps(outcome.decision.as_json()), media_type="application/json",
                    headers={"X-Duplicate-Event": "true"} if outcome.duplicate else None)
