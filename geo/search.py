"""Nearby search: the H3 ring over the worker's in-process lot index (or, as measured baselines, a KNN scan of
the GiST index, an H3-ring or an ST_DWithin prefilter in SQL), keyset pages, then availability and quotes for
the page only."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import uuid
from collections.abc import Awaitable, Callable, Container, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, NamedTuple, Protocol

import h3
import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import ValidationFailed
from geo import queries
from geo.availability import Counted, usable_mask
from geo.distance import EARTH_RADIUS_M, great_circle_m
from geo.h3cells import ring_cells
from geo.lotindex import LotSnapshot, amenity_mask
from geo.window import BBox, Window

__all__ = ["EARTH_RADIUS_M", "great_circle_m"]  # their home is geo.distance; tests and callers import them here

Prefilter = Literal["index", "knn", "h3", "st_dwithin"]
Sort = Literal["distance", "price", "walk"]  # walk: api/routers/search_walk.py, before the page is built
EvChargerFilter = Literal["available"]  # lots with at least one online, working, free charging connector
# index (the H3 ring over the in-process lot index) won the benchmark (docs/adr/0009-search-from-an-in-process-index.md);
# knn (GiST index scan, docs/adr/0006-search-knn-and-lean-hold-path.md), st_dwithin (bitmap scan + sort of every
# lot in the radius) and h3 (ring of cells + sort, in SQL) are kept as the measured baselines.
DEFAULT_PREFILTER: Prefilter = "index"
KNN_MIN_SCAN = 32  # rows read by the first KNN chunk at least (a page + 1 when that is more)
KNN_MAX_SCAN = 2_000  # a later chunk grows with the observed filter pass rate, up to this
H3_R9_MAX_RADIUS_M = 1_500  # above this the ring is built from r7 cells (fewer, larger)
MAX_BBOX_DIAGONAL_FACTOR = 4  # a bbox may span at most this many times the maximum search radius
CURSOR_VERSION = 2  # 2: the fingerprint is a blake2b digest (cursors of version 1 are refused as malformed)
FIRST_PAGE = (-1.0, uuid.UUID(int=0))  # the keyset position before the nearest lot
_new_tuple = tuple.__new__


def h3_ring(lat: float, lng: float, radius_m: float) -> tuple[int, list[int]]:
    """(resolution, cells as ints) whose union covers every point within `radius_m` of (lat, lng)."""
    res = 9 if radius_m <= H3_R9_MAX_RADIUS_M else 7
    return res, list(ring_cells(h3.latlng_to_cell(lat, lng, res), float(radius_m)))


@dataclass(frozen=True)
class SearchQuery:
    """A validated search: a point with a radius, or a bbox (distances then from `lat, lng` or its centre)."""

    lat: float | None = None
    lng: float | None = None
    radius_m: float | None = None
    bbox: BBox | None = None
    vehicle_type: str | None = None
    amenities: tuple[str, ...] = ()
    max_price: int | None = None
    sort: Sort = "distance"
    limit: int = 20
    cursor: str | None = None
    prefilter: Prefilter = DEFAULT_PREFILTER
    ev_charger: EvChargerFilter | None = None

    def fingerprint(self, window: Window) -> str:
        """What a cursor is bound to: the same search, not just the same position (a digest of the
        parameters and the window, written as reprs of floats, strings and None: exact and unambiguous)."""
        box = self.bbox
        key = repr((self.lat, self.lng, self.radius_m, box and (box.west, box.south, box.east, box.north),
                    self.vehicle_type, tuple(sorted(self.amenities)), self.max_price, self.sort,
                    window.starts_at.timestamp(), window.ends_at.timestamp(), self.ev_charger))
        return hashlib.blake2b(key.encode(), digest_size=8, person=b"search-cursor").hexdigest()


class SearchItem(NamedTuple):  # a tuple, not a frozen dataclass: a page builds 20 of them per search
    lot_id: uuid.UUID
    name: str
    lat: float
    lng: float
    distance_m: float
    available: int
    capacity: int  # in-service spots compatible with the vehicle type (any type when none was given)
    quote: dict[str, Any] | None
    source: str
    as_of: datetime
    lot_json: bytes | None = None  # {id, name, location} as JSON when the lot index has it ready (LotSnapshot)
    ev_chargers: Any = None  # the lot's EV connectors by state (controllers.chargers.EvCounts), when known
    forecast: Any = None  # {occupancy_at_start, likely_full_at} when the lot has a forecast (analytics)
    walk: Any = None  # a walking search's geo.walk.Walk for the lot (None with walk_reason when there is none)
    walk_reason: str | None = None


@dataclass(frozen=True)
class SearchPage:
    items: list[SearchItem]
    next_cursor: str | None
    origin: tuple[float, float]
    window: Window
    prefilter: str = ""
    walk: dict[str, Any] | None = None  # a walking search's summary (speed, maximum walk, network, destination)


class PageCounts(Protocol):
    """Free compatible spots for the page's rows (SQL rows, or index hits), by lot id."""

    def __call__(self, rows: Sequence[Any], *, vehicle_type: str | None, starts_at: datetime,
                 ends_at: datetime) -> Awaitable[dict[uuid.UUID, Counted]]: ...


