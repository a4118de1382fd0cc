"""Walking time from a destination to lots along the pedestrian network, and destinations by name.

One one-to-many shortest-path query (pgRouting's `pgr_dijkstraCost`) per search. A walk is the destination's
distance to its nearest network node, the network path, and the lot's distance from where it joins the network
(an entrance or the nearest node): never shorter than the straight line (the triangle inequality).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from core.errors import NotFound, ValidationFailed
from geo import walk_queries as q

WALK_SPEED_M_PER_MIN = 80.0  # 4.8 km/h, a common planning figure for an adult walking in a city
DEFAULT_MAX_WALK_M = 1500.0
MAX_WALK_M = 5000.0
DEST_SNAP_M = 300.0  # a destination farther than this from every network node is outside the network
QUERY_MIN, QUERY_MAX = 2, 100

NO_NETWORK = "no walking network is imported for this area"
UNREACHABLE = "not reachable on the walking network within the maximum walk"


@dataclass(frozen=True)
class Walk:
    meters: float
    minutes: float

    def as_dict(self) -> dict[str, float]:
        return {"meters": round(self.meters, 1), "minutes": self.minutes}


def walk_of(meters: float) -> Walk:
    return Walk(meters=meters, minutes=round(math.ceil(meters / WALK_SPEED_M_PER_MIN * 10) / 10, 1))


@dataclass(frozen=True)
class WalkTimes:
    """Walks by lot; a lot absent from `walks` has none, for `reasons[lot]` (or `network_reason` for all)."""

    walks: dict[uuid.UUID, Walk]
    reasons: dict[uuid.UUID, str]
    network_reason: str | None = None


def _envelope(lat: float, lng: float, meters: float) -> tuple[float, float, float, float]:
    dlat = meters / 111_320.0
    dlng = meters / (111_320.0 * max(math.cos(math.radians(lat)), 0.01))
    return lng - dlng, lat - dlat, lng + dlng, lat + dlat


@dataclass(frozen=True)
class Remembered:
    """A destination's walks computed before on the network version `version` (0: no network at all)."""

    version: int
    meters: dict[uuid.UUID, float | None]


async def destination_and_walks(pg: asyncpg.Connection, *, destination_id: uuid.UUID,
                                max_walk_m: float) -> tuple[Destination, Remembered]:
    """A destination and the walks remembered for it, in one round trip (NotFound when it does not exist)."""
    rows = await pg.fetch(q.DESTINATION_AND_WALKS, destination_id, max_walk_m)
    if not rows:
        raise NotFound(f"destination {destination_id} not found", loc=("query", "destination_id"))
    return _destination(rows[0]), Remembered(
        version=rows[0]["version"], meters={r["lot_id"]: r["meters"] for r in rows if r["lot_id"] is not None})


async def walking_times(pg: asyncpg.Connection, *, lat: float, lng: float, lot_ids: Sequence[uuid.UUID],
                        max_walk_m: float, destination_id: uuid.UUID | None = None,
                        remembered_walks: Remembered | None = None) -> WalkTimes:
    """Walks from (lat, lng) to each lot, up to `max_walk_m` metres along the network. For a destination,
    walks computed before on the same network version are reused (`remembered_walks`, or read here) and only
    the other lots are routed (still one shortest-path query at most)."""
    if not lot_ids:
        return WalkTimes({}, {})
    ids = list(lot_ids)
    version = remembered = None
    if destination_id is not None:
        if remembered_walks is None:
            version = await pg.fetchval(q.NETWORK_VERSION)
            remembered = {r["lot_id"]: r["meters"] for r in await pg.fetch(
                q.REMEMBERED_WALKS, destination_id, ids, version, max_walk_m)}
        else:
            version, remembered = remembered_walks.version, remembered_walks.meters
        if version == 0:
            return WalkTimes({}, {}, NO_NETWORK)
    todo = [i for i in ids if remembered is None or i not in remembered]
    routed: dict[uuid.UUID, float | None] = {}
    if todo:
        found = await _route(pg, lat=lat, lng=lng, lot_ids=todo, max_walk_m=max_walk_m)
        if found is None:
            return WalkTimes({}, {}, NO_NETWORK)
        routed = found
        if destination_id is not None:
            await pg.execute(q.REMEMBER_WALKS, destination_id, list(routed), list(routed.values()), max_walk_m,
                             version)
    meters_by_lot = {**(remembered or {}), **routed}
    walks, reasons = {}, {}
    for lot_id in ids:
        meters = meters_by_lot.get(lot_id, -1.0)
        if meters == -1.0:
            reasons[lot_id] = NO_NETWORK
        elif meters is None or meters > max_walk_m:
            reasons[lot_id] = UNREACHABLE
        else:
            walks[lot_id] = walk_of(meters)
    return WalkTimes(walks, reasons)


