"""EV chargers: registration and revocation, what a connector's state counts as, the per-lot summary and alerts
(`charger_summary`, `charger_alerts`: the read functions the dashboard and open data feeds call), and the
process's board of every lot's counts that search reads instead of PostgreSQL.

A connector counts as exactly one of: `offline` (its charger silent for more than twice its heartbeat interval,
or the connector never reported a status), `faulted` (it or its charger reports Faulted or Unavailable),
`available`, or `charging` (in use: Preparing, Charging, SuspendedEV(SE), Finishing, Reserved). So
total = available + charging + faulted + offline.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

import asyncpg

from controllers import queries_chargers as q
from core.context import AppContext
from core.errors import NotFound, ValidationFailed
from core.keys import Keys
from core.logging import get_logger
from core.security import hash_api_key

log = get_logger("parkgrid.chargers")

IN_USE = frozenset({"Preparing", "Charging", "SuspendedEVSE", "SuspendedEV", "Finishing", "Reserved"})
BROKEN = frozenset({"Faulted", "Unavailable"})
STATES = ("available", "charging", "faulted", "offline")
MAX_CONNECTORS = 16
_DB_UNAVAILABLE = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


@dataclass(frozen=True)
class EvCounts:
    """A lot's charging connectors by state (one car per connector)."""

    total: int = 0
    available: int = 0
    charging: int = 0
    faulted: int = 0
    offline: int = 0

    def as_json(self) -> dict[str, int]:
        return {"total": self.total, "available": self.available, "charging": self.charging,
                "faulted": self.faulted, "offline": self.offline}


NO_CHARGERS = EvCounts()


def connector_state(*, charger_status: str, last_seen_at: datetime | None, heartbeat_interval_s: int, status: str,
                    now: datetime) -> str:
    """What one connector counts as at `now`: offline, faulted, available or charging."""
    if last_seen_at is None or now - last_seen_at > timedelta(seconds=2 * heartbeat_interval_s) or status == "Unknown":
        return "offline"
    if charger_status in BROKEN or status in BROKEN:
        return "faulted"
    return "available" if status == "Available" else "charging"


def count_states(states: Iterable[str]) -> EvCounts:
    tally = dict.fromkeys(STATES, 0)
    for state in states:
        tally[state] += 1
    return EvCounts(total=sum(tally.values()), **tally)


# -- registry -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NewCharger:
    charger_id: uuid.UUID
    lot_id: uuid.UUID
    charge_point_id: str
    password: str  # shown once; only its hash is stored


def new_password() -> str:
    """OCPP 1.6 security profile 1 passwords are 16-40 characters: 40 hex digits (160 random bits)."""
    return secrets.token_hex(20)


async def register_charger(*, conn: asyncpg.Connection, lot_id: uuid.UUID, spot_id: uuid.UUID | None = None,
                           connectors: int = 1, charge_point_id: str | None = None) -> NewCharger:
    """Register a charger of a lot (on one of its spots if given) with its connectors; returns its password once."""
    if not 1 <= connectors <= MAX_CONNECTORS:
        raise ValidationFailed(f"connectors must be between 1 and {MAX_CONNECTORS}", loc=("connectors",))
    if await conn.fetchval(q.LOT_EXISTS, lot_id) is None:
        raise NotFound(f"lot {lot_id} not found")
    if spot_id is not None and await conn.fetchval(q.SPOT_OF_LOT, lot_id, spot_id) is None:
        raise ValidationFailed(f"spot {spot_id} is not a spot of lot {lot_id}", loc=("spot",))
    cp_id = charge_point_id or f"pgc-{secrets.token_hex(6)}"
    password = new_password()
    async with conn.transaction():
        try:
            charger_id = await conn.fetchval(q.INSERT_CHARGER, lot_id, cp_id, spot_id, hash_api_key(password),
                                             connectors)
        except asyncpg.CheckViolationError:
            raise ValidationFailed("charge point id: 1-48 letters, digits, '.', '_' or '-'",
                                   loc=("charge_point_id",)) from None
        if charger_id is None:
            raise ValidationFailed(f"charge point id {cp_id!r} is taken", loc=("charge_point_id",))
        await conn.execute(q.INSERT_CONNECTORS, lot_id, charger_id, connectors)
    return NewCharger(charger_id, lot_id, cp_id, password)


