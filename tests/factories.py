"""Test data written through the same SQL the application uses, never through mocks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.accounts import create_device, create_user, ensure_organisation
from core.context import AppContext
from core.security import create_access_token
from geo.h3cells import cell


@dataclass
class TestUser:
    id: uuid.UUID
    email: str
    password: str
    role: str
    organisation_id: uuid.UUID | None
    headers: dict[str, str] = field(default_factory=dict)


class UserFactory:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    async def create(self, role: str = "driver", *, org: str | None = None, email: str | None = None,
                     password: str = "correct horse battery staple") -> TestUser:
        email = email or f"{role}-{uuid.uuid4().hex[:8]}@example.com"
        async with self.ctx.engine.begin() as conn:
            org_id = None
            if role == "operator" or org:
                org_id = await ensure_organisation(conn=conn, name=org or f"org-{uuid.uuid4().hex[:6]}")
            user = await create_user(conn=conn, email=email, password=password, role=role, organisation_id=org_id)
        return TestUser(id=user.id, email=email, password=password, role=role, organisation_id=org_id,
                        headers=self.headers_for(user.id, role, org_id))

    def headers_for(self, user_id: uuid.UUID, role: str, org_id: uuid.UUID | None) -> dict[str, str]:
        s = self.ctx.settings
        token = create_access_token(secret=s.secret_bytes, user_id=user_id, role=role, organisation_id=org_id,
                                    issuer=s.jwt_issuer, audience=s.jwt_audience,
                                    ttl_seconds=s.access_token_ttl_seconds, now=self.ctx.clock.now())
        return {"Authorization": f"Bearer {token}"}


async def insert_lot(conn: AsyncConnection, *, organisation_id: uuid.UUID | None = None, name: str = "Test Lot",
                     lat: float = 37.7793, lng: float = -122.4193, spots: dict[str, int] | None = None,
                     levels: int = 1, timezone: str = "America/Los_Angeles", **columns: Any) -> uuid.UUID:
    """A lot with `levels` levels, each holding the `spots` mix, one entry and one exit gate."""
    spots = spots or {"regular": 10}
    if organisation_id is None:
        organisation_id = await ensure_organisation(conn=conn, name=f"org-{uuid.uuid4().hex[:6]}")
    capacity = sum(spots.values()) * levels
    extra_cols = "".join(f", {c}" for c in columns)
    extra_vals = "".join(f", :{c}" for c in columns)
    lot_id = (await conn.execute(text(
        "INSERT INTO lots (organisation_id, name, location, h3_r7, h3_r9, timezone, capacity" + extra_cols + ") "
        "VALUES (:org, :name, ST_SetSRID(ST_MakePoint(:lng, :lat), 4326)::geography, :h7, :h9, :tz, :cap"
        + extra_vals + ") RETURNING id"),
        {"org": organisation_id, "name": name, "lat": lat, "lng": lng, "h7": cell(lat, lng, 7),
         "h9": cell(lat, lng, 9), "tz": timezone, "cap": capacity, **columns})).scalar_one()
    idx = 0
    for ordinal in range(levels):
        level_id = (await conn.execute(text(
            "INSERT INTO levels (lot_id, name, ordinal) VALUES (:lot, :name, :o) RETURNING id"),
            {"lot": lot_id, "name": f"L{ordinal}", "o": ordinal})).scalar_one()
        for spot_type, count in spots.items():
            for _ in range(count):
                await conn.execute(text(
                    "INSERT INTO spots (lot_id, idx, level_id, label, type, rank) "
                    "VALUES (:lot, :idx, :level, :label, :type, :rank)"),
                    {"lot": lot_id, "idx": idx, "level": level_id, "label": f"L{ordinal}-{idx + 1:03d}",
                     "type": spot_type, "rank": ordinal * 1000 + idx})
                idx += 1
    for gate, direction in (("Entry", "entry"), ("Exit", "exit")):
        await conn.execute(text("INSERT INTO gates (lot_id, name, direction) VALUES (:lot, :n, :d)"),
                           {"lot": lot_id, "n": gate, "d": direction})
    return lot_id  # type: ignore[no-any-return]


async def device_key_for(conn: AsyncConnection, lot_id: uuid.UUID) -> str:
    _, key = await create_device(conn=conn, lot_id=lot_id)
    return key
