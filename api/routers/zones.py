"""GET /api/v1/zones/h3: per-cell capacity and live availability, a heatmap source for maps."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.deps import ConnDep, NowDep
from api.routers.discovery_params import EndsAt, StartsAt, VehicleTypeParam, window_from
from api.schemas.discovery import ZonesResponse, zones_json
from geo.window import parse_bbox
from geo.zones import zone_cells

router = APIRouter(prefix="/zones", tags=["discovery"])


@router.get("/h3", response_model=ZonesResponse, summary="Capacity and availability per H3 cell in a bbox")
async def h3_zones(
    request: Request, conn: ConnDep, now: NowDep,
    res: Annotated[int, Query(description="H3 resolution 0..9 (lots are indexed at 7 and 9)")],
    bbox: Annotated[str, Query(max_length=200, description="minLng,minLat,maxLng,maxLat")],
    vehicle_type: VehicleTypeParam | None = None, starts_at: StartsAt = None, ends_at: EndsAt = None,
) -> ZonesResponse:
    box = parse_bbox(bbox)
    window = window_from(request, starts_at, ends_at, now)
    return zones_json(await zone_cells(conn, res=res, bbox=box, vehicle_type=vehicle_type, window=window, now=now))
