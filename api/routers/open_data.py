"""Open data for partners (X-API-Key, each key within its own quota): GeoJSON, ParkAPI v1 and v3, DATEX II.

Every feed is drawn from the worker's snapshot (geo.feed_snapshot), never built per request; see
docs/features/open-data.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from cachetools import TTLCache
from fastapi import APIRouter, Query, Request, Response
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from api.deps import CtxDep, Partner
from api.feeds import cache_headers, etag_matches, etag_of, feed_response
from api.middleware import Shortcut
from api.problems import domain_problem
from api.ratelimit import LimitedPartner, get_limiter
from api.schemas.common import Rfc3339
from core.clock import ensure_utc
from core.context import AppContext
from core.errors import TooManyRequests, ValidationFailed
from core.security import hash_api_key
from core.ttlcache import ttl_cache
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
SinceParam = Annotated[Rfc3339 | None, Query(description="RFC 3339 with offset: only lots changed after it")]


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


#: how long a worker answers a key's conditional polls (304) without looking the key up again: a key revoked
#: meanwhile may still learn for that long that nothing changed, never any data (a 200 always looks the key up)
POLL_KEY_TTL = timedelta(seconds=10)


def _poll_keys(ctx: AppContext) -> TTLCache[str, Partner]:
    return ctx.shared("open_data_poll_keys", lambda: ttl_cache(clock=ctx.clock, ttl=POLL_KEY_TTL))


async def _snapshot(ctx: CtxDep, request: Request | None = None, partner: Partner | None = None
                    ) -> tuple[Snapshot, datetime]:
    now = ctx.clock.now()
    if request is not None and partner is not None:
        _poll_keys(ctx)[hash_api_key(request.headers.get("x-api-key", ""))] = partner
    return await feed_snapshots(ctx).current(now=now), now


#: the plain (no query string) poll of each feed: its path and the variant its body and ETag depend on
PLAIN_POLLS = {"/api/v1/open/lots": "geojson?bbox=None&since=", "/api/v1/open/parkapi": "parkapi1?bbox=None&since=",
               "/api/v1/open/parkapi/v3/parking-sites": "parkapi3?bbox=None&since=",
               "/api/v1/open/datex2": "datex2?bbox=None&since="}


def shortcuts() -> dict[str, Shortcut]:
    """Conditional polls answered ahead of routing (api.middleware.RequestContextMiddleware): a GET without a query
    string, with If-None-Match and a key this worker saw within POLL_KEY_TTL, whose ETag is current, is charged to
    the partner's quota and answered 304; anything else goes to the route below."""
    return {path: _poll_shortcut(path, variant) for path, variant in PLAIN_POLLS.items()}


def _poll_shortcut(path: str, variant: str) -> Shortcut:
    route = next(r for r in router.routes if isinstance(r, APIRoute) and r.path == path)

    async def answer(scope: Scope, receive: Receive, send: Send) -> Receive | None:
        if scope["method"] != "GET" or scope["query_string"]:
            return receive
        inm = key = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                inm = value.decode("latin-1")
            elif name == b"x-api-key":
                key = value.decode("latin-1")
        if inm is None or key is None:
            return receive
        ctx: AppContext = scope["app"].state.ctx
        now = ctx.clock.now()
        partner = _poll_keys(ctx).get(hash_api_key(key))
        if partner is None:
            return receive
        snap = await feed_snapshots(ctx).current(now=now)
        etag = etag_of(snap, variant)
        if not etag_matches(inm, etag):
            return receive
        scope["route"] = route  # what routing would have set: the metrics' route label
        try:
            await get_limiter(ctx).enforce(scope="partner", identity=str(partner.partner_id), rate=partner.quota)
        except TooManyRequests as exc:
            await domain_problem(Request(scope, receive, send), exc)(scope, receive, send)
            return None
        headers = cache_headers(snap, etag, ctx.settings.open_data_cache_seconds)
        await send({"type": "http.response.start", "status": 304,
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]})
        await send({"type": "http.response.body", "body": b""})
        return None

    return answer


@router.get("/lots", summary="Lots with live availability as a GeoJSON FeatureCollection (RFC 7946)",
            responses={200: {"content": {GEOJSON: {}}}, **FEED_RESPONSES})
async def open_lots(request: Request, ctx: CtxDep, partner: LimitedPartner, bbox: BBoxParam = None,
                    modified_since: SinceParam = None) -> Response:
    snap, _ = await _snapshot(ctx, request, partner)
    lots, params = _select(snap, bbox, modified_since)
    return feed_response(request, snap=snap, variant=f"geojson?{params}", media_type=GEOJSON,
                         max_age=ctx.settings.open_data_cache_seconds, cache=bbox is None and modified_since is None,
                         build=lambda: fmt.geojson_collection(lots))


@router.get("/parkapi", summary="ParkAPI v1 lots (as OpenTripPlanner's ParkAPI updater reads them)",
            responses={200: {"content": {JSON: {}}}, **FEED_RESPONSES})
async def open_parkapi_v1(request: Request, ctx: CtxDep, partner: LimitedPartner, bbox: BBoxParam = None,
                          modified_since: SinceParam = None) -> Response:
    snap, _ = await _snapshot(ctx, request, partner)
    lots, params = _select(snap, bbox, modified_since)
    # last_downloaded is when the snapshot was read, so one snapshot gives one body (and one ETag)
    return feed_response(request, snap=snap, variant=f"parkapi1?{params}", media_type=JSON,
                         max_age=ctx.settings.open_data_cache_seconds, cache=bbox is None and modified_since is None,
                         build=lambda: fmt.parkapi_v1(lots, last_updated=snap.changed_at, now=snap.built_at))


@router.get("/parkapi/v3/parking-sites", summary="ParkAPI v3 combined parking sites",
            responses={200: {"content": {JSON: {}}}, **FEED_RESPONSES})
async def open_parkapi_v3(request: Request, ctx: CtxDep, partner: LimitedPartner, bbox: BBoxParam = None,
                          modified_since: SinceParam = None) -> Response:
    snap, _ = await _snapshot(ctx, request, partner)
    lots, params = _select(snap, bbox, modified_since)
    return feed_response(request, snap=snap, variant=f"parkapi3?{params}", media_type=JSON,
                         max_age=ctx.settings.open_data_cache_seconds, cache=bbox is None and modified_since is None,
                         build=lambda: fmt.parkapi_v3(lots))


@router.get("/datex2", summary="DATEX II v3 Parking Publication Light (JSON)",
            responses={200: {"content": {JSON: {}}}, **FEED_RESPONSES})
async def open_datex2(request: Request, ctx: CtxDep, partner: LimitedPartner, bbox: BBoxParam = None,
                      modified_since: SinceParam = None) -> Response:
    snap, _ = await _snapshot(ctx, request, partner)
    lots, params = _select(snap, bbox, modified_since)
    s = ctx.settings
    return feed_response(request, snap=snap, variant=f"datex2?{params}", media_type=JSON,
                         max_age=s.open_data_cache_seconds, cache=bbox is None and modified_since is None,
                         build=lambda: fmt.datex2(lots, now=snap.changed_at, country=s.open_data_country,
                                                  publisher=s.open_data_publisher, lang=s.open_data_lang))
