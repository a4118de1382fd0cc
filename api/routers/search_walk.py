"""Search by walking time: the lots within the maximum walk of a destination (or a point), ordered by the walk
along the pedestrian network, each item carrying `walk: {meters, minutes}` or `walk: null` with a reason."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from fastapi import Request

from api.routers.search_query import SearchParams
from core.errors import ValidationFailed
from geo.search import SearchItem, SearchPage
from geo.walk import (
    DEFAULT_MAX_WALK_M,
    NO_NETWORK,
    WALK_SPEED_M_PER_MIN,
    WalkTimes,
    destination_and_walks,
    walking_times,
)

WALK_PAGE = 40  # a walking search ranks up to this many lots nearest in a straight line within the maximum walk

PlainSearch = Callable[[Request, SearchParams], Awaitable[SearchPage]]


async def walk_search(request: Request, plain: PlainSearch, params: SearchParams) -> SearchPage:
    """One walking search's page; `plain` is the plain search, asked for the straight-line candidates."""
    ctx, settings = request.app.state.ctx, request.app.state.settings
    pool = await ctx.pg()
    destination_id, lat, lng = params.destination_id, params.lat, params.lng
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
    page = await plain(request, candidates)
    times = WalkTimes({}, {})
    if page.items:
        async with pool.acquire() as pg:
            times = await walking_times(pg, lat=lat, lng=lng, lot_ids=[i.lot_id for i in page.items],
                                        max_walk_m=max_walk, destination_id=destination.id if destination else None,
                                        remembered_walks=remembered)
    kept: list[SearchItem] = []
    for item in page.items:
        walk = times.walks.get(item.lot_id)
        reason = None if walk else (times.network_reason or times.reasons.get(item.lot_id))
        if walk is None and reason != NO_NETWORK:
            continue  # beyond the maximum walk along the network
        kept.append(item._replace(walk=walk, walk_reason=reason))
    # lots with a walk first, shortest first; then (no network for them) by straight-line distance
    kept.sort(key=lambda i: (i.walk is None, i.walk.meters if i.walk else i.distance_m))
    network_reason = times.network_reason
    summary = {"speed_m_per_min": WALK_SPEED_M_PER_MIN, "max_walk_m": max_walk, "network": network_reason is None,
               "note": network_reason or "ordered by walking time along the pedestrian network",
               "destination": destination.as_dict() if destination else None}
    return replace(page, items=kept[:params.limit], next_cursor=None, walk=summary)
