"""Search by walking time: the lots within the maximum walk of a destination (or a point), ordered by the walk
along the pedestrian network, each item carrying `walk: {meters, minutes}` or `walk: null` with a reason."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import Request, Response

from api.routers.search_query import SearchParams
from core.errors import ValidationFailed
from geo.walk import DEFAULT_MAX_WALK_M, NO_NETWORK, WALK_SPEED_M_PER_MIN, destination_and_walks, walking_times

WALK_PAGE = 40  # a walking search ranks up to this many lots nearest in a straight line within the maximum walk

RunSearch = Callable[..., Awaitable[Response]]


async def walk_search(request: Request, run: RunSearch, params: SearchParams) -> Response:
    """One walking search; `run` is the plain search, asked for the straight-line candidates."""
    ctx, settings = request.app.state.ctx, request.app.state.settings
    pool = await ctx.pg()
    destination_id, lat, lng, limit = params.destination_id, params.lat, params.lng, params.limit
    destination = remembered = None
    max_walk = float(params.max_walk_m or DEFAULT_MAX_WALK_M)
    if destination_id is not None:
        async with pool.acquire() as pg:
            destination, remembered = await destination_and_walks(pg, destination_id=destination_id,
                                                                   max_walk_m=max_walk)
        lat, lng = destination.lat, destination.lng
    elif lat is None or lng is None:
        raise ValidationFailed("a walking search needs destination_id, or lat and lng",
                               loc=("query", "destination_id"))
    radius = min(max_walk, float(settings.max_search_radius_m))
    candidates = params.model_copy(update={"lat": lat, "lng": lng, "radius_m": radius, "bbox": None, "cursor": None,
                                           "limit": WALK_PAGE, "sort": "distance", "destination_id": None})
    response = await run(request, candidates)
    if response.status_code != 200:
        return response
    body = orjson.loads(response.body)
    geojson = "features" in body
    items: list[dict[str, Any]] = body["features"] if geojson else body["items"]

    def lot_id(item: dict[str, Any]) -> uuid.UUID:
        return uuid.UUID(item["id"] if geojson else item["lot"]["id"])

    def props(item: dict[str, Any]) -> dict[str, Any]:
        return item["properties"] if geojson else item

    async with pool.acquire() as pg:
        times = await walking_times(pg, lat=lat, lng=lng, lot_ids=[lot_id(i) for i in items], max_walk_m=max_walk,
                                    destination_id=destination.id if destination else None,
                                    remembered_walks=remembered)
    kept = []
    for item in items:
        walk = times.walks.get(lot_id(item))
        reason = times.network_reason or times.reasons.get(lot_id(item))
        if walk is None and reason != NO_NETWORK:
            continue  # beyond the maximum walk along the network
        props(item)["walk"] = walk.as_dict() if walk else None
        props(item)["walk_reason"] = None if walk else reason
        kept.append(item)
    # lots with a walk first, shortest first; then (no network for them) by straight-line distance
    kept.sort(key=lambda i: (props(i)["walk"] is None,
                             props(i)["walk"]["meters"] if props(i)["walk"] else props(i)["distance_m"]))
    kept = kept[:limit]
    if geojson:
        body["features"] = kept
    else:
        body["items"] = kept
    body["next_cursor"] = None
    body["walk"] = {"speed_m_per_min": WALK_SPEED_M_PER_MIN, "max_walk_m": max_walk,
                    "network": times.network_reason is None,
                    "note": times.network_reason or "ordered by walking time along the pedestrian network",
                    "destination": destination.as_dict() if destination else None}
    return Response(orjson.dumps(body), media_type=response.media_type)
