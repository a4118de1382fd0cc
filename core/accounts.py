"""Accounts: users with roles, lot controller devices and data partners (keys stored hashed)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from limits import parse as parse_limit
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from core.logging import get_logger
from core.security import (
    burn_password_check,
    create_access_token,
    create_refresh_token,
    decode_refresh_token,
    hash_api_key,
    hash_password,
    new_api_key,
    normalise_plate,
    plate_hash,
    verify_password,
)
from core.settings import Settings
from core.vocabulary import VEHICLE_TYPES

log = get_logger("parkgrid.accounts")

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
    # argon2 is deliberately slow: hash off the event loop so other requests keep flowing.
    password_hash = await asyncio.to_thread(hash_password, password)
    try:
        async with conn.begin_nested():
            row = (await conn.execute(
                text("INSERT INTO users (email, password_hash, role, organisation_id) "
                     "VALUES (:email, :ph, :role, :org) RETURNING id"),
                {"email": email, "ph": password_hash, "role": role, "org": organisation_id},
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
    try:
        parse_limit(quota)
    except ValueError:
        raise ValidationFailed(f"quota {quota!r} is not a rate like '600/minute'", loc=("quota",)) from None
    key = key or new_api_key("pgp")
    partner_id = (await conn.execute(
        text("INSERT INTO partners (name, api_key_hash, key_prefix, quota) VALUES (:n, :h, :p, :q) "
             "ON CONFLICT (api_key_hash) DO UPDATE SET revoked_at = NULL RETURNING id"),
        {"n": name, "h": hash_api_key(key), "p": key[:8], "q": quota},
    )).scalar_one()
    return partner_id, key


async def revoke_device(*, conn: AsyncConnection, device_id: uuid.UUID, now: datetime) -> uuid.UUID:
    """Revoke a controller's key at once; returns its lot. Unknown devices are NotFound."""
    row = (await conn.execute(
        text("UPDATE devices SET revoked_at = coalesce(revoked_at, :now) WHERE id = :id RETURNING lot_id"),
        {"id": device_id, "now": now})).first()
    if row is None:
        raise NotFound(f"device {device_id} not found")
    return row.lot_id  # type: ignore[no-any-return]


async def revoke_partner(*, conn: AsyncConnection, partner_id: uuid.UUID, now: datetime) -> None:
    """Revoke a data partner's API key at once."""
    row = (await conn.execute(
        text("UPDATE partners SET revoked_at = coalesce(revoked_at, :now) WHERE id = :id RETURNING id"),
        {"id": partner_id, "now": now})).first()
    if row is None:
        raise NotFound(f"partner {partner_id} not found")


async def revoke_user(*, conn: AsyncConnection, email: str, now: datetime) -> uuid.UUID:
    """Revoke a user: disabled (no sign-in, access tokens refused once announced: core.keyring) and every refresh
    token revoked. Unknown emails are NotFound."""
    row = (await conn.execute(text("UPDATE users SET disabled = true WHERE lower(email) = lower(:e) RETURNING id"),
                              {"e": email})).first()
    if row is None:
        raise NotFound(f"user {email} not found")
    await conn.execute(text("UPDATE refresh_tokens SET revoked_at = :now WHERE user_id = :id AND revoked_at IS NULL"),
                       {"id": row.id, "now": now})
    return row.id  # type: ignore[no-any-return]


# --- sign-in and tokens -------------------------------------------------------------------------

@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"


@dataclass(frozen=True)
class RefreshRefused:
    """Why a refresh token was refused; `family_revoked` when its reuse revoked the whole family."""

    reason: str
    family_revoked: bool = False


async def get_user(*, conn: AsyncConnection, user_id: uuid.UUID) -> User | None:
    """An enabled user by id, or None."""
    row = (await conn.execute(
        text("SELECT id, email, role, organisation_id FROM users WHERE id = :id AND NOT disabled"),
        {"id": user_id})).first()
    return User(id=row.id, email=row.email, role=row.role, organisation_id=row.organisation_id) if row else None


