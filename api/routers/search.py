"""GET /api/v1/lots/search: open lots near a point or in a bbox, nearest first, JSON or GeoJSON."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from analytics.forecast import forecast_cache
from api.middleware import Shortcut
from api.problems import domain_problem
from api.routers.discovery_params import EndsAt, StartsAt, VehicleTypeParam, parse_amenities, wants_geojson, window_from
from api.routers.search_query import plain_search_query
from api.schemas.discovery import (
    GEOJSON_MEDIA_TYPE,
    SearchFeatureCollection,
    SearchResponse,
    search_geojson,
    search_json,
)
from core.errors import DomainError
from geo.availability import Counted, availability_cache, busy_cache
from geo.lotindex import Hit, lot_index
from geo.search import DEFAULT_PREFILTER, Prefilter, SearchQuery, Sort, search_lots
from geo.window import parse_bbox
from pricing.service import booked_occupancy, quote_service

DEFAULT_RADIUS_M = 1000.0


router = APIRouter(prefix="/lots", tags=["discovery"])


def shortcut() -> Shortcut:
    """Search ahead of routing (`api.middleware.RequestContextMiddleware`): a plain, valid query string
    (`api.routers.search_query`) is answered without FastAPI's per-parameter validation, its routing and its
    exception and exit-stack middleware (~20 us of a search's ~300 us). A domain error answers as the app's
    handler would (problem+json naming the field); anything else propagates to the server error middleware,
    which answers 500 as it does for every route. Other queries are left to the route below, FastAPI's own."""
    route = next(r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is search)

    async def answer(scope: Scope, receive: Receive, send: Send) -> bool:
        values = plain_search_query(scope["query_string"]) if scope["method"] == "GET" else None
        if values is None:
            return False
        scope["route"] = route  # what routing would have set: the metrics' route label
        request = Request(scope, receive, send)
        try:
            response = await run_search(request, **values)
        except DomainError as exc:
            response = domain_problem(request, exc)
        await response(scope, receive, send)
        return True

    return answer


@router.get(
    "/search", response_model=SearchResponse, summary="Find open lots nearby with availability for a window",
    responses={200: {"content": {GEOJSON_MEDIA_TYPE: {"schema": SearchFeatureCollection.model_json_schema()}}}},
    description=(
        "By point (`lat`, `lng`, `radius_m`, default 1000 m, at most the configured maximum) or by "
        "`bbox=minLng,minLat,maxLng,maxLat` (west > east crosses the antimeridian). Sorted by great-circle "
        "distance, keyset-paginated with `next_cursor`. Each item carries a signed quote for the window (null "
        "when the lot has no rates for the type; a regular car when no `vehicle_type` is given). `max_price` "
        "(minor units) drops lots whose quote exceeds it (within the page); `sort=price` still orders like `distance`. "
        "`Accept: application/geo+json` returns an RFC 7946 FeatureCollection ([lng, lat])."),
)
async def search(
    request: Request,
    lat: Annotated[float | None, Query(ge=-90, le=90, allow_inf_nan=False)] = None,
    lng: Annotated[float | None, Query(ge=-180, le=180, allow_inf_nan=False)] = None,
    radius_m: Annotated[float | None, Query(allow_inf_nan=False, description="metres, > 0")] = None,
    bbox: Annotated[str | None, Query(max_length=200, description="minLng,minLat,maxLng,maxLat")] = None,
    starts_at: StartsAt = None, ends_at: EndsAt = None,
    vehicle_type: VehicleTypeParam | None = None,
    amenities: Annotated[list[str] | None, Query(max_length=20, description="e.g. covered,ev_charging")] = None,
    max_price: Annotated[int | None, Query(ge=0, description="minor units; see description")] = None,
    sort: Sort = "distance",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(min_length=1, max_length=500)] = None,
    prefilter: Annotated[Prefilter,
                         Query(description="index (in-process H3 ring, the default); the others are the SQL "
                                           "baselines the benchmark compares it with")] = DEFAULT_PREFILTER,
) -> Any:
    return await run_search(request, lat=lat, lng=lng, radius_m=radius_m, bbox=bbox, starts_at=starts_at,
                            ends_at=ends_at, vehicle_type=vehicle_type, amenities=amenities, max_price=max_price,
                            sort=sort, limit=limit, cursor=cursor, prefilter=prefilter)


