"""Response shapes of search, lot detail, availability and the H3 heatmap (JSON and RFC 7946 GeoJSON)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson
from geojson_pydantic import Feature, FeatureCollection, Point
from pydantic import BaseModel, Field

from analytics.forecast import ShownForecast
from controllers.chargers import NO_CHARGERS, EvCounts
from geo.detail import LotAvailability
from geo.schemas import LatLng, Lot
from geo.search import SearchItem, SearchPage
from geo.zones import ZoneMap
from pricing.service import ShownQuote

GEOJSON_MEDIA_TYPE = "application/geo+json"


class Freshness(BaseModel):
    source: str = Field(description="where the count comes from: database, bitmap, sensor, gate_counter")
    as_of: datetime


class LotRef(BaseModel):
    id: uuid.UUID
    name: str
    location: LatLng


class EvChargers(BaseModel):
    """A lot's EV charging connectors by state (one car per connector): total = available + charging + faulted
    + offline."""

    total: int = 0
    available: int = Field(default=0, description="online, working and free")
    charging: int = Field(default=0, description="in use (preparing, charging, suspended, finishing, reserved)")
    faulted: int = Field(default=0, description="reporting Faulted or Unavailable")
    offline: int = Field(default=0, description="silent past twice their heartbeat interval, or never reported")


class SearchForecast(BaseModel):
    occupancy_at_start: float = Field(ge=0, le=1, description="forecast occupancy share when the window starts")
    likely_full_at: datetime | None = Field(description="first 15-minute step forecast at 95 % or more (next 2 days)")


class WalkOut(BaseModel):
    meters: float = Field(description="along the pedestrian network, never below the straight-line distance")
    minutes: float = Field(description="at the stated walking speed, rounded up to a tenth")


class WalkSummary(BaseModel):
    speed_m_per_min: float
    max_walk_m: float
    network: bool = Field(description="false when no walking network covers the search point")
    note: str
    destination: dict[str, Any] | None = Field(description="{id, name, kind, source, location} when searched by one")


class SearchItemOut(BaseModel):
    lot: LotRef
    distance_m: float = Field(description="great-circle distance from the search point, metres")
    available: int = Field(description="free compatible spots for the whole window (a count, never which)")
    capacity: int = Field(description="in-service spots compatible with vehicle_type (all types when absent)")
    quote: dict[str, Any] | None = Field(description="{total: money} once rates exist, else null")
    freshness: Freshness
    ev_chargers: EvChargers = Field(description="EV charging connectors by state (all 0: no chargers)")
    forecast: SearchForecast | None = Field(description="null until the lot has a forecast (analytics)")
    walk: WalkOut | None = Field(default=None, description="walking searches only (sort=walk, destination_id)")
    walk_reason: str | None = Field(default=None, description="walking searches only: why walk is null")


class SearchResponse(BaseModel):
    items: list[SearchItemOut]
    next_cursor: str | None
    walk: WalkSummary | None = Field(default=None, description="walking searches only")


class SearchFeatureCollection(FeatureCollection[Feature[Point, dict[str, Any]]]):
    """RFC 7946 FeatureCollection; `next_cursor` and `walk` are foreign members (section 6.1)."""

    next_cursor: str | None = None
    walk: WalkSummary | None = None


def _item(item: SearchItem) -> dict[str, Any]:
    """One item as SearchItemOut dumps it in JSON mode, built directly (pydantic costs more than the search)."""
    return {"lot": {"id": str(item.lot_id), "name": item.name, "location": {"lat": item.lat, "lng": item.lng}},
            "distance_m": round(item.distance_m, 2), "available": item.available, "capacity": item.capacity,
            "quote": item.quote, "freshness": {"source": item.source, "as_of": item.as_of},
            "ev_chargers": (item.ev_chargers or NO_CHARGERS).as_json(), "forecast": item.forecast,
            **_walk_fields(item)}


def _walk_fields(item: SearchItem) -> dict[str, Any]:
    """`walk` and `walk_reason` of a walking search's item (a plain search's items have neither)."""
    if item.walk is None and item.walk_reason is None:
        return {}
    return {"walk": item.walk.as_dict() if item.walk is not None else None, "walk_reason": item.walk_reason}


_ITEM_TAIL = b',"distance_m":%b,"available":%d,"capacity":%d,"freshness":%b,"ev_chargers":%b,"forecast":%b'
_NO_EV = orjson.dumps(NO_CHARGERS)


def search_json(page: SearchPage) -> bytes:
    """A SearchResponse as JSON bytes, joined from pieces: a lot the index wrote as JSON already and a quote
    pricing wrote as JSON already (~1.4 KB each) go in as they are, copied once into the answer."""
    dumps = orjson.dumps
    walking = page.walk is not None
    out = [b'{"items":[']
    append = out.append
    source, as_of, fresh = None, None, b""  # a page's counts mostly share one source and time (one object each)
    opening = b'{"lot":'
    for i in page.items:
        if i.source is not source or i.as_of is not as_of:
            source, as_of = i.source, i.as_of
            fresh = dumps({"source": source, "as_of": as_of}, option=orjson.OPT_UTC_Z)
        quote = i.quote
        append(opening)
        append(i.lot_json if i.lot_json is not None else
               dumps({"id": str(i.lot_id), "name": i.name, "location": {"lat": i.lat, "lng": i.lng}}))
        append(b',"quote":')
        append(b"null" if quote is None else quote.json if isinstance(quote, ShownQuote) else
               dumps(quote, option=orjson.OPT_UTC_Z))
        ev, forecast = i.ev_chargers, i.forecast
        append(_ITEM_TAIL % (dumps(round(i.distance_m, 2)), i.available, i.capacity, fresh,
                             _NO_EV if ev is None else dumps(ev),
                             b"null" if forecast is None else forecast.json if isinstance(forecast, ShownForecast)
                             else dumps(forecast)))
        if walking:
            append(b',"walk":')
            append(b"null" if i.walk is None else dumps(i.walk.as_dict()))
            append(b',"walk_reason":')
            append(dumps(i.walk_reason))
        append(b"}")
        opening = b',{"lot":'
    append(b'],"next_cursor":')
    append(dumps(page.next_cursor))
    if walking:
        append(b',"walk":')
        append(dumps(page.walk))
    append(b"}")
    return b"".join(out)


def search_geojson(page: SearchPage) -> bytes:
    """A SearchFeatureCollection (RFC 7946: coordinates are [lng, lat]) as JSON bytes."""
    features = []
    for item in page.items:
        out = _item(item)
        lot = out.pop("lot")
        features.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [item.lng, item.lat]},
                         "properties": {"id": lot["id"], "name": lot["name"], **out}, "id": str(item.lot_id)})
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": features, "next_cursor": page.next_cursor}
    if page.walk is not None:
        collection["walk"] = page.walk
    return orjson.dumps(collection, option=orjson.OPT_UTC_Z)


class TypeAvailability(BaseModel):
    capacity: int = Field(description="in-service spots of this type")
    available: int


class LevelAvailability(BaseModel):
    id: uuid.UUID
    name: str
    capacity: int = Field(description="all spots of the level, in service or not")
    by_type: dict[str, TypeAvailability]


class LotDetailAvailability(BaseModel):
    starts_at: datetime
    ends_at: datetime
    by_type: dict[str, TypeAvailability]
    freshness: Freshness


class LotDetail(Lot):
    availability: LotDetailAvailability
    levels_availability: list[LevelAvailability]
    ev_chargers: EvChargers = Field(default_factory=lambda: EvChargers())


def lot_detail(view: LotAvailability, *, ev_chargers: EvCounts | None = None) -> LotDetail:
    levels = []
    for level in view.lot.levels:
        per_type = view.by_level.get(level.id, {})
        levels.append(LevelAvailability(id=level.id, name=level.name, capacity=level.capacity, by_type={
            t: TypeAvailability(capacity=c, available=a) for t, (c, a) in sorted(per_type.items())}))
    availability = LotDetailAvailability(
        starts_at=view.window.slot_start, ends_at=view.window.slot_end,
        by_type={t: TypeAvailability(capacity=c, available=a) for t, (c, a) in view.by_type().items()},
        freshness=Freshness(source=view.source, as_of=view.as_of))
    return LotDetail(**view.lot.model_dump(), availability=availability, levels_availability=levels,
                     ev_chargers=EvChargers(**(ev_chargers or NO_CHARGERS).as_json()))


class LotWindowAvailability(BaseModel):
    lot_id: uuid.UUID
    vehicle_type: str
    starts_at: datetime = Field(description="widened to whole 15-minute slots")
    ends_at: datetime
    available: int
    quote: dict[str, Any] | None = Field(description="{total, expires_at, token} once the pricing engine lands")
    freshness: Freshness


class ZoneCellOut(BaseModel):
    cell: str = Field(description="H3 index (hex)")
    res: int
    centre: LatLng
    lots: int
    capacity: int
    available: int


class ZonesResponse(BaseModel):
    res: int
    starts_at: datetime
    ends_at: datetime
    items: list[ZoneCellOut]
    freshness: Freshness


def zones_json(zones: ZoneMap) -> ZonesResponse:
    return ZonesResponse(
        res=zones.res, starts_at=zones.window.slot_start, ends_at=zones.window.slot_end,
        items=[ZoneCellOut(cell=c.cell, res=zones.res, centre=LatLng(lat=c.lat, lng=c.lng), lots=c.lots,
                           capacity=c.capacity, available=c.available) for c in zones.cells],
        freshness=Freshness(source=zones.source, as_of=zones.as_of))


class Page(BaseModel):
    items: list[Any]
    next_cursor: str | None