class PageForecasts(Protocol):
    """The forecast each lot of a page shows for a window starting at `starts_at`, in the page's order
    (analytics' in-process cache)."""

    def __call__(self, lot_ids: Sequence[uuid.UUID], starts_at: datetime) -> Sequence[Any]: ...


class PageQuotes(Protocol):
    """Quotes for the page's rows (SQL rows, or index hits that carry their rate card), by lot id."""

    def __call__(self, rows: Sequence[Any], *, vehicle_type: str | None, starts_at: datetime,
                 ends_at: datetime) -> Awaitable[dict[uuid.UUID, dict[str, Any]]]: ...


def encode_cursor(*, sort: str, distance_m: float, lot_id: uuid.UUID, fingerprint: str) -> str:
    body = orjson.dumps({"v": CURSOR_VERSION, "s": sort, "d": distance_m, "i": str(lot_id), "q": fingerprint})
    return base64.urlsafe_b64encode(body).decode().rstrip("=")


def decode_cursor(raw: str, *, sort: str, fingerprint: str) -> tuple[float, uuid.UUID]:
    """(distance, lot id) to continue after; 422 on `cursor` if malformed or from another search."""
    loc = ("query", "cursor")
    try:
        padded = raw + "=" * (-len(raw) % 4)
        body = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(body, dict) or body.get("v") != CURSOR_VERSION:
            raise ValueError("version")
        distance = float(body["d"])
        lot_id = uuid.UUID(str(body["i"]))
        cursor_sort, cursor_query = body["s"], body["q"]
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
        raise ValidationFailed("malformed cursor", loc=loc) from None
    if not math.isfinite(distance) or distance < 0:
        raise ValidationFailed("malformed cursor", loc=loc)
    if cursor_sort != sort or cursor_query != fingerprint:
        raise ValidationFailed("this cursor belongs to another search; start again without it", loc=loc)
    return distance, lot_id


def _check(query: SearchQuery, *, max_radius_m: int) -> None:
    if query.bbox is None:
        if query.lat is None or query.lng is None:
            missing = "lat" if query.lat is None else "lng"
            raise ValidationFailed("give lat and lng (with radius_m), or a bbox", loc=("query", missing))
        radius = query.radius_m
        if radius is None or not math.isfinite(radius) or radius <= 0:
            raise ValidationFailed("radius_m must be greater than 0", loc=("query", "radius_m"))
        if radius > max_radius_m:
            raise ValidationFailed(f"radius_m must be at most {max_radius_m}", loc=("query", "radius_m"))
    else:
        b = query.bbox
        east = b.east + 360 if b.crosses_antimeridian else b.east
        diagonal = great_circle_m(b.south, b.west, b.north, east if east <= 180 else east - 360)
        if diagonal > MAX_BBOX_DIAGONAL_FACTOR * max_radius_m:
            raise ValidationFailed(f"bbox is too large (diagonal {diagonal:.0f} m, at most "
                                   f"{MAX_BBOX_DIAGONAL_FACTOR * max_radius_m} m)", loc=("query", "bbox"))
    if query.max_price is not None and query.max_price < 0:
        raise ValidationFailed("max_price must be >= 0 (minor units)", loc=("query", "max_price"))


