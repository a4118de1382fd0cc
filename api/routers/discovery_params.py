"""Query parameters shared by search, lot detail and the heatmap, parsed into domain values."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Query, Request

from core.errors import ValidationFailed
from core.vocabulary import VehicleType
from geo.schemas import AMENITIES
from geo.window import Window, resolve_window

VehicleTypeParam = VehicleType
StartsAt = Annotated[datetime | None, Query(description="RFC 3339 with offset; default now")]
EndsAt = Annotated[datetime | None, Query(description="RFC 3339 with offset; default starts_at + 1 h")]


def window_from(request: Request, starts_at: datetime | None, ends_at: datetime | None, now: datetime) -> Window:
    return resolve_window(starts_at=starts_at, ends_at=ends_at, now=now,
                          max_window_days=request.app.state.settings.max_window_days)


def parse_amenities(raw: list[str] | None) -> tuple[str, ...]:
    """Repeated or comma-separated amenity names; unknown ones are 422 on `amenities`."""
    names = sorted({part.strip() for value in raw or [] for part in value.split(",") if part.strip()})
    unknown = [n for n in names if n not in AMENITIES]
    if unknown:
        raise ValidationFailed(f"unknown amenities {unknown}; known: {list(AMENITIES)}", loc=("query", "amenities"))
    return tuple(names)


def wants_geojson(request: Request) -> bool:
    """Whether the (first) Accept header lists application/geo+json; read off the ASGI scope's raw headers,
    whose names servers give in lower case."""
    for name, value in request.scope["headers"]:
        if name == b"accept":
            return any(part.split(b";")[0].strip().lower() == b"application/geo+json" for part in value.split(b","))
    return False
