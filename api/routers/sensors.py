"""Bay sensor batches and the edge agent's snapshot: lot controllers (X-Device-Key of that lot)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.authz import LotDevice
from api.deps import ConnDep, CtxDep, NowDep
from controllers.edge.snapshot import edge_snapshot
from controllers.occupancy import counters_for
from controllers.sensors import MAX_BATCH, ingest_sensor_events
from core.errors import ValidationFailed

router = APIRouter(prefix="/lots/{lot_id}", tags=["lot controllers"])

_EXAMPLE = {"events": [{"event_id": "s1-000123", "sensor_id": "L0-001", "state": "occupied", "confidence": 0.97,
                        "occurred_at": "2030-01-07T08:00:00Z"}]}


class EventOutcome(BaseModel):
    event_id: str | None
    reason: str | None


class SensorBatchOut(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[EventOutcome] = Field(description="malformed events, and events of sensors mapped to no spot")
    ignored: list[EventOutcome] = Field(description="well-formed events the debounce rules set aside")


@router.post("/sensor-events", status_code=202, summary="A batch of bay sensor events (each event validated alone)",
             description="A sensor is known by an operator's mapping (PUT /lots/{lot_id}/sensors/{sensor_id}) or "
                         "when its id is a spot's label or id; other sensors' events are in `rejected` with the "
                         "reason, and are accepted when sent again after the sensor is mapped.",
             responses={202: {"model": SensorBatchOut}})
async def post_sensor_events(device: LotDevice, ctx: CtxDep, now: NowDep,
                             body: Annotated[dict[str, Any], Body(openapi_examples={"batch": {"value": _EXAMPLE}})]
                             ) -> JSONResponse:
    events = body.get("events")
    if not isinstance(events, list):
        raise ValidationFailed("events must be a list", loc=("body", "events"))
    if len(events) > MAX_BATCH:
        raise ValidationFailed(f"at most {MAX_BATCH} events per batch", loc=("body", "events"))
    result = await ingest_sensor_events(pg=await ctx.pg(), counters=counters_for(ctx), lot_id=device.lot_id,
                                        events=events, now=now, device_id=device.device_id)
    return JSONResponse(result.as_dict(), status_code=202)


@router.get("/edge-snapshot", summary="What the lot's edge agent copies to decide offline (plates hashed per lot)")
async def get_edge_snapshot(device: LotDevice, ctx: CtxDep, conn: ConnDep, now: NowDep) -> dict[str, Any]:
    return await edge_snapshot(conn=conn, secret=ctx.settings.secret_bytes, lot_id=device.lot_id, now=now)
