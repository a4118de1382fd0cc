"""Capacity check for a window: a count of free compatible spots, never which ones."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from api.deps import CtxDep, NowDep
from booking.availability import free_count
from booking.service import make_window
from booking.wiring import booking_deps

router = APIRouter(prefix="/api/v1", tags=["discovery"])


@router.get("/lots/{lot_id}/availability", summary="Free compatible spots for a window (widened to 15-minute slots)")
async def availability(lot_id: uuid.UUID, ctx: CtxDep, now: NowDep,
                       vehicle_type: Annotated[Literal["motorcycle", "compact", "regular", "large", "ev", "handicap"],
                                               Query()],
                       starts_at: Annotated[AwareDatetime, Query()],
                       ends_at: Annotated[AwareDatetime, Query()]) -> dict[str, Any]:
    deps = booking_deps(ctx)
    window = make_window(starts_at, ends_at, now=now, max_span=deps.max_window, loc="query")
    async with ctx.engine.connect() as conn:
        priced = await deps.pricer(conn, lot_id, vehicle_type, window, None)
    count = await free_count(deps=deps, lot_id=lot_id, vehicle_type=vehicle_type, window=window, now=now)
    return {"lot_id": str(lot_id), "vehicle_type": vehicle_type, "starts_at": window.slot_start,
            "ends_at": window.slot_end, "requested": {"starts_at": starts_at, "ends_at": ends_at},
            "available": count.available, "freshness": {"source": count.source, "as_of": count.as_of},
            "quote": priced.quote}
