"""The open lots in memory, per worker: nearest-first search by H3 ring without a database round trip.

A snapshot holds every open lot's place (as a unit vector), H3 r10 cell, usable capacity per vehicle type,
search filters and rate card, as numpy arrays sorted by cell. A search gathers the lots of a ring of cells
around the point (grown until the page is complete), keeps those within the cover by a dot product, measures
their great-circle distance from the chord between unit vectors, and orders them by (distance rounded to the
micrometre, lot id), as the keyset needs: all in numpy, a handful of array operations per ring whatever the
page size. The chord distance equals `geo.distance.great_circle_m` (haversine) to well under a micrometre
within search radii (tests/unit/test_lot_index.py); the SQL baselines order by PostGIS's `<->`, which can
differ from either in the last bits, so lots at the same distance may come in another order there (never a
different set or distance).

Freshness: `LotIndex.snapshot` polls `lot_index_version` (bumped by triggers on lots and rate_cards in the
writer's transaction) at most once per refresh interval of the injected clock, and reloads everything in
one repeatable-read snapshot when it changed; a lot created, changed or closed is seen by the first search
after the next poll.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import NamedTuple, cast

import asyncpg
import h3
import numpy as np
import numpy.typing as npt
import orjson

from core.context import AppContext
from core.logging import get_logger
from geo import queries
from geo.availability import ALL_SPOT_TYPES, usable_mask
from geo.distance import EARTH_RADIUS_M
from geo.h3cells import cell, ring_cells
from geo.schemas import AMENITIES
from geo.window import BBox

log = get_logger("parkgrid.geo")
#: what a failed version poll may raise: the snapshot in memory is served meanwhile
_DB_UNAVAILABLE = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
VEHICLE_TYPES: tuple[str | None, ...] = (None, *ALL_SPOT_TYPES)
FIRST_COVER_M = 200.0  # the first ring covers this far; it doubles until the page is complete
# H3 resolution the index is sorted by: r10 cells (~0.015 km2) make a 200 m ring ~0.9 km2 (61 cells), where r9
# cells made it ~3.9 km2 (37 cells, ~1,700 lots of the 20,000-lot bench city for ~60 within 200 m)
INDEX_RES = 10
FULL_SCAN_COVER_M = 3_000.0  # beyond this a ring has thousands of cells: look at every lot instead
EPS_M = 1e-3  # a page is complete when its last lot lies this far inside the covered distance
RING_MEMO_POSITIONS = 1_000_000  # lot positions (and unit vectors) of recent rings a snapshot remembers (32 MB)
PREFILTER_MARGIN_M = 1.0  # the dot-product prefilter's slack: its error is at most ~0.1 m (at distance 0)
# Lots within a micrometre of each other count as equally far and are ordered by id: floating-point noise in the
# last bits (a lot 40 m north and one 40 m south) must not decide the keyset order.
TIE_DECIMALS = 6


class Card(NamedTuple):
    """A lot's rate card as stored (JSON text, shared by lots with equal cards), its version, the lot's zone."""

    body: str
    version: int
    timezone: str


class Hit(NamedTuple):
    """One lot of a page, shaped like a row of the SQL prefilters."""

    id: uuid.UUID
    name: str
    lat: float
    lng: float
    distance_m: float
    sort_key: float
    capacity: int
    ev_overflow: bool
    card: Card | None
    lot_json: bytes  # the item's `lot` member, {id, name, location: {lat, lng}}, as JSON (docs/api.md, Discovery)


def lot_ref_json(lot_id: uuid.UUID, name: str, lat: float, lng: float) -> bytes:
    """A search item's `lot` member as JSON, written once per lot when a snapshot loads."""
    return orjson.dumps({"id": str(lot_id), "name": name, "location": {"lat": lat, "lng": lng}})


def _unit(lat: npt.NDArray[np.float64], lng: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    la, lo = np.radians(lat), np.radians(lng)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])  # (3, n): rows x, y, z


_new_tuple = tuple.__new__
_TWO_R = 2 * EARTH_RADIUS_M
_LOW_64 = (1 << 64) - 1


def amenity_mask(names: tuple[str, ...] | list[str]) -> int:
    return sum(1 << AMENITIES.index(n) for n in names if n in AMENITIES)


@lru_cache(maxsize=8192)
def _ring_array(origin: str, cover_m: float) -> npt.NDArray[np.int64]:
    return np.array(ring_cells(origin, cover_m), dtype=np.int64)


