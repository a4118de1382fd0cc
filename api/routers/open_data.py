"""Open data for partners (X-API-Key, each key within its own quota): GeoJSON, ParkAPI v1 and v3, DATEX II.

Every feed is drawn from the worker's snapshot (geo.feed_snapshot), never built per request; see
docs/features/open-data.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from api.deps import CtxDep
from api.feeds import feed_response
from api.ratelimit import LimitedPartner
from core.clock import ensure_utc
from core.errors import ValidationFailed
from geo import feed_formats as fmt
from geo.feed_snapshot import FeedLot, Snapshot, feed_snapshots
from geo.window import parse_bbox

router = APIRouter(prefix="/api/v1/open", tags=["open data"])

GEOJSON = "application/geo+json"
JSON = "application/json"
FEED_RESPONSES: dict[int | str, dict[str, object]] = {
    304: {"description": "not modified since the ETag / date the client sent"},
    401: {"description": "missing or bad key"}, 422: {"description": "a bad parameter, named"},
    429: {"description": "partner quota exhausted"}}

BBoxParam = Annotated[str | None, Query(description="minLng,minLat,maxLng,maxLat (WGS 84)")]
SinceParam = Annotated[datetime | None, Query(description="RFC 3339 with offset: only lots changed after it")]


def _select(snap: Snapshot, bbox: str | None, modified_since: datetime | None) -> tuple[list[FeedLot], str]:
    """The lots a request asks for and the parameters its body depends on."""
    box = None
    if bbox is not None:
        b = parse_bbox(bbox)
        box = (b.west, b.south, b.east, b.north)
    lots = snap.in_bbox(box)
    since = None
    if modified_since is not None:
        try:
            since = ensure_utc(modified_since, field="modified_since")
        except ValueError as exc:
            raise ValidationFailed(str(exc), loc=("query", "modified_since")) from None
        lots = [lot for lot in lots if lot.changed_at > since]
    return lots, f"bbox={box}&since={since.isoformat() if since else ''}"


async def _snapshot(ctx: CtxDep) -> tuple[Snapshot, datetime]:
    now = ctx.clock.now()
    return await feed_snapshots(ctx).current(now=now), now


@router.get("/lots", summary="Lots with live availability as a GeoJSON FeatureCollection (RFC 7946)",
            responses={200: {"content": {GEOJSON: {}}}, **FEED_RESPONSES})
async def open_lots(request: Request, ctx: CtxDep, partner: LimitedPartner, bbox: BBoxParam = None,
                    modified_since: SinceParam = None) -> Response:
    snap, _ = await _snapshot(ctx)
    lots, params = _select(snap, bbox, modified_since)
    return feed_response(request, snap=snap, variant=f"geojson?{params}", media_type=GEOJSON,
                         max_age=ctx.settings.open_data_cache_seconds, cache=bbox is None and modified_since is None,
                         build=lambda: fmt.geojson_collection(lots))


@router.get("/parkapi", summary="ParkAPI v1 lots (as OpenTripPlanner's ParkAPI updater reads them)",
            responses={200: {"content": {JSON: {}}}, **FEED_RESPONSES})
async def open_parkapi_v1(request: Request, ctx: CtxDep, partner: LimitedPartner, bbox: BBoxParam = None,
                          modified_since: SinceParam = None) -> Response:
    snap, _ = await _snapshot(ctx)
    lots, params = _select(snap, bbox, modified_since)
    # last_downloaded is when the snapshot was read, so one snapshot gives one body (and one ETag)
    return feed_response(request, snap=snap, variant=f"parkapi1?{params}", media_type=JSON,
                         max_age=ctx.settings.open_data_cache_seconds, cache=bbox is None and modified_since is None,
                         build=lambda: fmt.parkapi_v1(lots, last_updated=snap.changed_at, now=snap.built_at))


@router.get("/parkapi/v3/parking-sites", summary="ParkAPI v3 combined parking sites",
            responses={200: {"content": {JSON: {}}}, **FEED_RESPONSES})
async def open_parkapi_v3(request: Request, ctx: CtxDep, partner: LimitedPartner, bbox: BBoxParam = None,
                          modified_since: SinceParam = None) -> Response:
    snap, _ = await _snapshot(ctx)
    lots, params = _select(snap, bbox, modified_since)
    return feed_response(request, snap=snap, variant=f"parkapi3?{params}", media_type=JSON,
                         max_age=ctx.settings.open_data_cache_seconds, cache=bbox is None and modified_since is None,
                         build=lambda: fmt.parkapi_v3(lots))


@router.get("/datex2", summary="DATEX II v3 Parking Publication Light (JSON)",
            responses={200: {"content": {JSON: {}}}, **FEED_RESPONSES})
async def open_datex2(request: Request, ctx: CtxDep, partner: LimitedPartner, bbox: BBoxParam = None,
                      modified_since: SinceParam = None) -> Response:
    snap, _ = await _snapshot(ctx)
    lots, params = _select(snap, bbox, modified_since)
    s = ctx.settings
    return feed_response(request, snap=snap, variant=f"datex2?{params}", media_type=JSON,
                         max_age=s.open_data_cache_seconds, cache=bbox is None and modified_since is None,
                         build=lambda: fmt.datex2(lots, now=snap.changed_at, country=s.open_data_country,
                                                  publisher=s.open_data_publisher, lang=s.open_data_lang))
