"""Object-level authorisation dependencies: someone else's object answers 404, never its data.

    @router.get("/lots/{lot_id}/dashboard")
    async def dashboard(lot_id: OperatedLotId, ...): ...   # drivers 403, other organisations' operators 404

    @router.post("/lots/{lot_id}/sensor-events")
    async def ingest(device: LotDevice, ...): ...            # a device of another lot: 404

    @router.post("/gates/{gate_id}/events")
    async def gate_event(device: GateDevice, ...): ...       # a gate of another lot: 404
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Path

from api.deps import CtxDep, CurrentDevice, Device, OperatorUser
from controllers.gates import find_gate, gate_deps
from core.accounts import assert_operates_lot
from core.errors import NotFound


async def operated_lot_id(ctx: CtxDep, user: OperatorUser, lot_id: Annotated[uuid.UUID, Path()]) -> uuid.UUID:
    """The path's lot_id, if the caller operates it (admins operate every lot)."""
    async with ctx.engine.connect() as conn:
        await assert_operates_lot(conn=conn, lot_id=lot_id, role=user.role, organisation_id=user.organisation_id)
    return lot_id


OperatedLotId = Annotated[uuid.UUID, Depends(operated_lot_id)]


async def lot_device(device: CurrentDevice, lot_id: Annotated[uuid.UUID, Path()]) -> Device:
    """The calling controller, if it belongs to the path's lot (a device is scoped to one lot)."""
    if device.lot_id != lot_id:
        raise NotFound(f"lot {lot_id} not found")
    return device


LotDevice = Annotated[Device, Depends(lot_device)]


async def gate_device(ctx: CtxDep, device: CurrentDevice, gate_id: Annotated[uuid.UUID, Path()]) -> Device:
    """The calling controller, if the path's gate is in the controller's lot (gates are cached: GATE_TTL)."""
    gate = await find_gate(gate_deps(ctx), device.lot_id, gate_id, ctx.clock.now())
    if gate is None:
        raise NotFound(f"gate {gate_id} not found")
    return device


GateDevice = Annotated[Device, Depends(gate_device)]
