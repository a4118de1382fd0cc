"""GET /api/v1/lots/{lot_id}/forecast: a lot's occupancy forecast in 15-minute steps with an 80 % interval."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from analytics.forecast import read_forecast
from analytics.model import HORIZON_STEPS, STEP
from api.deps import ConnDep, NowDep
from api.routers.discovery_params import VehicleTypeParam
from api.schemas.common import Rfc3339
from core.errors import NotFound, ValidationFailed

router = APIRouter(prefix="/lots", tags=["forecasts"])
DEFAULT_SPAN = timedelta(hours=24)


class ForecastModel(BaseModel):
    name: str | None = Field(description="lightgbm-global-quantile, or the baseline:* a lot fell back to; "
                                          "null before the first forecast")
    trained_at: datetime | None


class ForecastPoint(BaseModel):
    at: datetime
    occupancy: float = Field(ge=0, le=1, description="forecast share of the lot's spots occupied")
    low: float = Field(ge=0, le=1, description="10th percentile (80 % interval)")
    high: float = Field(ge=0, le=1, description="90th percentile (80 % interval)")


class LotForecastOut(BaseModel):
    lot_id: uuid.UUID
    vehicle_type: str | None = Field(description="as asked; the forecast covers the whole lot (all spot types)")
    model: ForecastModel
    points: list[ForecastPoint]
    likely_full_at: datetime | None = Field(description="first step forecast at 95 % or more, in the range")


@router.get("/{lot_id}/forecast", response_model=LotForecastOut,
            summary="Forecast occupancy share in 15-minute steps with an 80 % prediction interval (up to 7 days)")
async def lot_forecast(lot_id: uuid.UUID, conn: ConnDep, now: NowDep, vehicle_type: VehicleTypeParam | None = None,
                       starts_at: Annotated[Rfc3339 | None, Query(alias="from",
                                                                   description="RFC 3339 with offset; default now")]
                       = None,
                       ends_at: Annotated[Rfc3339 | None, Query(alias="to",
                                                                 description="RFC 3339; default from + 24 h")]
                       = None) -> Any:
    start = starts_at or now
    if start.tzinfo is None:
        raise ValidationFailed("from must carry a timezone offset", loc=("query", "from"))
    end = ends_at or start + DEFAULT_SPAN
    if end.tzinfo is None:
        raise ValidationFailed("to must carry a timezone offset", loc=("query", "to"))
    if end <= start:
        raise ValidationFailed("to must be after from", loc=("query", "to"))
    if end - start > STEP * HORIZON_STEPS:
        raise ValidationFailed("a forecast spans at most 7 days", loc=("query", "to"))
    found = await read_forecast(conn, lot_id=lot_id, starts_at=start, ends_at=end)
    if found is None:
        raise NotFound(f"lot {lot_id} not found")
    return found.as_json(vehicle_type)
