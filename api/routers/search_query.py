"""The search route's query string, judged by one model for both of its lanes.

`SearchParams` is the route's query model (`api.routers.search`: `Annotated[SearchParams, Query()]`). The fast lane
(`api.routers.search.shortcut`, ahead of routing) builds the same dict FastAPI builds from the query string (one
value per field, the last when repeated; a list for `amenities`; unknown parameters ignored) and validates it with
that model; whatever the model refuses is handed to FastAPI's lane, which refuses it again with its 422
problem+json naming the field. So `radius_m=５００` is 422 on both lanes (pydantic reads ASCII numbers only), and
tests/api/test_search_lanes.py checks, on generated query strings, that the fast lane accepts exactly what
FastAPI's own extraction (`fastapi.dependencies.utils.request_params_to_args`) accepts, with the same values.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.vocabulary import VehicleType
from geo.search import EvChargerFilter, Sort

__all__ = ["SearchParams", "plain_search_query", "query_pairs"]


class SearchParams(BaseModel):
    """GET /api/v1/lots/search's query parameters."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    lat: float | None = Field(None, ge=-90, le=90, allow_inf_nan=False)
    lng: float | None = Field(None, ge=-180, le=180, allow_inf_nan=False)
    radius_m: float | None = Field(None, allow_inf_nan=False, description="metres, > 0")
    bbox: str | None = Field(None, max_length=200, description="minLng,minLat,maxLng,maxLat")
    starts_at: datetime | None = Field(None, description="RFC 3339 with offset; default now")
    ends_at: datetime | None = Field(None, description="RFC 3339 with offset; default starts_at + 1 h")
    vehicle_type: VehicleType | None = None
    amenities: list[str] | None = Field(None, max_length=20, description="e.g. covered,ev_charging")
    max_price: int | None = Field(None, ge=0, description="minor units; see description")
    sort: Sort = "distance"
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, min_length=1, max_length=500)
    destination_id: uuid.UUID | None = Field(
        None, description="search around this destination (GET /api/v1/destinations); implies sort=walk")
    max_walk_m: float | None = Field(None, ge=50, le=5000, allow_inf_nan=False,
                                     description="walking searches: the longest walk, default 1500")
    ev_charger: EvChargerFilter | None = Field(
        None, description="available: only lots with an online, working, free EV charging connector now")


_SCALARS = frozenset(SearchParams.model_fields) - {"amenities"}


def query_pairs(text: str) -> list[tuple[str, str]]:
    """(name, value) pairs as starlette reads query parameters (Request.query_params: parse_qsl with blank values
    kept). Without an escape ("%" or "+") that is splitting on "&" and on each field's first "=", skipping empty
    fields: done here without parse_qsl's per-field unquoting."""
    if "%" in text or "+" in text:
        return parse_qsl(text, keep_blank_values=True)
    return [(name, value) for name, _, value in (field.partition("=") for field in text.split("&") if field)]


def query_dict(query_string: bytes) -> dict[str, Any]:
    """The dict FastAPI validates a query model with: each scalar field's last value, `amenities` as a list
    (absent when not given), other names left out (the model ignores extras)."""
    values: dict[str, Any] = {}
    amenities: list[str] = []
    for key, raw in query_pairs(query_string.decode("latin-1")):
        if key == "amenities":
            amenities.append(raw)
        elif key in _SCALARS:
            values[key] = raw
    if amenities:
        values["amenities"] = amenities
    return values


def plain_search_query(query_string: bytes) -> SearchParams | None:
    """The search's parameters when the route's model accepts the query string; None to let FastAPI's lane answer
    (its 422 problem+json names the field)."""
    try:
        return SearchParams.model_validate(query_dict(query_string))
    except ValidationError:
        return None
