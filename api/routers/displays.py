"""Display boards: free spaces per level and spot type, with freshness (X-Device-Key of that lot)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.authz import LotDevice
from api.deps import CtxDep, NowDep
from controllers.displays import lot_displays
from controllers.occupancy import counters_for

router = APIRouter(prefix="/lots/{lot_id}", tags=["lot controllers"])


@router.get("/displays", summary="Free spaces per level and type; unknown bays are never counted free")
async def get_displays(device: LotDevice, ctx: CtxDep, now: NowDep) -> dict[str, Any]:
    return await lot_displays(engine=ctx.engine, counters=counters_for(ctx), lot_id=device.lot_id, now=now)
