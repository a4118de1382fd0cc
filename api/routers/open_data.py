"""Open data for partners (X-API-Key, each key with its own quota). Filled in by the open data issue."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.ratelimit import LimitedPartner

router = APIRouter(prefix="/api/v1/open", tags=["open data"])


@router.get("/lots", summary="Lots with live availability as a GeoJSON FeatureCollection",
            responses={200: {"content": {"application/geo+json": {}}}, 401: {"description": "missing or bad key"},
                       429: {"description": "partner quota exhausted"}})
async def open_lots(partner: LimitedPartner) -> JSONResponse:
    body: dict[str, Any] = {"type": "FeatureCollection", "features": []}
    return JSONResponse(body, media_type="application/geo+json")
