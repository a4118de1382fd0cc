"""Sensor -> spot mappings: operators of the lot register sensors whose ids are not spot labels."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from api.authz import OperatedLotId
from api.deps import ConnDep, NowDep
from api.schemas.common import StrictBody, WireUuid
from controllers.sensor_registry import map_sensor

router = APIRouter(prefix="/lots/{lot_id}/sensors", tags=["lot controllers"])


class SensorMappingIn(StrictBody):
    spot_id: WireUuid | None = None
    spot_label: str | None = Field(None, min_length=1, max_length=50)


class SpotRef(BaseModel):
    id: uuid.UUID
    label: str
    level: str


class SensorMappingOut(BaseModel):
    sensor_id: str
    lot_id: uuid.UUID
    spot: SpotRef


@router.put("/{sensor_id}", response_model=SensorMappingOut, summary="Map a bay sensor to a spot (operators)",
            description="Give exactly one of `spot_id` and `spot_label`. Without a mapping, a sensor's events "
                        "apply to the spot whose label or id equals the sensor id; events of a sensor matching no "
                        "spot are rejected in the batch answer's `rejected`. 409 when the sensor already reports "
                        "for another spot.",
            responses={409: {"description": "the sensor already reports for another spot"}})
async def put_sensor_mapping(lot_id: OperatedLotId, conn: ConnDep, now: NowDep, body: SensorMappingIn,
                             sensor_id: Annotated[str, Path(min_length=1, max_length=100)]) -> SensorMappingOut:
    m = await map_sensor(conn, lot_id=lot_id, sensor_id=sensor_id, spot_id=body.spot_id, spot_label=body.spot_label,
                         now=now)
    return SensorMappingOut(sensor_id=m.sensor_id, lot_id=lot_id,
                            spot=SpotRef(id=m.spot_id, label=m.spot_label, level=m.level))