async def authenticate(*, conn: AsyncConnection, email: str, password: str) -> User:
    """The user with this email and password; Unauthorized (401) otherwise, in the same time either way."""
    row = (await conn.execute(
        text("SELECT id, email, role, organisation_id, password_hash, disabled FROM users WHERE email = :e"),
        {"e": email.strip().lower()})).first()
    if row is None:
        await asyncio.to_thread(burn_password_check, password)
        raise Unauthorized("wrong email or password")
    ok = await asyncio.to_thread(verify_password, row.password_hash, password)
    if not ok or row.disabled:
        raise Unauthorized("wrong email or password")
    return User(id=row.id, email=row.email, role=row.role, organisation_id=row.organisation_id)


async def issue_tokens(*, conn: AsyncConnection, settings: Settings, user: User, now: datetime,
                       family_id: uuid.UUID | None = None) -> TokenPair:
    """A fresh access token and a refresh token recorded in `family_id` (a new family on sign-in)."""
    token_id, family_id = uuid.uuid4(), family_id or uuid.uuid4()
    expires_at = now + timedelta(seconds=settings.refresh_token_ttl_seconds)
    await conn.execute(
        text("INSERT INTO refresh_tokens (id, user_id, family_id, expires_at, created_at) "
             "VALUES (:id, :user, :fam, :exp, :now)"),
        {"id": token_id, "user": user.id, "fam": family_id, "exp": expires_at, "now": now})
    access = create_access_token(secret=settings.secret_bytes, user_id=user.id, role=user.role,
                                 organisation_id=user.organisation_id, issuer=settings.jwt_issuer,
                                 audience=settings.jwt_audience, ttl_seconds=settings.access_token_ttl_seconds,
                                 now=now)
    refresh = create_refresh_token(secret=settings.secret_bytes, token_id=token_id, user_id=user.id,
                                   family_id=family_id, issuer=settings.jwt_issuer, audience=settings.jwt_audience,
                                   expires_at=expires_at, now=now)
    return TokenPair(access_token=access, refresh_token=refresh, expires_in=settings.access_token_ttl_seconds)


async def rotate_refresh_token(*, conn: AsyncConnection, settings: Settings, token: str,
                               now: datetime) -> TokenPair | RefreshRefused:
    """Spend a refresh token for a new pair. A token already spent is a theft signal: the whole family is
    revoked (the caller must commit before answering 401, so the revocation sticks)."""
    try:
        claims = decode_refresh_token(token=token, secret=settings.secret_bytes, issuer=settings.jwt_issuer,
                                      audience=settings.jwt_audience, now=now)
    except Unauthorized as exc:
        return RefreshRefused(exc.detail)
    spent = (await conn.execute(
        text("UPDATE refresh_tokens SET used_at = :now WHERE id = :id AND user_id = :user AND family_id = :fam "
             "AND used_at IS NULL AND revoked_at IS NULL AND expires_at > :now RETURNING id"),
        {"id": claims.token_id, "user": claims.user_id, "fam": claims.family_id, "now": now})).first()
    if spent is None:
        row = (await conn.execute(
            text("SELECT used_at, revoked_at FROM refresh_tokens WHERE id = :id AND family_id = :fam"),
            {"id": claims.token_id, "fam": claims.family_id})).first()
        if row is not None and row.used_at is not None and row.revoked_at is None:
            revoked = (await conn.execute(
                text("UPDATE refresh_tokens SET revoked_at = :now WHERE family_id = :fam AND revoked_at IS NULL"),
                {"fam": claims.family_id, "now": now})).rowcount
            log.warning("refresh_token_reused", user_id=str(claims.user_id), family_id=str(claims.family_id),
                        revoked=revoked)
            return RefreshRefused("refresh token already used; its session has been revoked", family_revoked=True)
        return RefreshRefused("refresh token revoked, expired or unknown")
    user = await get_user(conn=conn, user_id=claims.user_id)
    if user is None:
        return RefreshRefused("user disabled or deleted")
    return await issue_tokens(conn=conn, settings=settings, user=user, now=now, family_id=claims.family_id)


