"""Destinations: places people drive to, by name (from the imported OSM extract and operators' venues)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import CtxDep, OperatorUser
from api.schemas.common import StrictBody
from core.errors import ValidationFailed
from geo.walk import QUERY_MAX, create_venue, find_destinations

router = APIRouter(prefix="/destinations", tags=["discovery"])


class Location(StrictBody):
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lng: float = Field(ge=-180, le=180, allow_inf_nan=False)


class DestinationOut(BaseModel):
    id: str
    name: str
    kind: str = Field(description="what the place is: the OSM tag's value (theatre, station...) or the venue's kind")
    source: str = Field(description="osm (the imported extract) or operator (a venue an operator defined)")
    location: Location
    distance_m: float | None = Field(None, description="from `near`, when given")


class DestinationsOut(BaseModel):
    items: list[DestinationOut]


class VenueIn(StrictBody):
    name: str = Field(min_length=1, max_length=200)
    kind: str = Field("venue", min_length=1, max_length=50)
    location: Location


def parse_near(raw: str | None) -> tuple[float, float] | None:
    """`lat,lng` -> a point; anything else is 422 on `near`."""
    if raw is None:
        return None
    parts = raw.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        lat, lng = (float(p) for p in parts)
        Location(lat=lat, lng=lng)
    except ValueError:
        raise ValidationFailed("near must be 'lat,lng' in degrees", loc=("query", "near")) from None
    return lat, lng


@router.get("", response_model=DestinationsOut, summary="Find destinations by name (prefix matches first, then nearest)")
async def destinations(
    ctx: CtxDep,
    q: Annotated[str, Query(description="2 to 100 characters of the place's name")],
    near: Annotated[str | None, Query(max_length=60, description="lat,lng: nearer places first")] = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> DestinationsOut:
    if len(q) > QUERY_MAX * 4:
        raise ValidationFailed("q is too long", loc=("query", "q"))
    point = parse_near(near)
    async with (await ctx.pg()).acquire() as pg:
        found = await find_destinations(pg, query=q, near=point, limit=limit)
    return DestinationsOut.model_validate({"items": [d.as_dict() for d in found]})


@router.post("", status_code=201, response_model=DestinationOut,
             summary="Define a venue drivers can search for by name (operators)")
async def add_venue(ctx: CtxDep, user: OperatorUser, body: VenueIn) -> DestinationOut:
    async with (await ctx.pg()).acquire() as pg:
        venue = await create_venue(pg, name=body.name, kind=body.kind, lat=body.location.lat,
                                   lng=body.location.lng, organisation_id=user.organisation_id)
    return DestinationOut.model_validate(venue.as_dict())
