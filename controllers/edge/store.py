"""The edge agent's local SQLite: a copy of the lot (reservations, passes, gates, occupancy) and the outbox.

WAL journal with synchronous=FULL: a committed outbox row survives `kill -9` and power loss. The
outbox sequence (`seq`) is the device's own order of events; sync replays it in that order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT PRIMARY KEY, plate_hash TEXT, qr_digest TEXT, starts_at TEXT NOT NULL, ends_at TEXT NOT NULL,
    spot TEXT, status TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS reservations_plate ON reservations (plate_hash);
CREATE INDEX IF NOT EXISTS reservations_qr ON reservations (qr_digest);
CREATE TABLE IF NOT EXISTS passes (id TEXT PRIMARY KEY, plate_hash TEXT NOT NULL, month TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS passes_plate ON passes (plate_hash);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    gate_id TEXT NOT NULL,
    body TEXT NOT NULL,
    direction TEXT,
    decision TEXT,
    decided_by TEXT,
    created_at TEXT NOT NULL,
    synced_at TEXT,
    cloud_status INTEGER,
    cloud_decision TEXT,
    attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (seq) WHERE synced_at IS NULL;
"""


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    event_id: str
    gate_id: str
    body: dict[str, Any]
    decision: dict[str, Any] | None
    decided_by: str | None
    synced_at: str | None


def _row(r: Any) -> OutboxRow:
    return OutboxRow(seq=r[0], event_id=r[1], gate_id=r[2], body=json.loads(r[3]),
                     decision=json.loads(r[4]) if r[4] else None, decided_by=r[5], synced_at=r[6])


_COLS = "seq, event_id, gate_id, body, decision, decided_by, synced_at"


class EdgeStore:
    """One SQLite file per lot; every write is a committed, fsynced transaction."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    @classmethod
    async def open(cls, path: Path) -> EdgeStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("PRAGMA busy_timeout=5000")
        await db.executescript(SCHEMA)
        return cls(db)

    async def close(self) -> None:
        await self.db.close()

    # --- the copy of the lot -------------------------------------------------------------
    async def replace_snapshot(self, snap: dict[str, Any]) -> None:
        """Swap in a fresh copy from the cloud in one transaction."""
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            await self.db.execute("DELETE FROM reservations")
            await self.db.execute("DELETE FROM passes")
            await self.db.executemany(
                "INSERT INTO reservations (id, plate_hash, qr_digest, starts_at, ends_at, spot, status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(r["id"], r.get("plate_hash"), r.get("qr_digest"), r["starts_at"], r["ends_at"], r.get("spot"),
                  r["status"]) for r in snap.get("reservations", [])])
            await self.db.executemany("INSERT INTO passes (id, plate_hash, month) VALUES (?, ?, ?)",
                                      [(p["id"], p["plate_hash"], p["month"]) for p in snap.get("passes", [])])
            meta = {k: snap[k] for k in ("lot_id", "generated_at", "plate_key", "capacity", "occupied",
                                         "early_arrival_minutes", "gates") if k in snap}
            await self.db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                      [(k, json.dumps(v)) for k, v in meta.items()])
            await self.db.execute("COMMIT")
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise

    async def meta(self) -> dict[str, Any]:
        async with self.db.execute("SELECT key, value FROM meta") as cur:
            return {k: json.loads(v) for k, v in await cur.fetchall()}

    async def reservation_by_plate(self, plate_hash: str, at: datetime, early_minutes: int) -> Any:
        """A confirmed/active reservation of this plate whose window (with early arrival) contains `at`."""
        async with self.db.execute(
            "SELECT id, spot, status, starts_at, ends_at FROM reservations WHERE plate_hash = ? "
            "AND datetime(starts_at, ?) <= datetime(?) AND datetime(ends_at) > datetime(?) ORDER BY starts_at LIMIT 1",
            (plate_hash, f"-{int(early_minutes)} minutes", at.isoformat(), at.isoformat())) as cur:
            return await cur.fetchone()

    async def reservation_by_qr(self, digest: str, at: datetime, early_minutes: int) -> Any:
        async with self.db.execute(
            "SELECT id, spot, status, starts_at, ends_at FROM reservations WHERE qr_digest = ? "
            "AND datetime(starts_at, ?) <= datetime(?) AND datetime(ends_at) > datetime(?) LIMIT 1",
            (digest, f"-{int(early_minutes)} minutes", at.isoformat(), at.isoformat())) as cur:
            return await cur.fetchone()

    async def has_pass(self, plate_hash: str, month: str) -> bool:
        async with self.db.execute("SELECT 1 FROM passes WHERE plate_hash = ? AND month = ?", (plate_hash, month)) as cur:
            return await cur.fetchone() is not None

    async def local_net_entries(self) -> int:
        """Cars let in minus cars let out by local decisions the cloud has not seen yet."""
        async with self.db.execute(
            "SELECT coalesce(sum(CASE direction WHEN 'entry' THEN 1 WHEN 'exit' THEN -1 ELSE 0 END), 0) FROM outbox "
            "WHERE synced_at IS NULL AND decided_by = 'local' AND json_extract(decision, '$.decision') = 'open'") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # --- the outbox ----------------------------------------------------------------------
    async def find(self, event_id: str) -> OutboxRow | None:
        async with self.db.execute(f"SELECT {_COLS} FROM outbox WHERE event_id = ?", (event_id,)) as cur:
            r = await cur.fetchone()
        return _row(r) if r else None

    async def append(self, *, event_id: str, gate_id: str, body: dict[str, Any], direction: str | None, now: datetime,
                     decision: dict[str, Any] | None = None, decided_by: str | None = None) -> OutboxRow:
        """Write the event (and its decision, when already made) durably; the existing row if it was seen."""
        await self.db.execute(
            "INSERT OR IGNORE INTO outbox (event_id, gate_id, body, direction, decision, decided_by, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (event_id, gate_id, json.dumps(body), direction, json.dumps(decision) if decision else None, decided_by,
             now.isoformat()))
        row = await self.find(event_id)
        assert row is not None
        return row

    async def set_decision(self, *, event_id: str, decision: dict[str, Any], decided_by: str) -> None:
        await self.db.execute("UPDATE outbox SET decision = ?, decided_by = ? WHERE event_id = ? AND decision IS NULL",
                              (json.dumps(decision), decided_by, event_id))

    async def mark_synced(self, *, seq: int, status: int, cloud_decision: Any, now: datetime) -> None:
        await self.db.execute(
            "UPDATE outbox SET synced_at = ?, cloud_status = ?, cloud_decision = ?, attempts = attempts + 1 "
            "WHERE seq = ? AND synced_at IS NULL", (now.isoformat(), status, json.dumps(cloud_decision), seq))

    async def pending(self, *, limit: int = 100, after: int = 0) -> list[OutboxRow]:
        async with self.db.execute(f"SELECT {_COLS} FROM outbox WHERE synced_at IS NULL AND seq > ? ORDER BY seq LIMIT ?",
                                   (after, limit)) as cur:
            return [_row(r) for r in await cur.fetchall()]

    async def counts(self) -> dict[str, int]:
        async with self.db.execute(
            "SELECT count(*), count(*) FILTER (WHERE synced_at IS NULL), count(*) FILTER (WHERE decided_by = 'local') "
            "FROM outbox") as cur:
            row = await cur.fetchone()
        assert row is not None
        return {"events": row[0], "pending": row[1], "decided_locally": row[2]}