async def revoke_charger(*, conn: asyncpg.Connection, charge_point_id: str, now: datetime) -> uuid.UUID:
    """Revoke a charger at once (its handshakes are refused; open connections are closed by api.ocpp); returns
    its lot."""
    row = await conn.fetchrow(q.REVOKE, charge_point_id, now)
    if row is None:
        raise NotFound(f"charger {charge_point_id} not found")
    return cast(uuid.UUID, row["lot_id"])


@dataclass(frozen=True)
class Charger:
    """A registered charger as its connection knows it."""

    lot_id: uuid.UUID
    id: uuid.UUID
    charge_point_id: str
    connectors: int


async def authenticate(*, conn: asyncpg.Connection, charge_point_id: str, password: str) -> Charger | None:
    """The charger these Basic credentials name, or None (unknown, revoked or wrong password: the same answer)."""
    row = await conn.fetchrow(q.CREDENTIALS, charge_point_id)
    given = hash_api_key(password)
    if row is None:
        hmac.compare_digest(given, given)  # the same work either way
        return None
    if not hmac.compare_digest(given, row["password_hash"]):
        return None
    return Charger(row["lot_id"], row["id"], row["charge_point_id"], row["connectors"])


async def revoked_among(*, pool: asyncpg.Pool, charge_point_ids: list[str]) -> list[str]:
    """Which of these charge point ids are revoked (or gone)."""
    if not charge_point_ids:
        return []
    async with pool.acquire() as conn:
        live = {r["charge_point_id"] for r in await conn.fetch(q.LIVE_AMONG, charge_point_ids)}
    return [c for c in charge_point_ids if c not in live]


# -- reads --------------------------------------------------------------------------------------------------------

class Reads(Protocol):
    """A SQLAlchemy AsyncConnection, or core.db.RawReads over an asyncpg connection."""

    async def execute(self, statement: Any, params: Mapping[str, Any]) -> Any: ...


@dataclass(frozen=True)
class ConnectorView:
    charge_point_id: str
    connector_id: int
    spot_id: uuid.UUID | None
    status: str  # the OCPP status last reported
    error_code: str
    state: str  # available | charging | faulted | offline
    status_at: datetime | None
    last_seen_at: datetime | None


@dataclass(frozen=True)
class ChargerSummary:
    lot_id: uuid.UUID
    counts: EvCounts
    connectors: list[ConnectorView]
    as_of: datetime


async def charger_summary(*, conn: Reads, lot_id: uuid.UUID, now: datetime) -> ChargerSummary:
    """A lot's chargers: counts by state and every connector with its last status (read from PostgreSQL)."""
    views = []
    for r in await conn.execute(q.LOT_CONNECTORS, {"lot_id": lot_id}):
        state = connector_state(charger_status=r.charger_status, last_seen_at=r.last_seen_at,
                                heartbeat_interval_s=r.heartbeat_interval_s, status=r.status, now=now)
        views.append(ConnectorView(r.charge_point_id, r.connector_id, r.spot_id, r.status, r.error_code, state,
                                   r.status_at, r.last_seen_at))
    return ChargerSummary(lot_id, count_states(v.state for v in views), views, now)


@dataclass(frozen=True)
class ChargerAlert:
    kind: str  # charger_faulted | charger_offline
    charge_point_id: str
    connector_id: int
    since: datetime | None
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "charge_point_id": self.charge_point_id, "connector_id": self.connector_id,
                "since": self.since, "detail": self.detail}


async def charger_alerts(*, conn: Reads, lot_id: uuid.UUID, now: datetime) -> list[ChargerAlert]:
    """One alert per faulted or offline connector of a lot (for the operators' dashboard)."""
    summary = await charger_summary(conn=conn, lot_id=lot_id, now=now)
    alerts = []
    for c in summary.connectors:
        if c.state == "faulted":
            alerts.append(ChargerAlert("charger_faulted", c.charge_point_id, c.connector_id, c.status_at,
                                       f"{c.status} ({c.error_code})"))
        elif c.state == "offline":
            detail = "never connected" if c.last_seen_at is None else "silent past twice its heartbeat interval"
            alerts.append(ChargerAlert("charger_offline", c.charge_point_id, c.connector_id, c.last_seen_at, detail))
    return alerts


