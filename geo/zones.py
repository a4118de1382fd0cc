"""H3 heatmap: capacity and live availability of open lots per H3 cell inside a bounding box."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import h3
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import ValidationFailed
from geo import queries
from geo.availability import SOURCE, CountsFn, available_counts, usable_mask
from geo.window import BBox, Window

MIN_RES, MAX_RES = 0, 9  # lots are indexed at r7 and r9; coarser cells are their parents
MAX_LOTS = 50_000


@dataclass(frozen=True)
class ZoneCell:
    cell: str
    lat: float
    lng: float
    lots: int
    capacity: int
    available: int


@dataclass(frozen=True)
class ZoneMap:
    res: int
    cells: list[ZoneCell]
    source: str
    as_of: datetime
    window: Window


async def zone_cells(conn: AsyncConnection, *, res: int, bbox: BBox, vehicle_type: str | None, window: Window,
                     now: datetime, counts: CountsFn = available_counts, source: str = SOURCE) -> ZoneMap:
    """Per H3 cell at `res` (0..9) holding at least one open lot in `bbox`: lots, capacity, available."""
    if not MIN_RES <= res <= MAX_RES:
        raise ValidationFailed(f"res must be between {MIN_RES} and {MAX_RES}", loc=("query", "res"))
    usable, ev_if_overflow = usable_mask(vehicle_type)
    rows = (await conn.execute(queries.ZONE_LOTS, {"usable": usable, "ev_if_overflow": ev_if_overflow,
                                                   "max_lots": MAX_LOTS + 1, **bbox.params()})).all()
    if len(rows) > MAX_LOTS:
        raise ValidationFailed(f"bbox holds more than {MAX_LOTS} lots; zoom in", loc=("query", "bbox"))
    free = await counts(conn, lot_ids=[r.id for r in rows], vehicle_type=vehicle_type, starts_at=window.slot_start,
                        ends_at=window.slot_end)
    totals: dict[str, list[int]] = {}
    for r in rows:
        stored = h3.int_to_str(r.h3_r9 if res > 7 else r.h3_r7)
        cell = stored if h3.get_resolution(stored) == res else h3.cell_to_parent(stored, res)
        acc = totals.setdefault(cell, [0, 0, 0])
        acc[0] += 1
        acc[1] += r.capacity
        acc[2] += min(free.get(r.id, 0), r.capacity)
    cells = []
    for cell, (n, cap, avail) in sorted(totals.items()):
        lat, lng = h3.cell_to_latlng(cell)
        cells.append(ZoneCell(cell=cell, lat=lat, lng=lng, lots=n, capacity=cap, available=avail))
    return ZoneMap(res=res, cells=cells, source=source, as_of=now, window=window)
