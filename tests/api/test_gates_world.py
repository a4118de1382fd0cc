"""Shared set-up for the gate tests: a lot with a rate card, its gates and a device key, reservations, passes."""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from booking import holds
from booking.access import qr_token
from booking.wiring import booking_deps
from core.context import AppContext
from core.security import normalise_plate, plate_hash
from pricing.examples import example_card_data
from tests.factories import device_key_for, insert_lot

_ids = itertools.count(1)


@dataclass
class GateLot:
    lot_id: uuid.UUID
    entry: uuid.UUID
    exit: uuid.UUID
    key: str
    headers: dict[str, str]


async def gate_lot(ctx: AppContext, *, spots: dict[str, int] | None = None, rates: bool = True,
                   organisation_id: uuid.UUID | None = None, **columns: Any) -> GateLot:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots=spots or {"regular": 3}, organisation_id=organisation_id, **columns)
        if rates:
            await conn.execute(text("INSERT INTO rate_cards (lot_id, currency, body) VALUES (:l, 'usd', CAST(:b AS jsonb))"),
                               {"l": lot, "b": json.dumps(example_card_data())})
        gates = {r.direction: r.id for r in await conn.execute(text("SELECT id, direction FROM gates WHERE lot_id = :l"),
                                                                {"l": lot})}
        key = await device_key_for(conn, lot)
    return GateLot(lot, gates["entry"], gates["exit"], key, {"X-Device-Key": key})


def event(ctx: AppContext, *, plate: str | None = None, confidence: float | None = 0.97, event_id: str | None = None,
          **extra: Any) -> dict[str, Any]:
    n = next(_ids)
    body: dict[str, Any] = {"event_id": event_id or f"ev-{uuid.uuid4().hex[:12]}", "sequence": n,
                            "occurred_at": ctx.clock.now().isoformat()}
    if plate is not None:
        body["plate"] = plate
        body["plate_confidence"] = confidence
    body.update(extra)
    return body


async def post_event(client: httpx.AsyncClient, gl: GateLot, gate: uuid.UUID, body: dict[str, Any]) -> dict[str, Any]:
    res = await client.post(f"/api/v1/gates/{gate}/events", json=body, headers=gl.headers)
    assert res.status_code == 200, res.text
    return res.json()  # type: ignore[no-any-return]


async def confirmed_reservation(ctx: AppContext, gl: GateLot, *, plate: str, starts_in: timedelta = timedelta(0),
                                hours: float = 2) -> uuid.UUID:
    now = ctx.clock.now()
    return await holds.hold(deps=booking_deps(ctx), user_id=None, lot_id=gl.lot_id, vehicle_type="regular",
                            starts_at=now + starts_in, ends_at=now + starts_in + timedelta(hours=hours), plate=plate,
                            now=now, status="confirmed")


async def reservation_token(ctx: AppContext, reservation_id: uuid.UUID) -> str:
    async with ctx.engine.connect() as conn:
        row = (await conn.execute(text("SELECT lot_id, ends_at FROM reservations WHERE id = :id"),
                                  {"id": reservation_id})).one()
    return qr_token(secret=ctx.settings.secret_bytes, reservation_id=reservation_id, lot_id=row.lot_id,
                    not_after=row.ends_at)


async def add_pass(ctx: AppContext, gl: GateLot, *, plate: str, month: date) -> None:
    ph = plate_hash(ctx.settings.secret_bytes, normalise_plate(plate))
    async with ctx.engine.begin() as conn:
        await conn.execute(text("INSERT INTO monthly_passes (lot_id, plate_hash, month, price_amount, paid_at) VALUES"
                                " (:l, :p, :m, 9000, :now)"), {"l": gl.lot_id, "p": ph, "m": month,
                                                                "now": ctx.clock.now()})  # sold paid


async def scalar(ctx: AppContext, sql: str, **params: Any) -> Any:
    async with ctx.engine.connect() as conn:
        return await conn.scalar(text(sql), params)


async def rows(ctx: AppContext, sql: str, **params: Any) -> list[Any]:
    async with ctx.engine.connect() as conn:
        return list(await conn.execute(text(sql), params))


def local_month(now: datetime, tz: str = "America/Los_Angeles") -> date:
    from zoneinfo import ZoneInfo

    d = now.astimezone(ZoneInfo(tz)).date()
    return date(d.year, d.month, 1)