async def search_lots(conn: AsyncConnection | None, *, query: SearchQuery, window: Window, max_radius_m: int,
                      counts: PageCounts, quotes: PageQuotes | None = None,
                      snapshot: LotSnapshot | None = None, ev: Mapping[uuid.UUID, Any] | None = None,
                      ev_free: Container[uuid.UUID] | None = None,
                      forecasts: PageForecasts | None = None) -> SearchPage:
    """One page of open lots near a point (or in a bbox), nearest first, with availability for the window.

    Keyset pagination on (distance_m, lot id): a page never repeats or skips a lot that existed when the
    first page was read, whatever is added in between. `sort=price` orders like `distance` until quotes
    exist; `max_price` only drops lots whose quote is known to exceed it (unquoted lots stay). The `index`
    prefilter searches `snapshot` (by radius or bbox); the others run SQL on `conn`. `ev` gives items their
    EV charger counts (by lot id); with `ev_charger=available` only lots in `ev_free` are kept (before paging).
    """
    _check(query, max_radius_m=max_radius_m)
    fingerprint = query.fingerprint(window)
    after_d, after_id = FIRST_PAGE
    if query.cursor is not None:
        after_d, after_id = decode_cursor(query.cursor, sort=query.sort, fingerprint=fingerprint)
    origin: list[Any] = []

    async def fetch(after: tuple[float, uuid.UUID], need: int) -> Sequence[Any]:
        if query.bbox is not None and query.prefilter == "index":
            assert snapshot is not None
            box = query.bbox
            lat, lng = (query.lat, query.lng) if query.lat is not None and query.lng is not None else box.centre()
            origin[:] = [lat, lng, "index_bbox"]
            return snapshot.in_bbox(
                bbox=box, lat=lat, lng=lng, vehicle_type=query.vehicle_type, amenities=amenity_mask(query.amenities),
                horizon_days=window.horizon_days, after=after, need=need)
        if query.prefilter == "index":
            assert snapshot is not None and query.lat is not None and query.lng is not None and query.radius_m
            origin[:] = [query.lat, query.lng, "index"]
            return snapshot.nearest(
                lat=query.lat, lng=query.lng, radius_m=float(query.radius_m), vehicle_type=query.vehicle_type,
                amenities=amenity_mask(query.amenities), horizon_days=window.horizon_days, after=after, need=need)
        assert conn is not None
        lat, lng, statement, got = await _sql_rows(conn, replace(query, limit=need - 1), window, after=after)
        origin[:] = [lat, lng, statement]
        return got

    rows: Sequence[Any]
    if query.ev_charger is None:
        rows = await fetch((after_d, after_id), query.limit + 1)
    else:
        rows = await _only(fetch, (after_d, after_id), query.limit + 1, ev_free or frozenset())
    lat, lng, statement = origin
    page, more = rows[:query.limit], len(rows) > query.limit
    ids = [r.id for r in page]
    free = await counts(page, vehicle_type=query.vehicle_type, starts_at=window.slot_start, ends_at=window.slot_end)
    priced = (await quotes(page, vehicle_type=query.vehicle_type, starts_at=window.slot_start,
                           ends_at=window.slot_end)) if quotes and ids else {}
    shown = forecasts(ids, window.starts_at) if forecasts else [None] * len(page)
    items = []
    for r, forecast in zip(page, shown, strict=True):
        quote = priced.get(r.id)
        if query.max_price is not None and quote is not None and quote["total"]["amount"] > query.max_price:
            continue
        count = free[r.id]
        items.append(_new_tuple(SearchItem, (r.id, r.name, r.lat, r.lng, r.distance_m,  # NamedTuple sans __new__
                                             min(count.available, r.capacity), r.capacity, quote, count.source,
                                             count.as_of, getattr(r, "lot_json", None),
                                             ev.get(r.id) if ev is not None else None, forecast, None, None)))
    next_cursor = None
    if more:
        last = page[-1]
        next_cursor = encode_cursor(sort=query.sort, distance_m=last.sort_key, lot_id=last.id,
                                    fingerprint=fingerprint)
    return SearchPage(items=items, next_cursor=next_cursor, origin=(lat, lng), window=window, prefilter=statement)


