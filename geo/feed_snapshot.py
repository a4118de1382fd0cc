"""The open data snapshot: every published lot with a count partners can trust, rebuilt when something changed.

One snapshot per worker feeds every format (GeoJSON, ParkAPI v1 and v3, DATEX II, OGC API - Features). It is
built from three statements (geo/open_queries.py) and rebuilt only when the change number (a sequence that
triggers on lots, spots, reservations and sensors advance) moved, when a published sensor count is about to go
stale, or when it is older than the maximum age (opening hours turn with the clock alone); never more than once
per minimum interval, never per request.

Numbers people can trust (docs/design.md invariant 8): `available` is an integer in [0, capacity] or None. A lot
without a live source (no mapped sensors, no entry gate), with a stale source, closed by its operator or outside
its opening hours publishes None with a status (`unknown` / `closed`) and the reason.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt
import orjson

from core.errors import ServiceUnavailable
from core.vocabulary import widen_to_slots
from geo import open_queries as q
from geo.availability import ALL_SPOT_TYPES
from geo.feed_hours import is_open_at

SOURCE_SENSOR, SOURCE_GATE, SOURCE_NONE = "sensor", "gate", "none"
DB_UNAVAILABLE = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
log = logging.getLogger(__name__)


@dataclass(slots=True)
class FeedLot:
    """One lot as every feed publishes it (read-only once built; not frozen: a frozen init costs ~1 us per field)."""

    id: uuid.UUID
    name: str
    address: str
    lat: float
    lng: float
    timezone: str
    kind: str
    amenities: tuple[str, ...]
    opening_hours: str | None
    height_limit_cm: int | None
    fee: bool | None
    osm_ref: str | None  # "way/123" when the lot came from OpenStreetMap
    park_ride: bool | None
    outline: dict[str, Any] | None  # the OSM outline (GeoJSON geometry)
    capacity: int | None  # in-service spots; None when unknown (a car park listed from OSM without capacity)
    capacity_by_type: dict[str, int]
    available: int | None
    available_by_type: dict[str, int | None]
    status: str  # open | closed | full | unknown
    status_reason: str | None
    source: str  # sensor | gate | none
    as_of: datetime | None
    stale: bool
    bookable: bool
    lot_updated_at: datetime
    changed_at: datetime  # when what this lot publishes last changed (modified_since, per-item lastUpdate)
    key: bytes = b""  # what a partner sees of the lot but its change time (a gate count's as_of is that time)


@dataclass
class Snapshot:
    lots: list[FeedLot]
    digest: str  # of every lot's content: the feeds' ETags derive from it
    changed_at: datetime  # when the digest last changed: Last-Modified
    built_at: datetime
    change_number: int
    expires_at: datetime  # rebuild by then even if nothing changed
    lat: npt.NDArray[np.float64] = field(repr=False, default_factory=lambda: np.empty(0))
    lng: npt.NDArray[np.float64] = field(repr=False, default_factory=lambda: np.empty(0))
    by_id: dict[uuid.UUID, int] = field(repr=False, default_factory=dict)
    rendered: dict[str, Any] = field(repr=False, default_factory=dict)  # per-format bodies, built on first use

    def in_bbox(self, bbox: tuple[float, float, float, float] | None) -> list[FeedLot]:
        """Lots inside (min_lng, min_lat, max_lng, max_lat), edges included; every lot for None."""
        if bbox is None:
            return self.lots
        min_lng, min_lat, max_lng, max_lat = bbox
        inside = (self.lat >= min_lat) & (self.lat <= max_lat)
        if min_lng <= max_lng:
            inside &= (self.lng >= min_lng) & (self.lng <= max_lng)
        else:  # a box across the antimeridian
            inside &= (self.lng >= min_lng) | (self.lng <= max_lng)
        return [self.lots[i] for i in np.flatnonzero(inside)]

    def get(self, lot_id: uuid.UUID) -> FeedLot | None:
        i = self.by_id.get(lot_id)
        return None if i is None else self.lots[i]


def _sensor_type_count(row: asyncpg.Record, *, now: datetime, stale_after: timedelta) -> int | None:
    """Free spots of one type by its sensors; None when its data is stale or no bay is known."""
    capacity, sensors, unknown = int(row["capacity"]), int(row["sensors"]), int(row["unknown"])
    as_of = row["as_of"]
    known = min(sensors, capacity) - min(unknown, sensors)
    if as_of is None or now - as_of > stale_after or known <= 0:
        return None
    # uncovered and unknown bays are never counted free
    return max(0, min(capacity, known - int(row["occupied"])))


def lot_record(row: asyncpg.Record, *, now: datetime, busy: dict[str, int] | None,
               sensors: dict[str, asyncpg.Record] | None, stale_after: timedelta,
               previous: FeedLot | None = None) -> FeedLot:
    """One lot's published record; it keeps the previous record's change time when nothing it shows changed."""
    capacity_by_type = {t: n for t, n in zip(ALL_SPOT_TYPES, row["spots_in_service"], strict=True) if n > 0}
    capacity = sum(capacity_by_type.values()) if row["capacity"] > 0 else None
    ref = row["external_ref"]
    osm_ref = ref[4:] if ref is not None and ref.startswith("osm:") else None
    has_gate = row["has_entry_gate"]
    source = SOURCE_SENSOR if sensors else SOURCE_GATE if has_gate else SOURCE_NONE
    available: int | None = None
    by_type: dict[str, int | None] = dict.fromkeys(capacity_by_type)
    as_of: datetime | None = None
    stale = False
    reason: str | None = None
    status = "unknown"
    if capacity is None:
        reason = "capacity unknown: listed from OpenStreetMap without capacity" if osm_ref else "capacity unknown"
    elif row["status"] == "closed":
        status, reason = "closed", "closed by the operator"
    elif row["opening_hours"] and not _open_now(row, now):
        status, reason = "closed", f"outside opening hours ({row['opening_hours']})"
    elif capacity == 0:
        status, reason = "closed", "no spot in service"
    elif sensors:
        as_of = max((r["as_of"] for r in sensors.values() if r["as_of"] is not None), default=None)
        by_type = {t: (_sensor_type_count(sensors[t], now=now, stale_after=stale_after) if t in sensors else None)
                   for t in capacity_by_type}
        missing = sorted(t for t, n in by_type.items() if n is None)
        if missing:
            stale = True
            reason = f"sensor data stale or missing for {', '.join(missing)}"
        else:
            available = sum(n for n in by_type.values() if n is not None)
    elif has_gate:
        taken = busy or {}
        by_type = {t: max(0, n - taken.get(t, 0)) for t, n in capacity_by_type.items()}
        available = sum(n for n in by_type.values() if n is not None)
    else:
        reason = "no live count: the lot has neither bay sensors nor an entry gate"
    if available is not None:
        status = "full" if available == 0 else "open"
    bookable = capacity is not None and capacity > 0 and row["status"] == "open"
    outline_text = row["outline"]
    amenities = tuple(row["amenities"])
    key = orjson.dumps([str(row["id"]), row["name"], row["address"], row["lat"], row["lng"], row["kind"], amenities,
                        row["opening_hours"], row["height_limit_cm"], row["fee"], osm_ref, row["park_ride"],
                        outline_text, capacity, capacity_by_type, available, by_type, status, reason, source,
                        None if source == SOURCE_GATE else as_of, stale, bookable, row["updated_at"]])
    changed_at = now
    if previous is not None and previous.key == key:
        changed_at = previous.changed_at
    if source == SOURCE_GATE and available is not None:
        as_of = changed_at  # the count has held since it was first published
    return FeedLot(
        row["id"], row["name"], row["address"], float(row["lat"]), float(row["lng"]), row["timezone"], row["kind"],
        amenities, row["opening_hours"], row["height_limit_cm"], row["fee"], osm_ref, row["park_ride"],
        orjson.loads(outline_text) if outline_text else None, capacity, capacity_by_type, available, by_type, status,
        reason, source, as_of, stale, bookable, row["updated_at"], changed_at, key)


def _open_now(row: asyncpg.Record, now: datetime) -> bool:
    try:
        return is_open_at(row["opening_hours"], timezone=row["timezone"], at=now)
    except ValueError:
        return True  # an unparseable value is never stored (geo.schemas); if one is, it does not close the lot


async def build_snapshot(pg: asyncpg.Pool | asyncpg.Connection, *, now: datetime, previous: Snapshot | None,
                         stale_after: timedelta, max_age: timedelta) -> Snapshot:
    """Read the city (in one repeatable-read transaction) and derive every lot's published record."""
    async with _reading(pg) as conn:
        number = _change_number(await conn.fetchrow(q.CHANGE_NUMBER))
        rows = await conn.fetch(q.FEED_LOTS)
        start, end = widen_to_slots(now, now + timedelta(minutes=1))
        busy: dict[uuid.UUID, dict[str, int]] = {}
        for r in await conn.fetch(q.BUSY_NOW, start, end):
            busy.setdefault(r["lot_id"], {})[r["type"]] = int(r["busy"])
        sensors: dict[uuid.UUID, dict[str, asyncpg.Record]] = {}
        for r in await conn.fetch(q.SENSOR_GROUPS, now):
            sensors.setdefault(r["lot_id"], {})[r["spot_type"]] = r
    lots = []
    expires_at = now + max_age
    # ~10 objects per lot, none of them cyclic: the cyclic collector would only walk the heap again and again
    # while they are made
    collecting = gc.isenabled()
    gc.disable()
    try:
        for row in rows:
            lot = lot_record(row, now=now, busy=busy.get(row["id"]), sensors=sensors.get(row["id"]),
                             stale_after=stale_after,
                             previous=previous.get(row["id"]) if previous is not None else None)
            if lot.source == SOURCE_SENSOR and lot.available is not None and lot.as_of is not None:
                expires_at = min(expires_at, lot.as_of + stale_after + timedelta(seconds=1))
            lots.append(lot)
    finally:
        if collecting:
            gc.enable()
    digest = hashlib.blake2b(b"".join(lot.key for lot in lots), digest_size=16).hexdigest()
    changed_at = previous.changed_at if previous is not None and previous.digest == digest else now
    return Snapshot(lots=lots, digest=digest, changed_at=changed_at.replace(microsecond=0), built_at=now,
                    change_number=number, expires_at=expires_at,
                    lat=np.array([lot.lat for lot in lots], dtype=np.float64),
                    lng=np.array([lot.lng for lot in lots], dtype=np.float64),
                    by_id={lot.id: i for i, lot in enumerate(lots)})


