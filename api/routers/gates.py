"""Gate controllers: entry and exit events by plate or QR token (API.md, Lot controllers)."""

from __future__ import annotations

import uuid
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Response
from pydantic import AwareDatetime, BaseModel, Field

from api.authz import GateDevice
from api.deps import CtxDep, NowDep
from api.schemas.common import MoneyOut
from controllers import gates

router = APIRouter(prefix="/gates", tags=["lot controllers"])

VehicleType = Literal["motorcycle", "compact", "regular", "large", "ev", "handicap"]


class GateEventIn(BaseModel):
    event_id: str = Field(min_length=1, max_length=100, description="unique per lot; a repeat returns the first decision")
    sequence: int = Field(ge=0, description="the device's own sequence number (ordering survives clock skew)")
    occurred_at: AwareDatetime
    direction: Literal["entry", "exit"] | None = Field(None, description="defaults to the gate's direction")
    plate: str | None = Field(None, max_length=32)
    plate_confidence: float | None = Field(None, ge=0, le=1)
    qr_token: str | None = Field(None, max_length=2000)
    vehicle_type: VehicleType = Field("regular", description="what a walk-in is booked as")
    payment_token: str | None = Field(None, max_length=200, description="a pay terminal's card token (exit)")
    decided_locally: bool = Field(False, description="the edge agent already acted on this event: recorded as a fact")
    replayed: bool = Field(False, description="synonym of decided_locally, for replays from the edge outbox")
    decision: Literal["open", "deny", "pay", "attendant"] | None = Field(
        None, description="what the edge agent decided, when decided_locally")


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
    event = gates.GateEvent(
        event_id=body.event_id, sequence=body.sequence, occurred_at=body.occurred_at, direction=body.direction,
        plate=body.plate, plate_confidence=body.plate_confidence, qr_token=body.qr_token,
        vehicle_type=body.vehicle_type, payment_token=body.payment_token,
        decided_locally=body.decided_locally or body.replayed, local_decision=body.decision)
    outcome = await gates.decide(deps=gates.gate_deps(ctx), device_id=device.device_id, gate_id=gate_id, event=event,
                                 now=now)
    # Written straight out: the decision is plain JSON already (response_model documents it, unvalidated).
    return Response(orjson.dumps(outcome.decision.as_json()), media_type="application/json",
                    headers={"X-Duplicate-Event": "true"} if outcome.duplicate else None)