# --- vehicles -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Vehicle:
    id: uuid.UUID
    plate: str
    vehicle_type: str
    handicap_permit: bool
    created_at: datetime


_VEHICLE_COLS = "id, plate, vehicle_type, handicap_permit, created_at"


def _vehicle(row: object) -> Vehicle:
    return Vehicle(id=row.id, plate=row.plate, vehicle_type=row.vehicle_type,  # type: ignore[attr-defined]
                   handicap_permit=row.handicap_permit, created_at=row.created_at)  # type: ignore[attr-defined]


async def add_vehicle(*, conn: AsyncConnection, secret: bytes, user_id: uuid.UUID, plate: str, vehicle_type: str,
                      handicap_permit: bool, now: datetime) -> Vehicle:
    """Register a vehicle for a user; the plate is normalised and indexed by its keyed hash."""
    if vehicle_type not in VEHICLE_TYPES:
        raise ValidationFailed(f"vehicle_type must be one of {', '.join(VEHICLE_TYPES)}", loc=("body", "vehicle_type"))
    plate = normalise_plate(plate)
    try:
        async with conn.begin_nested():
            row = (await conn.execute(
                text("INSERT INTO vehicles (user_id, plate, plate_hash, vehicle_type, handicap_permit, created_at) "
                     "VALUES (:user, :plate, :ph, :vt, :hp, :now) RETURNING " + _VEHICLE_COLS),
                {"user": user_id, "plate": plate, "ph": plate_hash(secret, plate), "vt": vehicle_type,
                 "hp": handicap_permit, "now": now})).one()
    except IntegrityError:
        raise Conflict("this plate is already registered to your account", loc=["body", "plate"]) from None
    return _vehicle(row)


async def list_vehicles(*, conn: AsyncConnection, user_id: uuid.UUID) -> list[Vehicle]:
    """A user's vehicles, oldest first (a handful per user, so no paging)."""
    rows = (await conn.execute(
        text("SELECT " + _VEHICLE_COLS + " FROM vehicles WHERE user_id = :user ORDER BY created_at, id"),
        {"user": user_id})).all()
    return [_vehicle(r) for r in rows]


async def get_vehicle(*, conn: AsyncConnection, user_id: uuid.UUID, vehicle_id: uuid.UUID) -> Vehicle:
    """One of the user's vehicles; someone else's is NotFound, exactly like a missing one."""
    row = (await conn.execute(
        text("SELECT " + _VEHICLE_COLS + " FROM vehicles WHERE id = :id AND user_id = :user"),
        {"id": vehicle_id, "user": user_id})).first()
    if row is None:
        raise NotFound("vehicle not found")
    return _vehicle(row)


async def delete_vehicle(*, conn: AsyncConnection, user_id: uuid.UUID, vehicle_id: uuid.UUID) -> None:
    """Remove one of the user's vehicles; someone else's is NotFound."""
    deleted = (await conn.execute(text("DELETE FROM vehicles WHERE id = :id AND user_id = :user RETURNING id"),
                                  {"id": vehicle_id, "user": user_id})).first()
    if deleted is None:
        raise NotFound("vehicle not found")


# --- object-level authorisation helpers ---------------------------------------------------------

async def lot_organisation(*, conn: AsyncConnection, lot_id: uuid.UUID) -> uuid.UUID | None:
    """The organisation that runs a lot, or None when there is no such lot."""
    return await conn.scalar(text("SELECT organisation_id FROM lots WHERE id = :id"),  # type: ignore[no-any-return]
                             {"id": lot_id})


async def assert_operates_lot(*, conn: AsyncConnection, lot_id: uuid.UUID, role: str,
                              organisation_id: uuid.UUID | None) -> None:
    """NotFound unless the caller is an admin or an operator of the organisation running this lot."""
    org = await lot_organisation(conn=conn, lot_id=lot_id)
    if org is None or (role != "admin" and (role != "operator" or org != organisation_id)):
        raise NotFound(f"lot {lot_id} not found")