def _change_number(row: asyncpg.Record | None) -> int:
    if row is None:
        return 0
    return int(row["last_value"]) if row["is_called"] else 0


class _reading:
    """A repeatable-read, read-only transaction on a connection of the pool (or the connection given)."""

    def __init__(self, pg: asyncpg.Pool | asyncpg.Connection) -> None:
        self.pg = pg
        self.conn: Any = None
        self.tx: Any = None

    async def __aenter__(self) -> asyncpg.Connection:
        if isinstance(self.pg, asyncpg.Pool):
            self.conn = await self.pg.acquire()
            conn = self.conn
        else:
            conn = self.pg
        self.tx = conn.transaction(isolation="repeatable_read", readonly=True)
        await self.tx.start()
        return conn  # type: ignore[no-any-return]

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.tx.rollback()
        finally:
            if self.conn is not None:
                await self.pg.release(self.conn)  # type: ignore[union-attr]


class FeedSnapshots:
    """A worker's current snapshot, refreshed on the injected clock when the data behind it changed."""

    def __init__(self, *, pool: Callable[[], Awaitable[asyncpg.Pool]], poll: timedelta, min_rebuild: timedelta,
                 max_age: timedelta, stale_after: timedelta) -> None:
        self._pool = pool
        self.poll, self.min_rebuild, self.max_age, self.stale_after = poll, min_rebuild, max_age, stale_after
        self.snapshot: Snapshot | None = None
        self.rebuilds = 0
        self._checked_at: datetime | None = None
        self._recheck_at: datetime | None = None
        self._lock = asyncio.Lock()

    async def current(self, *, now: datetime) -> Snapshot:
        """The snapshot to serve now: rebuilt first when it is due, else the one in memory."""
        snap = self.snapshot
        if snap is None:
            async with self._lock:
                if self.snapshot is None:
                    try:
                        await self._rebuild(now)
                    except DB_UNAVAILABLE as exc:
                        raise ServiceUnavailable("open data is unavailable: the database cannot be read") from exc
            assert self.snapshot is not None
            return self.snapshot
        if self._checked_at is not None and now - self._checked_at < self.poll:
            return snap
        if self._lock.locked():
            return snap  # another request is rebuilding: serve the one in memory meanwhile
        async with self._lock:
            self._checked_at = now
            snap = self.snapshot
            assert snap is not None
            if now - snap.built_at < self.min_rebuild:
                self._checked_at = None  # look again as soon as a rebuild is allowed
                return snap
            try:
                pool = await self._pool()
                number = _change_number(await pool.fetchrow(q.CHANGE_NUMBER))
                due = (number != snap.change_number or now >= snap.expires_at
                       or (self._recheck_at is not None and now >= self._recheck_at))
                if due:
                    self._recheck_at = None
                    await self._rebuild(now)
                    if number != snap.change_number:
                        # a writer advances the number before it commits: read once more a moment later
                        self._recheck_at = now + max(self.min_rebuild, timedelta(seconds=2))
            except DB_UNAVAILABLE as exc:
                # PostgreSQL away: the snapshot in memory is served while it is younger than the maximum age
                # (its counts stay as they were counted; sensor counts still go stale by their as_of); past that,
                # no number is better than an old one
                if now - snap.built_at >= self.max_age:
                    raise ServiceUnavailable("open data is unavailable: the database cannot be read") from exc
                log.warning("open data snapshot not refreshed: %s", exc)
            assert self.snapshot is not None
            return self.snapshot

    async def _rebuild(self, now: datetime) -> None:
        pool = await self._pool()
        self.snapshot = await build_snapshot(pool, now=now, previous=self.snapshot, stale_after=self.stale_after,
                                             max_age=self.max_age)
        self._checked_at = now
        self.rebuilds += 1


def feed_snapshots(ctx: Any) -> FeedSnapshots:
    """The process's feed snapshots (one per AppContext)."""
    s = ctx.settings
    return ctx.shared("feed_snapshots", lambda: FeedSnapshots(  # type: ignore[no-any-return]
        pool=ctx.pg, poll=timedelta(milliseconds=s.open_data_poll_ms),
        min_rebuild=timedelta(seconds=s.open_data_min_rebuild_seconds),
        max_age=timedelta(seconds=s.open_data_max_age_seconds),
        stale_after=timedelta(seconds=s.open_data_stale_after_seconds)))