@dataclass(frozen=True)
class LotSnapshot:
    """Every open lot at one version of the lot tables."""

    version: int | None
    ids: list[uuid.UUID]
    names: list[str]
    lats: list[float]
    lngs: list[float]
    cards: list[Card | None]
    cells: npt.NDArray[np.int64]  # sorted; the other arrays follow the same order
    xyz: npt.NDArray[np.float64]  # (3, n) unit vectors, one column per lot (q @ xyz is a fast row-vector product)
    horizon: npt.NDArray[np.int32]
    amenities: npt.NDArray[np.int32]
    ev_overflow: list[bool]
    capacity: dict[str | None, npt.NDArray[np.int32]]  # usable capacity per vehicle type (None: any)
    lot_json: list[bytes]
    min_horizon: int  # the shortest booking horizon of any lot (windows within it need no horizon check)
    capacity_list: dict[str | None, list[int]]  # `capacity` as Python ints, for the page's Hits
    id_hi: npt.NDArray[np.uint64]  # each lot id's 128 bits as two halves: ties are ordered by id, as UUIDs compare
    id_lo: npt.NDArray[np.uint64]
    _rings: dict[tuple[str, float], tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]] = field(
        default_factory=dict, compare=False, repr=False)
    _ring_positions: list[int] = field(default_factory=lambda: [0], compare=False, repr=False)
    lat_arr: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0), compare=False, repr=False)
    lng_arr: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0), compare=False, repr=False)

    @classmethod
    def build(cls, version: int | None, rows: list[asyncpg.Record], cards: dict[uuid.UUID, Card]) -> LotSnapshot:
        located = sorted(((cell(float(r["lat"]), float(r["lng"]), INDEX_RES), r) for r in rows), key=lambda c: c[0])
        rows = [r for _, r in located]
        in_service = np.array([r["spots_in_service"] for r in rows], dtype=np.int32).reshape(len(rows), 6)
        overflow = [bool(r["ev_overflow"]) for r in rows]
        capacity = {}
        for vt in VEHICLE_TYPES:  # as lot_usable_capacity() in SQL: ev spots also count where overflow applies
            usable, ev_if_overflow = usable_mask(vt)
            weights = np.tile(np.array(usable, dtype=np.int32), (len(rows), 1))
            weights[:, 4] |= np.array(overflow, dtype=np.int32) * ev_if_overflow
            capacity[vt] = (in_service * weights).sum(axis=1, dtype=np.int32)
        lats = [float(r["lat"]) for r in rows]
        lngs = [float(r["lng"]) for r in rows]
        return cls(
            version=version, ids=[r["id"] for r in rows], names=[r["name"] for r in rows], lats=lats, lngs=lngs,
            cards=[cards.get(r["id"]) for r in rows],
            cells=np.array([c for c, _ in located], dtype=np.int64),
            xyz=_unit(np.array(lats, dtype=np.float64), np.array(lngs, dtype=np.float64)).reshape(3, len(rows)),
            horizon=np.array([r["booking_horizon_days"] for r in rows], dtype=np.int32),
            amenities=np.array([amenity_mask(r["amenities"]) for r in rows], dtype=np.int32),
            ev_overflow=overflow, capacity=capacity,
            min_horizon=min((int(r["booking_horizon_days"]) for r in rows), default=0),
            capacity_list={vt: counts.tolist() for vt, counts in capacity.items()},
            id_hi=np.array([r["id"].int >> 64 for r in rows], dtype=np.uint64),
            id_lo=np.array([r["id"].int & _LOW_64 for r in rows], dtype=np.uint64),
            lot_json=[lot_ref_json(r["id"], r["name"], lat, lng) for r, lat, lng in zip(rows, lats, lngs, strict=True)],
            lat_arr=np.array(lats, dtype=np.float64), lng_arr=np.array(lngs, dtype=np.float64))

    def _in_ring(self, origin: str, cover_m: float) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
        """Positions and unit vectors of the lots whose r10 cell is in the ring covering `cover_m` around `origin`
        (remembered per snapshot for the most recent rings, up to RING_MEMO_POSITIONS positions in all: a
        search then reads one contiguous block instead of gathering a few hundred scattered columns of the city's
        vectors)."""
        if cover_m > FULL_SCAN_COVER_M:
            return np.arange(len(self.ids)), self.xyz
        key = (origin, cover_m)
        memo = self._rings
        found = memo.get(key)
        if found is not None:
            return found
        ring = _ring_array(origin, cover_m)
        cells = self.cells  # ndarray methods, not np.* functions: each of those costs a Python-level wrapper
        lo, hi = cells.searchsorted(ring, "left"), cells.searchsorted(ring, "right")
        sizes = hi - lo
        ends = sizes.cumsum()
        total = int(ends[-1]) if len(ends) else 0
        # concatenated ranges lo[i]..hi[i] without a Python loop
        positions = (lo - (ends - sizes)).repeat(sizes) + np.arange(total) if total else np.empty(0, dtype=np.intp)
        found = memo[key] = (positions, self.xyz.take(positions, axis=1))
        self._ring_positions[0] += len(positions)
        while self._ring_positions[0] > RING_MEMO_POSITIONS and len(memo) > 1:
            self._ring_positions[0] -= len(memo.pop(next(iter(memo)))[0])
        return found

    def nearest(self, *, lat: float, lng: float, radius_m: float, vehicle_type: str | None, amenities: int,
                horizon_days: int, after: tuple[float, uuid.UUID], need: int) -> list[Hit]:
        """The first `need` eligible lots within `radius_m` ordered by (distance, id) after `after`."""
        if not self.ids:
            return []
        origin = h3.latlng_to_cell(lat, lng, INDEX_RES)
        phi, lam = math.radians(lat), math.radians(lng)
        q = np.array([math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi)])
        q_column = q.reshape(3, 1)
        capacity = self.capacity[vehicle_type]
        cover = min(radius_m, max(FIRST_COVER_M, after[0] + FIRST_COVER_M))
        while True:
            idx, near = self._in_ring(origin, cover)
            # A ring holds far more lots than its cover (a 200 m cover is a ~0.9 km2 ring of r10 cells): drop the
            # lots beyond the cover first, by the dot product of unit vectors (one matrix-vector product), with
            # a margin far above its rounding error near 0; the rest is done on the few kept.
            kept = (q @ near >= math.cos(min((cover + PREFILTER_MARGIN_M) / EARTH_RADIUS_M, math.pi))).nonzero()[0]
            idx, near = idx.take(kept), near.take(kept, axis=1)
            eligible = capacity.take(idx) > 0
            if horizon_days > self.min_horizon:
                eligible &= self.horizon.take(idx) >= horizon_days
            if amenities:
                eligible &= (self.amenities.take(idx) & amenities) == amenities
            idx, near = idx[eligible], near[:, eligible]
            # great-circle distance from the chord between unit vectors (subtracted before squaring: accurate to
            # nanometres at these distances, where 1 - dot would lose them)
            apart = near - q_column
            distance = np.arcsin(np.minimum(np.sqrt(np.add.reduce(apart * apart, axis=0)) * 0.5, 1.0)) * _TWO_R
            key = distance.round(TIE_DECIMALS)
            keep = distance <= min(cover, radius_m)
            hi, lo = self.id_hi.take(idx), self.id_lo.take(idx)
            if after[0] >= 0:
                after_key, after_int = after[0], after[1].int
                after_hi, after_lo = after_int >> 64, after_int & _LOW_64
                keep &= (key > after_key) | ((key == after_key) & ((hi > after_hi) | ((hi == after_hi)
                                                                                     & (lo > after_lo))))
            idx, distance, key, hi, lo = idx[keep], distance[keep], key[keep], hi[keep], lo[keep]
            order = np.lexsort((lo, hi, key))[:need]  # (distance to the micrometre, id): the keyset order
            page = idx.take(order).tolist()
            distances = distance.take(order).tolist()
            # complete once every lot nearer than the page's last one lies inside the covered distance
            if cover >= radius_m or (len(page) >= need and distances[need - 1] <= cover - EPS_M):
                return self._hits(page, distances, key.take(order).tolist(), self.capacity_list[vehicle_type])
            cover = min(radius_m, cover * 2)

    def in_bbox(self, *, bbox: BBox, lat: float, lng: float, vehicle_type: str | None, amenities: int,
                horizon_days: int, after: tuple[float, uuid.UUID], need: int) -> list[Hit]:
        """The first `need` eligible lots inside `bbox` (edges included, as the SQL bbox search), ordered by
        (distance from lat/lng, id) after `after`: the SQL bbox search's answer, from memory."""
        if not self.ids:
            return []
        (w1, e1), (w2, e2) = bbox.lng_ranges()
        lats, lngs = self.lat_arr, self.lng_arr
        inside = (lats >= bbox.south) & (lats <= bbox.north) & (((lngs >= w1) & (lngs <= e1)) | ((lngs >= w2)
                                                                                                  & (lngs <= e2)))
        inside &= self.capacity[vehicle_type] > 0
        if horizon_days > self.min_horizon:
            inside &= self.horizon >= horizon_days
        if amenities:
            inside &= (self.amenities & amenities) == amenities
        idx = inside.nonzero()[0]
        phi, lam = math.radians(lat), math.radians(lng)
        q_column = np.array([math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi)]).reshape(3, 1)
        apart = self.xyz.take(idx, axis=1) - q_column
        distance = np.arcsin(np.minimum(np.sqrt(np.add.reduce(apart * apart, axis=0)) * 0.5, 1.0)) * _TWO_R
        key = distance.round(TIE_DECIMALS)
        hi, lo = self.id_hi.take(idx), self.id_lo.take(idx)
        if after[0] >= 0:
            after_int = after[1].int
            after_hi, after_lo = after_int >> 64, after_int & _LOW_64
            keep = (key > after[0]) | ((key == after[0]) & ((hi > after_hi) | ((hi == after_hi) & (lo > after_lo))))
            idx, distance, key, hi, lo = idx[keep], distance[keep], key[keep], hi[keep], lo[keep]
        order = np.lexsort((lo, hi, key))[:need]
        return self._hits(idx.take(order).tolist(), distance.take(order).tolist(), key.take(order).tolist(),
                          self.capacity_list[vehicle_type])

    def _hits(self, positions: list[int], distances: list[float], keys: list[float],
              capacity: list[int]) -> list[Hit]:
        ids, names, lats, lngs = self.ids, self.names, self.lats, self.lngs
        overflow, cards, lot_json = self.ev_overflow, self.cards, self.lot_json
        # tuple.__new__ straight away: NamedTuple's generated __new__ is a Python frame per Hit
        return [_new_tuple(Hit, (ids[i], names[i], lats[i], lngs[i], d, key, capacity[i], overflow[i], cards[i],
                                 lot_json[i])) for i, d, key in zip(positions, distances, keys, strict=True)]


