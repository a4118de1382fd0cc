"""Test data for planner exports: lots with completed parking sessions (plates, users, reservations, payments all
set, so a leak would show), written with the application's own tables."""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from jsonschema import Draft7Validator
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.accounts import create_user
from core.context import AppContext
from core.security import plate_hash
from tests.factories import insert_lot

# 2026-01-06 10:00-11:00 in Los Angeles (PST, UTC-8): the hour the tests look at (in the past: the worker runs on
# the wall clock, and sessions after "now" do not exist yet for an export)
BUSY_HOUR_UTC = datetime(2026, 1, 6, 18, 0, tzinfo=UTC)
DAY_FROM = "2026-01-06T00:00:00-08:00"
DAY_TO = "2026-01-07T00:00:00-08:00"
BUSY_DATE, BUSY_HOUR = "2026-01-06", 10
LAT_A, LNG_A = 37.7793, -122.4193
LAT_B, LNG_B = 37.7815, -122.4160  # ~400 m away: another r10 cell, the same r6 cell


@dataclass
class ExportWorld:
    lot_a: uuid.UUID
    lot_b: uuid.UUID
    org_a: uuid.UUID
    org_b: uuid.UUID
    plates: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)  # ids and emails that must not appear in any file


async def add_session(conn: AsyncConnection, ctx: AppContext, *, lot_id: uuid.UUID, plate: str, entered: datetime,
                      exited: datetime | None, vehicle_type: str = "regular",
                      user_id: uuid.UUID | None = None) -> list[str]:
    """A reservation (with a payment) and its completed parking session; returns the ids it created."""
    spot = await conn.scalar(text("SELECT id FROM spots WHERE lot_id = :l ORDER BY idx LIMIT 1"), {"l": lot_id})
    ph = plate_hash(ctx.settings.secret_bytes, plate)
    end = exited or entered + timedelta(hours=1)
    rid = await conn.scalar(text(
        "INSERT INTO reservations (lot_id, user_id, spot_id, vehicle_type, plate, plate_hash, starts_at, ends_at, period,"
        " status, price_amount, entered_at, exited_at) VALUES (:l, :u, :s, :vt, :p, :ph, :a, :b, tstzrange(:a, :b, '[)'),"
        " :st, 700, :a, :x) RETURNING id"),
        {"l": lot_id, "u": user_id, "s": spot, "vt": vehicle_type, "p": plate, "ph": ph, "a": entered, "b": end,
         "x": exited, "st": "completed" if exited else "active"})
    intent = f"pi_{uuid.uuid4().hex}"
    await conn.execute(text("INSERT INTO payments (lot_id, reservation_id, provider, intent_id, status, amount)"
                            " VALUES (:l, :r, 'local', :i, 'captured', 700)"), {"l": lot_id, "r": rid, "i": intent})
    sid = await conn.scalar(text(
        "INSERT INTO parking_sessions (lot_id, kind, reservation_id, spot_id, plate, plate_hash, status, entered_at,"
        " exited_at, fee_amount) VALUES (:l, 'reservation', :r, :s, :p, :ph, :st, :a, :x, 700) RETURNING id"),
        {"l": lot_id, "r": rid, "s": spot, "p": plate, "ph": ph, "st": "completed" if exited else "active",
         "a": entered, "x": exited})
    return [str(rid), str(sid), intent]


async def build_export_world(ctx: AppContext, *, org_a: uuid.UUID, org_b: uuid.UUID, sessions_a: int = 10,
                             sessions_b: int = 9) -> ExportWorld:
    """Lot A (org A) has `sessions_a` sessions in the busy hour, lot B (org B) `sessions_b`, each 30 minutes long
    (started two minutes apart from the hour's start), 20 spots each; every session has a distinct plate."""
    async with ctx.engine.begin() as conn:
        lot_a = await insert_lot(conn, organisation_id=org_a, name="A", lat=LAT_A, lng=LNG_A, spots={"regular": 20})
        lot_b = await insert_lot(conn, organisation_id=org_b, name="B", lat=LAT_B, lng=LNG_B, spots={"regular": 20})
        world = ExportWorld(lot_a=lot_a, lot_b=lot_b, org_a=org_a, org_b=org_b)
        owner = await create_user(conn=conn, email=f"driver-{uuid.uuid4().hex[:6]}@example.com", password="x" * 12)
        world.secrets += [str(owner.id), owner.email]
        for lot, count, tag in ((lot_a, sessions_a, "A"), (lot_b, sessions_b, "B")):
            for i in range(count):
                plate = f"7{tag}PX{i:03d}"
                entered = BUSY_HOUR_UTC + timedelta(minutes=2 * i)
                ids = await add_session(conn, ctx, lot_id=lot, plate=plate, entered=entered,
                                        exited=entered + timedelta(minutes=30), user_id=owner.id,
                                        vehicle_type="ev" if i % 3 == 0 else "regular")
                world.plates.append(plate)
                world.secrets += ids
        # one car still parked (since the busy hour): counted up to the export's time, never listed as a session
        ids = await add_session(conn, ctx, lot_id=lot_a, plate="7APARKED", entered=BUSY_HOUR_UTC, exited=None)
        world.plates.append("7APARKED")
        world.secrets += ids
    return world


GEO_SCHEMA = json.loads((Path(__file__).resolve().parent / "data" / "geoparquet-1.1.0.schema.json").read_text())


def geo_metadata_errors(data: bytes) -> list[str]:
    """The official GeoParquet 1.1.0 JSON schema's complaints about a file's `geo` metadata (tests/data)."""
    meta = json.loads((pq.ParquetFile(io.BytesIO(data)).metadata.metadata or {})[b"geo"])
    return [e.message for e in Draft7Validator(GEO_SCHEMA).iter_errors(meta)]


def parquet_text(data: bytes) -> str:
    """Every value and every metadata string of a Parquet file as text (the file itself is compressed, so a byte
    search of it proves nothing)."""
    f = pq.ParquetFile(io.BytesIO(data))
    meta = f.schema_arrow.metadata or {}
    parts = [k.decode(errors="replace") + v.decode(errors="replace") for k, v in meta.items()]
    parts.append(repr(f.read().to_pylist()))
    return "\n".join(parts)


def leaks(data: bytes, fmt: str, needles: list[str]) -> list[str]:
    """The needles found in an export file (decoded first when it is Parquet)."""
    haystack = parquet_text(data) if fmt == "parquet" else data.decode("utf-8", errors="replace")
    return [n for n in needles if n in haystack]


def rows_by_key(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str, int], dict[str, Any]]:
    """Occupancy rows keyed by (curb_place_id, metric_type, date, hour)."""
    return {(str(r["curb_place_id"]), str(r["metric_type"]), str(r["date"]), int(r["hour"])): r for r in rows}