class EvBoard:
    """Every lot's EV counts in one process, read from PostgreSQL at most once per `refresh` (on demand, by the
    first caller past it; the others keep the current copy meanwhile), so a search reads a dict, not SQL. A failed
    read keeps serving the last copy and is tried again after another interval.

    The process that receives a charger's StatusNotification also re-reads that one lot right after (`refresh_lot`):
    its own searches see the change at once, other processes within `refresh`. A full read that began before such
    a lot read keeps the lot's newer counts."""

    def __init__(self, *, pool: Callable[[], Awaitable[asyncpg.Pool]], refresh: timedelta) -> None:
        self._pool, self.refresh = pool, refresh
        self._counts: dict[uuid.UUID, EvCounts] | None = None
        self._with_free: frozenset[uuid.UUID] = frozenset()
        self._next: datetime | None = None
        self._lock = asyncio.Lock()
        self.as_of: datetime | None = None
        self._seq = 0  # lot reads so far
        self._patched: dict[uuid.UUID, tuple[int, EvCounts]] = {}  # lot -> (its last lot read, its counts)

    async def counts(self, now: datetime) -> Mapping[uuid.UUID, EvCounts]:
        """Lot id -> counts (lots without chargers are absent)."""
        current = self._counts
        if current is not None and ((self._next is not None and now < self._next) or self._lock.locked()):
            return current
        async with self._lock:
            if self._counts is None or self._next is None or now >= self._next:
                try:
                    await self._load(now)
                except _DB_UNAVAILABLE as exc:
                    if self._counts is None:
                        raise
                    self._next = now + self.refresh
                    log.warning("ev_board_refresh_failed", error=repr(exc)[:200])
        assert self._counts is not None
        return self._counts

    async def lots_with_free_charger(self, now: datetime) -> frozenset[uuid.UUID]:
        """Lots with at least one available (working, online, free) connector."""
        await self.counts(now)
        return self._with_free

    async def _load(self, now: datetime) -> None:
        pool = await self._pool()
        began = self._seq
        async with pool.acquire() as conn:
            counts = _by_lot(await conn.fetch(q.ALL_COUNTS, now))
        for lot_id, (seq, patched) in list(self._patched.items()):
            if seq > began:  # read after this full read began: newer
                _put(counts, lot_id, patched)
            else:
                del self._patched[lot_id]
        self._counts, self.as_of, self._next = counts, now, now + self.refresh
        self._with_free = frozenset(lot_id for lot_id, c in counts.items() if c.available)

    async def refresh_lot(self, *, conn: asyncpg.Connection, lot_id: uuid.UUID, now: datetime) -> None:
        """Re-read one lot's connectors (after a status change this process committed)."""
        if self._counts is None:
            return  # nothing loaded yet: the first read loads everything
        self._seq += 1
        seq = self._seq
        counts = _by_lot(await conn.fetch(q.ONE_LOT_COUNTS, now, lot_id)).get(lot_id, NO_CHARGERS)
        self._patched[lot_id] = (seq, counts)
        board = dict(self._counts)
        _put(board, lot_id, counts)
        self._counts = board
        self._with_free = (self._with_free | {lot_id}) if counts.available else (self._with_free - {lot_id})


def _by_lot(rows: Iterable[Any]) -> dict[uuid.UUID, EvCounts]:
    return {r["lot_id"]: EvCounts(r["total"], r["available"], r["charging"], r["faulted"], r["offline"]) for r in rows}


def _put(counts: dict[uuid.UUID, EvCounts], lot_id: uuid.UUID, value: EvCounts) -> None:
    if value.total:
        counts[lot_id] = value
    else:
        counts.pop(lot_id, None)


async def announce_revocation(ctx: AppContext, charge_point_id: str) -> None:
    """Tell every API process to close this charger's open connection (api.ocpp.ChargerHub listens)."""
    await ctx.redis.publish(Keys(ctx.settings.redis_prefix).charger_revocations(), charge_point_id)


def ev_board(ctx: AppContext) -> EvBoard:
    """The process's board (one per context)."""
    return ctx.shared("ev_board", lambda: EvBoard(pool=ctx.pg,
                                                 refresh=timedelta(milliseconds=ctx.settings.ev_board_refresh_ms)))
