"""A small European city for the open data tests: one lot for every case a feed must tell apart.

Written through the application's own SQL and domain functions (tests/factories.py, geo.lots), never mocks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from core.accounts import create_partner, ensure_organisation
from core.context import AppContext
from geo.lots import create_lot
from geo.schemas import LotCreate
from tests.factories import insert_lot

BERLIN = (52.5200, 13.4050)
TZ = "Europe/Berlin"


@dataclass
class City:
    gate: uuid.UUID  # entry gate, no sensors: counted from bookings and walk-ins
    sensor: uuid.UUID  # mapped bay sensors, fresh
    stale: uuid.UUID  # mapped bay sensors, silent for an hour
    closed: uuid.UUID  # closed by its operator
    night: uuid.UUID  # outside its opening hours at the test's clock
    blind: uuid.UUID  # neither sensors nor an entry gate
    listed: uuid.UUID  # listed from OSM without capacity
    full: uuid.UUID  # every spot taken by walk-ins
    private: uuid.UUID  # access=private: never published
    key: str  # a partner's API key

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}

    def published(self) -> set[uuid.UUID]:
        return {self.gate, self.sensor, self.stale, self.closed, self.night, self.blind, self.listed, self.full}


def _at(i: int) -> dict[str, float]:
    return {"lat": BERLIN[0] + 0.002 * i, "lng": BERLIN[1] + 0.003 * i}


async def _sensors(conn: Any, lot: uuid.UUID, *, states: list[str], seen: datetime) -> None:
    labels = [r.label for r in await conn.execute(
        text("SELECT label FROM spots WHERE lot_id = :l ORDER BY idx"), {"l": lot})]
    for label, state in zip(labels, states, strict=False):
        await conn.execute(text(
            "INSERT INTO sensors (lot_id, id, spot_id, state, confidence, state_since, last_seen_at) "
            "SELECT :l, :id, id, :state, 0.95, :seen, :seen FROM spots WHERE lot_id = :l AND label = :id"),
            {"l": lot, "id": label, "state": state, "seen": seen})


async def _walk_ins(conn: Any, lot: uuid.UUID, *, now: datetime, n: int) -> None:
    await conn.execute(text(
        "INSERT INTO reservations (lot_id, kind, spot_id, vehicle_type, starts_at, ends_at, period, status) "
        "SELECT lot_id, 'walk_in', id, type, :s, :e, tstzrange(:s, :e, '[)'), 'active' "
        "FROM spots WHERE lot_id = :l ORDER BY idx LIMIT :n"),
        {"l": lot, "s": now - timedelta(minutes=30), "e": now + timedelta(hours=2), "n": n})


async def build_city(ctx: AppContext, *, quota: str = "600/minute") -> City:
    now = ctx.clock.now()
    async with ctx.engine.begin() as conn:
        org = await ensure_organisation(conn=conn, name="Stadt Berlin")
        common = {"organisation_id": org, "timezone": TZ}
        gate = await insert_lot(conn, name="Gate Garage", spots={"regular": 8, "handicap": 2}, **_at(0), **common)
        sensor = await insert_lot(conn, name="Sensor Square", spots={"regular": 4}, **_at(1), **common)
        await _sensors(conn, sensor, states=["occupied", "vacant", "vacant", "occupied"], seen=now)
        stale = await insert_lot(conn, name="Silent Sensors", spots={"regular": 3}, **_at(2), **common)
        await _sensors(conn, stale, states=["vacant"] * 3, seen=now - timedelta(hours=1))
        closed = await insert_lot(conn, name="Closed Garage", spots={"regular": 5}, status="closed", **_at(3), **common)
        # the test clock (ManualClock default: Monday 08:00 UTC = 09:00 in Berlin) is outside 18:00-23:00
        night = await insert_lot(conn, name="Night Garage", spots={"regular": 5}, opening_hours="Mo-Su 18:00-23:00",
                                 **_at(4), **common)
        blind = await insert_lot(conn, name="Blind Lot", spots={"regular": 6}, **_at(5), **common)
        await conn.execute(text("DELETE FROM gates WHERE lot_id = :l"), {"l": blind})
        listed = (await create_lot(conn, organisation_id=org, external_ref="osm:node/4242", data=LotCreate.model_validate({
            "name": "Parkplatz am Markt", "location": _at(6), "timezone": TZ, "levels": [{"name": "G", "spots": []}],
            "fee": False}))).id
        full = await insert_lot(conn, name="Full Garage", spots={"regular": 2}, **_at(7), **common)
        await _walk_ins(conn, full, now=now, n=2)
        private = await insert_lot(conn, name="Staff Only", spots={"regular": 4}, access="private", **_at(8), **common)
        _, key = await create_partner(conn=conn, name="Navi", quota=quota)
    return City(gate, sensor, stale, closed, night, blind, listed, full, private, key)


async def get_json(client: httpx.AsyncClient, path: str, city: City, **params: Any) -> Any:
    r = await client.get(path, headers=city.headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()
