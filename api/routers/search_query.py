"""A fast lane for the search route's query string: plain, well-formed queries are parsed here in a few
microseconds instead of FastAPI's per-parameter pydantic validation (most of a search's API CPU otherwise), and
answered ahead of routing (`api.routers.search.shortcut`).

`plain_search_query` accepts only a strict subset of what the FastAPI signature in `api.routers.search` accepts,
and yields exactly the values FastAPI would pass for it. Anything else (a value out of range, an unusual number or
time format, a repeated parameter, an empty value) returns None, and the request takes FastAPI's own validation
path: every bad input still gets FastAPI's 422 problem+json naming the field, and the OpenAPI document still
comes from that signature.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, get_args
from urllib.parse import parse_qsl

from api.routers.discovery_params import VehicleTypeParam
from geo.search import EvChargerFilter, Prefilter, Sort

_DECIMAL = re.compile(r"-?\d{1,9}(?:\.\d{1,17})?")
_LIMIT = re.compile(r"[1-9]\d?|100")
_NON_NEGATIVE_INT = re.compile(r"0|[1-9]\d{0,17}")
# RFC 3339 with an offset, fields in range (a date like Feb 30 still fails in fromisoformat: FastAPI's lane then)
_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?"
                    r"(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)")
# the values the route's Literal types admit (api.routers.search's signature)
_VEHICLE_TYPES = frozenset(get_args(VehicleTypeParam))
_SORTS = frozenset(get_args(Sort))
_PREFILTERS = frozenset(get_args(Prefilter))
_EV_CHARGER = frozenset(get_args(EvChargerFilter))
_MAX_AMENITY_VALUES = 20  # Query(max_length=20) on the list
_MAX_BBOX = 200
_MAX_CURSOR = 500


def _bounded(raw: str, low: float, high: float) -> float | None:
    if not _DECIMAL.fullmatch(raw):
        return None
    value = float(raw)
    return value if low <= value <= high else None


def _stamp(raw: str) -> datetime | None:
    if not _STAMP.fullmatch(raw):
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None


def query_pairs(text: str) -> list[tuple[str, str]]:
    """(name, value) pairs as starlette reads query parameters (Request.query_params: parse_qsl with blank values
    kept). Without an escape ("%" or "+") that is splitting on "&" and on each field's first "=", skipping empty
    fields: done here without parse_qsl's per-field unquoting."""
    if "%" in text or "+" in text:
        return parse_qsl(text, keep_blank_values=True)
    return [(name, value) for name, _, value in (field.partition("=") for field in text.split("&") if field)]


def plain_search_query(query_string: bytes) -> dict[str, Any] | None:
    """The search endpoint's keyword arguments for a plain, valid query string; None to let FastAPI validate it."""
    values: dict[str, Any] = {}
    amenities: list[str] = []
    for key, raw in query_pairs(query_string.decode("latin-1")):
        if not raw:
            return None
        if key == "amenities":
            amenities.append(raw)
            continue
        if key in values:
            return None  # a repeated parameter: FastAPI's lane decides which one counts
        value: Any
        if key == "lat":
            value = _bounded(raw, -90.0, 90.0)
        elif key == "lng":
            value = _bounded(raw, -180.0, 180.0)
        elif key == "radius_m":
            value = float(raw) if _DECIMAL.fullmatch(raw) else None
        elif key == "limit":
            value = int(raw) if _LIMIT.fullmatch(raw) else None
        elif key == "vehicle_type":
            value = raw if raw in _VEHICLE_TYPES else None
        elif key == "prefilter":
            value = raw if raw in _PREFILTERS else None
        elif key == "ev_charger":
            value = raw if raw in _EV_CHARGER else None
        elif key == "sort":
            value = raw if raw in _SORTS else None
        elif key in ("starts_at", "ends_at"):
            value = _stamp(raw)
        elif key == "max_price":
            value = int(raw) if _NON_NEGATIVE_INT.fullmatch(raw) else None
        elif key == "cursor":
            value = raw if len(raw) <= _MAX_CURSOR else None
        elif key == "bbox":
            value = raw if len(raw) <= _MAX_BBOX else None
        else:
            continue  # FastAPI ignores parameters the route does not declare
        if value is None:
            return None
        values[key] = value
    if amenities:
        if len(amenities) > _MAX_AMENITY_VALUES:
            return None
        values["amenities"] = amenities
    return values