async def run_search(request: Request, *, lat: float | None = None, lng: float | None = None,
                     radius_m: float | None = None, bbox: str | None = None, starts_at: datetime | None = None,
                     ends_at: datetime | None = None, vehicle_type: str | None = None,
                     amenities: list[str] | None = None, max_price: int | None = None,
                     sort: Sort = "distance", limit: int = 20, cursor: str | None = None,
                     prefilter: Prefilter = DEFAULT_PREFILTER) -> Response:
    """One search from validated parameters (FastAPI's, or the fast lane's: the same values either way)."""
    settings, ctx = request.app.state.settings, request.app.state.ctx
    now = ctx.clock.now()
    box = parse_bbox(bbox) if bbox is not None else None
    if box is None and radius_m is None and lat is not None and lng is not None:
        radius_m = min(DEFAULT_RADIUS_M, float(settings.max_search_radius_m))
    query = SearchQuery(lat=lat, lng=lng, radius_m=radius_m, bbox=box, vehicle_type=vehicle_type,
                        amenities=parse_amenities(amenities), max_price=max_price, sort=sort, limit=limit,
                        cursor=cursor, prefilter=prefilter)
    window = window_from(request, starts_at, ends_at, now)
    pool, prices, forecasts = await ctx.pg(), quote_service(ctx), forecast_cache(ctx)
    await forecasts.refresh_if_due()  # a clock check; PostgreSQL at most once a minute per process

    if box is None and prefilter == "index":
        async def indexed_counts(rows: Sequence[Hit], **span: Any) -> dict[uuid.UUID, Counted]:
            return await busy_cache(ctx).counts(pool, lots=rows, now=now, **span)

        async def indexed_quotes(rows: Sequence[Hit], **span: Any) -> dict[uuid.UUID, dict[str, Any]]:
            cards = {r.id: r.card for r in rows if r.card is not None}
            return await prices.quotes_for_cards(cards, occupancy=occupancy, **span)

        async def occupancy(lot_ids: Sequence[uuid.UUID], starts: datetime, ends: datetime) -> dict[uuid.UUID, Any]:
            async with ctx.engine.connect() as conn:  # only for lots with dynamic pricing
                return await booked_occupancy(conn)(lot_ids, starts, ends)

        page = await search_lots(None, query=query, window=window, max_radius_m=settings.max_search_radius_m,
                                 counts=indexed_counts, quotes=indexed_quotes,
                                 snapshot=await lot_index(ctx).snapshot(now), forecasts=forecasts.page)
    else:
        # The SQL baselines read in autocommit: no BEGIN/COMMIT round trips; availability is a live count anyway.
        async with ctx.engine.connect() as raw:
            conn = await raw.execution_options(isolation_level="AUTOCOMMIT")

            async def sql_counts(rows: Sequence[Any], **span: Any) -> dict[uuid.UUID, Counted]:
                return await availability_cache(ctx).counts(pool, lot_ids=[r.id for r in rows], now=now, **span)

            async def sql_quotes(rows: Sequence[Any], **span: Any) -> dict[uuid.UUID, dict[str, Any]]:
                return await prices.quotes_for_page(conn, lot_ids=[r.id for r in rows], **span)

            page = await search_lots(conn, query=query, window=window, max_radius_m=settings.max_search_radius_m,
                                     counts=sql_counts, quotes=sql_quotes, forecasts=forecasts.page)
    if wants_geojson(request):
        return Response(search_geojson(page), media_type=GEOJSON_MEDIA_TYPE)
    return Response(search_json(page), media_type="application/json")