async def _only(fetch: Callable[[tuple[float, uuid.UUID], int], Awaitable[Sequence[Any]]],
                after: tuple[float, uuid.UUID], need: int, keep: Container[uuid.UUID]) -> list[Any]:
    """The first `need` rows (in keyset order, after `after`) whose lot is in `keep`: reads on in growing chunks
    until it has them or the search's rows run out, so pages stay full and cursors stay exact."""
    kept: list[Any] = []
    chunk = need
    while True:
        got = await fetch(after, chunk)
        kept.extend(r for r in got if r.id in keep)
        if len(kept) >= need or len(got) < chunk:
            return kept[:need]
        after, chunk = (got[-1].sort_key, got[-1].id), min(chunk * 4, 4_096)


async def _sql_rows(conn: AsyncConnection, query: SearchQuery, window: Window,
                    after: tuple[float, uuid.UUID]) -> tuple[float, float, str, Sequence[Any]]:
    """(origin lat, origin lng, statement name, rows) of the SQL prefilters and bbox searches."""
    usable, ev_if_overflow = usable_mask(query.vehicle_type)
    params: dict[str, Any] = {"usable": usable, "ev_if_overflow": ev_if_overflow, "amenities": list(query.amenities),
                              "horizon_days": window.horizon_days, "after_d": after[0], "after_id": after[1],
                              "limit": query.limit + 1}
    if query.bbox is not None:
        lat, lng = (query.lat, query.lng) if query.lat is not None and query.lng is not None else query.bbox.centre()
        params.update(query.bbox.params())
        statement = "bbox"
    else:
        assert query.lat is not None and query.lng is not None and query.radius_m is not None
        lat, lng = query.lat, query.lng
        params["radius"] = float(query.radius_m)
        if query.prefilter == "h3":
            res, cells = h3_ring(lat, lng, query.radius_m)
            statement = f"h3_r{res}"
            params["cells"] = cells
        else:
            statement = query.prefilter
    params.update(lat=lat, lng=lng)
    if statement == "knn":
        rows = await _knn_rows(conn, params, radius_m=float(params["radius"]), after=after, need=query.limit + 1)
    else:
        rows = (await conn.execute(queries.SEARCH[statement], params)).all()
    return lat, lng, statement, rows


async def _knn_rows(conn: AsyncConnection, params: dict[str, Any], *, radius_m: float,
                    after: tuple[float, uuid.UUID], need: int) -> Sequence[Any]:
    """The first `need` eligible lots within the radius after the cursor, ordered by (distance, id).

    Reads the GiST index nearest first in chunks (usually one). It stops once it has `need` lots and
    has read past the distance of the last of them, so lots tied at that distance are all seen and
    ordered by id, as the keyset requires; or once it reads past the radius; or at the table's end.
    """
    picked: list[Any] = []
    seen: set[uuid.UUID] = set()
    from_d, scan, read = max(after[0], 0.0), max(need * 2, KNN_MIN_SCAN), 0
    while True:
        rows = (await conn.execute(queries.SEARCH_KNN, {**params, "from_d": from_d, "scan": scan})).all()
        fresh = 0
        for r in rows:
            if r.id in seen:
                continue
            seen.add(r.id)
            fresh += 1
            if r.eligible and r.distance_m <= radius_m and (r.sort_key, r.id) > after:
                picked.append(r)
        read += fresh
        last_d = rows[-1].sort_key if rows else math.inf
        picked.sort(key=lambda r: (r.sort_key, r.id))
        if len(rows) < scan or last_d > radius_m * (1 + 1e-9) + 1e-6:
            break  # the table, or the radius, is exhausted
        if len(picked) >= need and last_d > picked[need - 1].sort_key:
            break  # every unread lot is farther than the page's last one
        if fresh == 0:
            scan = min(scan * 2, 100_000)  # more lots at exactly `from_d` than one chunk holds
            continue
        rate = max(len(picked), 1) / read
        scan = min(KNN_MAX_SCAN, max(KNN_MIN_SCAN, math.ceil((need - len(picked) + 1) / rate * 1.5)))
        from_d = last_d
    return picked[:need]