async def load_snapshot(conn: asyncpg.Connection) -> LotSnapshot:
    """Every open lot and every rate card, read in one snapshot together with the version they are at."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        version = await conn.fetchval(queries.INDEX_VERSION)
        rows = await conn.fetch(queries.INDEX_LOTS)
        cards = {}
        for group in await conn.fetch(queries.INDEX_CARDS):
            body = group["body"]  # one str object for every lot with this card
            for lot_id, card_version, tz in zip(group["lot_ids"], group["versions"], group["zones"], strict=True):
                cards[lot_id] = Card(body, card_version, tz)
    return LotSnapshot.build(version, rows, cards)


class LotIndex:
    """The current snapshot of one worker, checked for changes at most once per `refresh`."""

    def __init__(self, *, pool: Callable[[], Awaitable[asyncpg.Pool]], refresh: timedelta) -> None:
        self._pool, self.refresh = pool, refresh
        self._snapshot: LotSnapshot | None = None
        self.checked_at: datetime | None = None  # when the version was last read (the snapshot is current as of it)
        self._next_check: datetime | None = None
        self._lock = asyncio.Lock()

    async def snapshot(self, now: datetime) -> LotSnapshot:
        """The snapshot to search; polls the version (and reloads) when the refresh interval has passed.

        One request polls; the others keep searching the current snapshot meanwhile (only the very first
        load is waited for). When the poll fails (PostgreSQL unreachable or failing), the copy in memory is
        served, a warning logged, and the poll tried again after another refresh interval; `checked_at` stays
        at the last successful poll."""
        current = self._snapshot
        if current is not None and ((self._next_check is not None and now < self._next_check)
                                    or self._lock.locked()):
            return current
        async with self._lock:
            if self._snapshot is None or self._next_check is None or now >= self._next_check:
                try:
                    await self.refresh_now(now)
                except _DB_UNAVAILABLE as exc:
                    if self._snapshot is None:
                        raise
                    self._next_check = now + self.refresh
                    log.warning("lot_index_check_failed", serving_version=self._snapshot.version,
                                checked_at=self.checked_at.isoformat() if self.checked_at else None,
                                error=repr(exc)[:200])
        assert self._snapshot is not None
        return self._snapshot

    @property
    def loaded(self) -> bool:
        """Whether a snapshot is in memory."""
        return self._snapshot is not None

    async def preload(self) -> None:
        """Load a snapshot ahead of the first search (a worker's start-up: ~1.7 s of CPU for 100,000 lots). The
        first search still polls the version. If PostgreSQL can't be read, the first search loads it instead."""
        async with self._lock:
            if self._snapshot is not None:
                return
            try:
                pool = await self._pool()
                async with pool.acquire() as conn:
                    self._snapshot = await load_snapshot(conn)
            except _DB_UNAVAILABLE as exc:
                log.warning("lot_index_preload_failed", error=repr(exc)[:200])

    async def refresh_now(self, now: datetime) -> None:
        """Poll the version and reload if it changed (or nothing is loaded yet)."""
        pool = await self._pool()
        async with pool.acquire() as conn:
            version = await conn.fetchval(queries.INDEX_VERSION)
            if self._snapshot is None or version != self._snapshot.version:
                self._snapshot = await load_snapshot(conn)
        self.checked_at, self._next_check = now, now + self.refresh


def lot_index(ctx: AppContext) -> LotIndex:
    """The process's lot index (one per context)."""
    index = ctx.extras.get("lot_index")
    if index is None:
        index = LotIndex(pool=ctx.pg, refresh=timedelta(milliseconds=ctx.settings.search_index_refresh_ms))
        ctx.extras["lot_index"] = index
    return cast(LotIndex, index)
