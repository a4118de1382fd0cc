"""Operators map bay sensors to spots explicitly (when a sensor's id is not its spot's label or id)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from controllers import sensor_queries as q
from core.errors import Conflict, ValidationFailed


@dataclass(frozen=True)
class SensorMapping:
    sensor_id: str
    spot_id: uuid.UUID
    spot_label: str
    level: str


async def map_sensor(conn: AsyncConnection, *, lot_id: uuid.UUID, sensor_id: str, spot_id: uuid.UUID | None,
                     spot_label: str | None, now: datetime) -> SensorMapping:
    """Map `sensor_id` to one spot of the lot (by id or label); its next event is applied to that spot.

    422 naming the field when the lot has no such spot; 409 when the sensor already reports for another spot
    (moving a live sensor would move its past readings' counts; see docs/features/contract.md)."""
    if (spot_id is None) == (spot_label is None):
        raise ValidationFailed("give exactly one of spot_id and spot_label", loc=("body", "spot_id"))
    spot = (await conn.execute(q.SPOT_BY_ID_OR_LABEL, {"lot_id": lot_id, "spot_id": spot_id,
                                                       "label": spot_label})).first()
    if spot is None:
        field = "spot_id" if spot_id is not None else "spot_label"
        raise ValidationFailed(f"this lot has no spot with that {field.removeprefix('spot_')}", loc=("body", field))
    current = (await conn.execute(q.SENSOR_SPOT, {"lot_id": lot_id, "sensor_id": sensor_id})).first()
    if current is not None and current.spot_id is not None and current.spot_id != spot.id:
        raise Conflict(f"sensor {sensor_id} already reports for another spot of this lot")
    await conn.execute(q.UPSERT_SENSOR_MAPPING, {"lot_id": lot_id, "sensor_id": sensor_id, "spot_id": spot.id,
                                                 "now": now})
    return SensorMapping(sensor_id=sensor_id, spot_id=spot.id, spot_label=spot.label, level=spot.level)
