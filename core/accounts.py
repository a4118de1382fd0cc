"""Accounts: users with roles, lot controller devices and data partners (keys stored hashed)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import Conflict, NotFound
from core.security import hash_api_key, hash_password, new_api_key

ROLES = ("driver", "operator", "planner", "admin")


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    email: str
    role: str
    organisation_id: uuid.UUID | None


async def create_user(*, conn: AsyncConnection, email: str, password: str, role: str = "driver",
                      organisation_id: uuid.UUID | None = None) -> User:
    """Create a user; a taken email is a Conflict (409)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    email = email.strip().lower()
    try:
        async with conn.begin_nested():
            row = (await conn.execute(
                text("INSERT INTO users (email, password_hash, role, organisation_id) "
                     "VALUES (:email, :ph, :role, :org) RETURNING id"),
                {"email": email, "ph": hash_password(password), "role": role, "org": organisation_id},
            )).one()
    except IntegrityError:
        raise Conflict("a user with this email already exists", loc=["body", "email"]) from None
    return User(id=row.id, email=email, role=role, organisation_id=organisation_id)


async def ensure_organisation(*, conn: AsyncConnection, name: str, org_id: uuid.UUID | None = None) -> uuid.UUID:
    """The organisation with this name, created if missing."""
    existing = await conn.scalar(text("SELECT id FROM organisations WHERE name = :n ORDER BY created_at LIMIT 1"),
                                 {"n": name})
    if existing:
        return existing  # type: ignore[no-any-return]
    return (await conn.execute(
        text("INSERT INTO organisations (id, name) VALUES (coalesce(:id, gen_random_uuid()), :n) RETURNING id"),
        {"id": org_id, "n": name})).scalar_one()  # type: ignore[no-any-return]


async def create_device(*, conn: AsyncConnection, lot_id: uuid.UUID, name: str = "controller",
                        key: str | None = None) -> tuple[uuid.UUID, str]:
    """Register a lot controller; returns (device_id, key). The key is shown once and stored hashed."""
    if not await conn.scalar(text("SELECT 1 FROM lots WHERE id = :id"), {"id": lot_id}):
        raise NotFound(f"lot {lot_id} not found")
    key = key or new_api_key("pgd")
    device_id = (await conn.execute(
        text("INSERT INTO devices (lot_id, name, key_hash, key_prefix) VALUES (:lot, :name, :h, :p) "
             "ON CONFLICT (key_hash) DO UPDATE SET revoked_at = NULL RETURNING id"),
        {"lot": lot_id, "name": name, "h": hash_api_key(key), "p": key[:8]},
    )).scalar_one()
    return device_id, key


async def create_partner(*, conn: AsyncConnection, name: str, quota: str = "600/minute",
                         key: str | None = None) -> tuple[uuid.UUID, str]:
    """Register a data partner; returns (partner_id, api_key). The key is shown once and stored hashed."""
    key = key or new_api_key("pgp")
    partner_id = (await conn.execute(
        text("INSERT INTO partners (name, api_key_hash, key_prefix, quota) VALUES (:n, :h, :p, :q) "
             "ON CONFLICT (api_key_hash) DO UPDATE SET revoked_at = NULL RETURNING id"),
        {"n": name, "h": hash_api_key(key), "p": key[:8], "q": quota},
    )).scalar_one()
    return partner_id, key