async def _route(pg: asyncpg.Connection, *, lat: float, lng: float, lot_ids: list[uuid.UUID],
                 max_walk_m: float) -> dict[uuid.UUID, float | None] | None:
    """Metres along the network to each lot joined to it (None: not reachable within the maximum walk); None
    when (lat, lng) is outside every network. Lots not joined to any network are left out."""
    start = await pg.fetchrow(q.NEAREST_NODE, lng, lat)
    if start is None or start["snap_m"] > DEST_SNAP_M:
        return None
    await pg.execute(q.JOIN_LOTS_BY_ID, None, 150.0, lot_ids)  # lots made after their area's import join now
    joins = {r["lot_id"]: (r["node_id"], r["snap_m"]) for r in await pg.fetch(q.LOT_NODES, lot_ids)}
    targets = sorted({node for node, _ in joins.values() if node != start["id"]})
    costs: dict[int, float] = {start["id"]: 0.0}
    if targets:
        costs.update((r["node_id"], r["meters"]) for r in await pg.fetch(
            q.WALK_COSTS, start["id"], targets, *_envelope(lat, lng, max_walk_m)))
    out: dict[uuid.UUID, float | None] = {}
    for lot_id, (node, snap_m) in joins.items():
        cost = costs.get(node)
        out[lot_id] = None if cost is None else start["snap_m"] + cost + snap_m
    return out


@dataclass(frozen=True)
class Destination:
    id: uuid.UUID
    name: str
    kind: str
    source: str
    lat: float
    lng: float
    distance_m: float | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"id": str(self.id), "name": self.name, "kind": self.kind, "source": self.source,
                                  "location": {"lat": self.lat, "lng": self.lng}}
        if self.distance_m is not None:
            out["distance_m"] = round(self.distance_m, 1)
        return out


def _destination(row: asyncpg.Record) -> Destination:
    return Destination(id=row["id"], name=row["name"], kind=row["kind"], source=row["source"], lat=row["lat"],
                       lng=row["lng"], distance_m=row["distance_m"])


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def find_destinations(pg: asyncpg.Connection, *, query: str, near: tuple[float, float] | None,
                            limit: int) -> list[Destination]:
    """Places whose name contains `query` (or resembles it), prefix matches first, then nearest to `near`."""
    text = " ".join(query.split()).lower()
    if not QUERY_MIN <= len(text) <= QUERY_MAX:
        raise ValidationFailed(f"q must be {QUERY_MIN} to {QUERY_MAX} characters", loc=("query", "q"))
    lat, lng = near if near else (None, None)
    rows = await pg.fetch(q.SEARCH_DESTINATIONS, f"%{_like(text)}%", lat, lng, text, f"{_like(text)}%", limit)
    return [_destination(r) for r in rows]


async def create_venue(pg: asyncpg.Connection, *, name: str, kind: str, lat: float, lng: float,
                       organisation_id: uuid.UUID | None) -> Destination:
    """A venue an operator defines (a stadium, a hospital entrance): a destination like the extract's."""
    return _destination(await pg.fetchrow(q.INSERT_VENUE, name.strip(), kind, lat, lng, organisation_id))
