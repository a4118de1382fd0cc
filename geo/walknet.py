"""The pedestrian network: walkable ways of an OpenStreetMap extract (pyosmium) into pgRouting-shaped tables.

Ways a person may walk on become one edge per segment between consecutive nodes, whose cost is its length in
metres, both directions. Named places (amenities, shops, stations,
venues) become destinations. Lots join the network at a nearby `amenity=parking_entrance` node when the extract
has one, else at the nearest node. Why pyosmium rather than osm2pgrouting: docs/adr/0023-walking-network.md.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import osmium

from core.errors import ValidationFailed
from geo import walk_queries as q
from geo.distance import great_circle_m

#: highway values a pedestrian may use unless the way says foot=no (motorways and trunks only with foot=yes)
WALKABLE = frozenset({
    "footway", "path", "pedestrian", "steps", "living_street", "residential", "service", "unclassified",
    "tertiary", "tertiary_link", "secondary", "secondary_link", "primary", "primary_link", "track", "cycleway",
    "bridleway", "corridor", "crossing", "road", "platform", "elevator",
})
NEVER_WITHOUT_FOOT_YES = frozenset({"motorway", "motorway_link", "trunk", "trunk_link"})
#: tags that make a named object a destination, and the kind it gets (the tag's value)
DESTINATION_KEYS = ("amenity", "shop", "tourism", "leisure", "railway", "public_transport", "office", "building")
DESTINATION_RAILWAY = frozenset({"station", "halt", "tram_stop", "subway_entrance"})
ENTRANCE_SNAP_M = 150.0  # a lot uses a parking entrance node within this distance, else the nearest node
Progress = Callable[[int], None]


def walkable(tags: Any) -> bool:
    """Whether a way with these tags carries pedestrians."""
    highway = tags.get("highway")
    foot = tags.get("foot")
    if highway is None or foot in ("no", "private") or (tags.get("access") in ("no", "private") and foot != "yes"):
        return False
    if highway in NEVER_WITHOUT_FOOT_YES:
        return foot in ("yes", "designated")
    return highway in WALKABLE


def destination_kind(tags: Any) -> str | None:
    """The kind of a named place (e.g. `theatre`, `supermarket`, `station`), or None when it is not one."""
    if not tags.get("name"):
        return None
    for key in DESTINATION_KEYS:
        value = tags.get(key)
        if not value or (value in ("no", "yes") and key != "building"):
            continue
        if key == "railway" and value not in DESTINATION_RAILWAY:
            continue
        if key == "building" and value in ("yes", "house", "residential", "garage", "shed", "roof"):
            continue
        if key == "amenity" and value in ("parking", "parking_entrance", "parking_space", "bench", "waste_basket"):
            continue
        return str(value)
    return None


@dataclass
class Destination:
    name: str
    kind: str
    lat: float
    lng: float
    osm_ref: str


@dataclass
class NetworkExtract:
    """What an extract holds for walking: nodes (OSM id -> (lng, lat)), edges, entrances and destinations."""

    nodes: dict[int, tuple[float, float]] = field(default_factory=dict)
    edges: list[tuple[int, int, float, int, list[tuple[float, float]]]] = field(default_factory=list)
    entrances: set[int] = field(default_factory=set)
    destinations: list[Destination] = field(default_factory=list)
    bbox: tuple[float, float, float, float] | None = None  # west, south, east, north

    def extend_bbox(self, lng: float, lat: float) -> None:
        w, s, e, n = self.bbox or (lng, lat, lng, lat)
        self.bbox = (min(w, lng), min(s, lat), max(e, lng), max(n, lat))


def read_extract(path: Path, *, progress: Progress | None = None) -> NetworkExtract:
    """Read an `.osm.pbf` (or .osm/.osm.bz2) extract. A truncated or non-OSM file is a ValidationFailed naming
    the file, and nothing has been written."""
    if not path.is_file():
        raise ValidationFailed(f"{path} is not a file", loc=("file",))
    ways: list[tuple[int, list[tuple[int, float, float]]]] = []
    entrances: dict[int, tuple[float, float]] = {}
    extract = NetworkExtract()
    seen = 0
    try:
        for obj in osmium.FileProcessor(str(path)).with_locations():
            seen += 1
            if progress and seen % 10_000 == 0:
                progress(10_000)
            tags = obj.tags
            if isinstance(obj, osmium.osm.Node):
                if not tags:
                    continue
                loc = obj.location
                if not loc.valid():
                    continue
                if tags.get("amenity") == "parking_entrance":
                    entrances[obj.id] = (loc.lon, loc.lat)
                kind = destination_kind(tags)
                if kind:
                    extract.destinations.append(Destination(tags["name"], kind, loc.lat, loc.lon, f"n{obj.id}"))
            elif isinstance(obj, osmium.osm.Way):
                refs = [(n.ref, n.location.lon, n.location.lat) for n in obj.nodes if n.location.valid()]
                if len(refs) < 2:
                    continue
                if walkable(tags):
                    ways.append((obj.id, refs))
                kind = destination_kind(tags)
                if kind:
                    lng = sum(r[1] for r in refs) / len(refs)
                    lat = sum(r[2] for r in refs) / len(refs)
                    extract.destinations.append(Destination(tags["name"], kind, lat, lng, f"w{obj.id}"))
    except RuntimeError as exc:  # libosmium: truncated, corrupt or not an OSM file
        raise ValidationFailed(f"{path.name} is not a readable OpenStreetMap extract ({exc})", loc=("file",)) from None
    if progress:
        progress(seen % 10_000)
    if not ways:
        raise ValidationFailed(f"{path.name} has no walkable ways (highway=*)", loc=("file",))
    _split(ways, entrances, extract)
    return extract


def _split(ways: list[tuple[int, list[tuple[int, float, float]]]], entrances: dict[int, tuple[float, float]],
           extract: NetworkExtract) -> None:
    """One edge per segment between consecutive nodes of a way: every node of a walkable way is a place to
    join the network from (a destination or a lot snaps to its nearest node; with junction-only nodes, a lot in
    the middle of a long street would snap hundreds of metres away)."""
    for way_id, refs in ways:
        for ref, lng, lat in refs:
            extract.nodes[ref] = (lng, lat)
            extract.extend_bbox(lng, lat)
        for a, b in itertools.pairwise(refs):
            if a[0] != b[0]:
                extract.edges.append((a[0], b[0], great_circle_m(a[2], a[1], b[2], b[1]), way_id,
                                      [(a[1], a[2]), (b[1], b[2])]))
    extract.entrances = {ref for ref in entrances if ref in extract.nodes}
    # an entrance drawn beside the ways (not on one) is still a place to join from: the nearest node stands in
    for ref, (lng, lat) in entrances.items():
        if ref not in extract.nodes:
            extract.nodes[ref] = (lng, lat)
            extract.entrances.add(ref)
            nearest = min(((great_circle_m(lat, lng, y, x), n) for n, (x, y) in extract.nodes.items() if n != ref),
                          default=None)
            if nearest is not None:
                extract.edges.append((ref, nearest[1], nearest[0], 0, [(lng, lat), extract.nodes[nearest[1]]]))


@dataclass
class ImportReport:
    area_id: uuid.UUID
    name: str
    nodes: int
    edges: int
    entrances: int
    destinations: int
    lots_joined: int
    replaced_areas: int

    def as_dict(self) -> dict[str, Any]:
        return {"area_id": str(self.area_id), "name": self.name, "nodes": self.nodes, "edges": self.edges,
                "entrances": self.entrances, "destinations": self.destinations, "lots_joined": self.lots_joined,
                "replaced_areas": self.replaced_areas}


def _linestring(points: list[tuple[float, float]]) -> str:
    return "LINESTRING(" + ",".join(f"{x!r} {y!r}" for x, y in points) + ")"


async def load_network(pg: asyncpg.Connection, *, extract: NetworkExtract, name: str, now: datetime) -> ImportReport:
    """Replace, in one transaction, every area the extract's bbox meets with this extract; join lots."""
    assert extract.bbox is not None
    west, south, east, north = extract.bbox
    area_id = uuid.uuid4()
    async with pg.transaction():
        replaced = await pg.fetchval(q.DELETE_OVERLAPPING_AREAS, west, south, east, north)
        await pg.execute(q.INSERT_AREA, area_id, name, west, south, east, north, len(extract.nodes),
                         len(extract.edges), now)
        await pg.execute(q.CREATE_STAGES)
        await pg.copy_records_to_table(
            "walk_node_stage", columns=["id", "entrance", "lng", "lat"],
            records=((ref, ref in extract.entrances, lng, lat) for ref, (lng, lat) in extract.nodes.items()))
        await pg.copy_records_to_table(
            "walk_edge_stage", columns=["source", "target", "cost", "osm_way_id", "wkt"],
            records=((a, b, cost, way, _linestring(points)) for a, b, cost, way, points in extract.edges))
        await pg.copy_records_to_table(
            "destination_stage", columns=["name", "kind", "lng", "lat", "osm_ref"],
            records=((d.name[:200], d.kind, d.lng, d.lat, d.osm_ref) for d in extract.destinations))
        await pg.execute(q.NODES_FROM_STAGE, area_id)
        await pg.execute(q.EDGES_FROM_STAGE, area_id)
        await pg.execute(q.DESTINATIONS_FROM_STAGE, area_id)
        joined = await join_lots(pg, area_id=area_id)
    return ImportReport(area_id=area_id, name=name, nodes=len(extract.nodes), edges=len(extract.edges),
                        entrances=len(extract.entrances), destinations=len(extract.destinations), lots_joined=joined,
                        replaced_areas=int(replaced or 0))


async def join_lots(pg: asyncpg.Connection, *, area_id: uuid.UUID) -> int:
    """Where each lot inside the area meets the network: an entrance within ENTRANCE_SNAP_M, else the nearest
    node. Returns how many lots were joined."""
    return int(await pg.fetchval(q.JOIN_LOTS, area_id, ENTRANCE_SNAP_M) or 0)


def iter_grid(*, west: float, south: float, rows: int, cols: int, step_m: float) -> Iterator[tuple[int, float, float]]:
    """Node ids and positions of a synthetic street grid (benchmarks): `rows` x `cols` nodes `step_m` apart."""
    dlat = step_m / 111_320.0
    dlng = step_m / (111_320.0 * math.cos(math.radians(south)))
    for r in range(rows):
        for c in range(cols):
            yield r * cols + c + 1, west + c * dlng, south + r * dlat
