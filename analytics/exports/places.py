"""The places an export reports on: single lots, or H3 cells holding lots, each with a timezone and a shape."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import h3
import shapely
from shapely.geometry import Point, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

# curb_place_id of an H3 cell: a name-based UUID, the same in every export, so files can be joined over time
H3_NAMESPACE = uuid.UUID("6f1c3f0e-2d8b-5b57-9c1e-7a0d51e0a8c4")
#: CDS Curbs place type of every exported place (a lot or a cell is a "Curb Area", a grouping of spaces)
CURB_PLACE_TYPE = "area"


@dataclass(frozen=True)
class LotRow:
    id: uuid.UUID
    timezone: str
    capacity: int
    lat: float
    lng: float


@dataclass(frozen=True)
class Place:
    """A lot or an H3 cell. `rank` is its position in the export (the SQL groups by it)."""

    rank: int
    place_type: str  # "lot" | "h3_cell"
    curb_place_id: str
    h3_cell: str | None
    timezone: str
    capacity: int
    lot_ids: tuple[uuid.UUID, ...]
    geometry: BaseGeometry


def cell_id(cell: str) -> str:
    """The curb_place_id of an H3 cell."""
    return str(uuid.uuid5(H3_NAMESPACE, f"h3:{cell}"))


def cell_polygon(cell: str) -> Polygon:
    """The cell's boundary as a lng/lat polygon, exterior ring counterclockwise (RFC 7946)."""
    ring = [(lng, lat) for lat, lng in h3.cell_to_boundary(cell)]
    return orient(Polygon(ring), sign=1.0)


def _spatial_key(lot: LotRow) -> str:
    # nearby lots next to each other in the file (GeoParquet readers skip row groups by their bbox)
    return h3.latlng_to_cell(lot.lat, lot.lng, 9)


def build_places(lots: Iterable[LotRow], *, resolution: int | None) -> list[Place]:
    """One place per lot (resolution None) or per H3 cell at `resolution`; a cell takes the timezone of its first
    lot by id (a cell across a timezone border reports in one of them) and the sum of its lots' capacities."""
    ordered = sorted(lots, key=lambda lot: (_spatial_key(lot), str(lot.id)))
    if resolution is None:
        return [Place(rank=i, place_type="lot", curb_place_id=str(lot.id), h3_cell=None, timezone=lot.timezone,
                      capacity=lot.capacity, lot_ids=(lot.id,), geometry=Point(lot.lng, lot.lat))
                for i, lot in enumerate(ordered)]
    cells: dict[str, list[LotRow]] = {}
    for lot in ordered:
        cells.setdefault(h3.latlng_to_cell(lot.lat, lot.lng, resolution), []).append(lot)
    places = []
    for i, cell in enumerate(sorted(cells)):
        members = sorted(cells[cell], key=lambda lot: str(lot.id))
        places.append(Place(rank=i, place_type="h3_cell", curb_place_id=cell_id(cell), h3_cell=cell,
                            timezone=members[0].timezone, capacity=sum(m.capacity for m in members),
                            lot_ids=tuple(m.id for m in members), geometry=cell_polygon(cell)))
    return places


def lot_arrays(places: Sequence[Place]) -> dict[str, list[Any]]:
    """The parallel arrays the SQL unnests: each lot, its place's rank and timezone."""
    lot_ids: list[uuid.UUID] = []
    ranks: list[int] = []
    tzs: list[str] = []
    for place in places:
        for lot_id in place.lot_ids:
            lot_ids.append(lot_id)
            ranks.append(place.rank)
            tzs.append(place.timezone)
    return {"lot_ids": lot_ids, "ranks": ranks, "tzs": tzs}


def bounds(places: Sequence[Place]) -> tuple[float, float, float, float] | None:
    """[xmin, ymin, xmax, ymax] of every place's shape."""
    if not places:
        return None
    b = shapely.total_bounds([p.geometry for p in places])
    return float(b[0]), float(b[1]), float(b[2]), float(b[3])
