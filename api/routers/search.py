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
from api.routers.discovery_params import parse_amenities, wants_geojson, window_from
from api.routers.search_query import SearchParams, plain_search_query
from api.routers.search_walk import walk_search
from api.schemas.discovery import (
    GEOJSON_MEDIA_TYPE,
    SearchFeatureCollection,
    SearchResponse,
    search_geojson,
    search_json,
)
from controllers.chargers import ev_board
from core.errors import DomainError
from geo.availability import Counted, availability_cache, busy_cache
from geo.lotindex import Hit, lot_index
from geo.search import DEFAULT_PREFILTER, Prefilter, SearchPage, SearchQuery, search_lots
from geo.window import parse_bbox
from pricing.service import booked_occupancy, quote_service

DEFAULT_RADIUS_M = 1000.0


router = APIRouter(prefix="/lots", tags=["discovery"])


def shortcut() -> Shortcut:
    """Search ahead of routing (`api.middleware.RequestContextMiddleware`): a query string the route's own model
    accepts (`api.routers.search_query.SearchParams`, the same judge as FastAPI's lane) is answered without
    FastAPI's routing, dependency solving and its exception and exit-stack middleware. A domain error answers as the app's
    handler would (problem+json naming the field); anything else propagates to the server error middleware,
    which answers 500 as it does for every route. A query the model refuses goes to the route below, whose
    422 names the field."""
    route = next(r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is search)

    async def answer(scope: Scope, receive: Receive, send: Send) -> Receive | None:
        params = plain_search_query(scope["query_string"]) if scope["method"] == "GET" else None
        if params is None:
            return receive
        scope["route"] = route  # what routing would have set: the metrics' route label
        request = Request(scope, receive, send)
        try:
            response = await answer_search(request, params)
        except DomainError as exc:
            response = domain_problem(request, exc)
        await response(scope, receive, send)
        return None

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
        "`sort=walk` (or `destination_id`) orders the lots within `max_walk_m` by walking time along the imported "
        "pedestrian network; items then carry `walk: {meters, minutes}`, or `walk: null` with `walk_reason`. "
        "`Accept: application/geo+json` returns an RFC 7946 FeatureCollection ([lng, lat])."),
)
async def search(request: Request, params: Annotated[SearchParams, Query()]) -> Any:
    return await answer_search(request, params)


async def answer_search(request: Request, params: SearchParams) -> Response:
    """A plain search, or a walking one (`sort=walk` or `destination_id`): the same on both lanes."""
    if params.sort == "walk" or params.destination_id is not None:
        page = await walk_search(request, search_page, params)
    else:
        page = await search_page(request, params)
    if wants_geojson(request):
        return Response(search_geojson(page), media_type=GEOJSON_MEDIA_TYPE)
    return Response(search_json(page), media_type="application/json")


#: the in-process index; the SQL baselines ("knn", "h3", "st_dwithin") are for tests (monkeypatch this) and
#: loadtests/bench_search.py, which runs them on its own: they are not a public parameter (issue 15)
PREFILTER: Prefilter = DEFAULT_PREFILTER


async def search_page(request: Request, params: SearchParams) -> SearchPage:
    """One page of a plain search from parameters the route's model accepted (on FastAPI's lane or the fast
    lane)."""
    settings, ctx = request.app.state.settings, request.app.state.ctx
    now = ctx.clock.now()
    prefilter = PREFILTER
    lat, lng, radius_m = params.lat, params.lng, params.radius_m
    box = parse_bbox(params.bbox) if params.bbox is not None else None
    if box is None and radius_m is None and lat is not None and lng is not None:
        radius_m = min(DEFAULT_RADIUS_M, float(settings.max_search_radius_m))
    query = SearchQuery(lat=lat, lng=lng, radius_m=radius_m, bbox=box, vehicle_type=params.vehicle_type,
                        amenities=parse_amenities(params.amenities), max_price=params.max_price, sort=params.sort,
                        limit=params.limit, cursor=params.cursor, prefilter=prefilter, ev_charger=params.ev_charger)
    window = window_from(request, params.starts_at, params.ends_at, now)
    # every lot's EV connector counts from the process's board (re-read at most every ev_board_refresh_ms)
    board = ev_board(ctx)
    ev = await board.counts(now)
    ev_free = await board.lots_with_free_charger(now) if params.ev_charger == "available" else None
    pool, prices, forecasts = await ctx.pg(), quote_service(ctx), forecast_cache(ctx)
    await forecasts.refresh_if_due()  # a clock check; PostgreSQL at most once a minute per process

    if prefilter == "index":  # a radius or a bbox, from the in-process lot index
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
                                 snapshot=await lot_index(ctx).snapshot(now), ev=ev, ev_free=ev_free,
                                 forecasts=forecasts.page)
    else:
        # The SQL baselines read in autocommit: no BEGIN/COMMIT round trips; availability is a live count anyway.
        async with ctx.engine.connect() as raw:
            conn = await raw.execution_options(isolation_level="AUTOCOMMIT")

            async def sql_counts(rows: Sequence[Any], **span: Any) -> dict[uuid.UUID, Counted]:
                return await availability_cache(ctx).counts(pool, lot_ids=[r.id for r in rows], now=now, **span)

            async def sql_quotes(rows: Sequence[Any], **span: Any) -> dict[uuid.UUID, dict[str, Any]]:
                return await prices.quotes_for_page(conn, lot_ids=[r.id for r in rows], **span)

            page = await search_lots(conn, query=query, window=window, max_radius_m=settings.max_search_radius_m,
                                     counts=sql_counts, quotes=sql_quotes, ev=ev, ev_free=ev_free,
                                     forecasts=forecasts.page)
    return page
