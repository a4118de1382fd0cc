"""Security primitives: password hashing, JWTs, API keys, and plates as personal data."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core.errors import Unauthorized, ValidationFailed

JWT_ALGORITHM = "HS256"  # pinned: tokens naming any other algorithm (including "none") are refused
_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
_PLATE_RE = re.compile(r"^[A-Z0-9]{1,12}$")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_DUMMY_HASH = _hasher.hash("parkgrid-timing-equaliser")


def burn_password_check(password: str) -> None:
    """Spend the same time as a real check, so unknown emails can't be told apart by timing."""
    verify_password(_DUMMY_HASH, password)


@dataclass(frozen=True)
class TokenClaims:
    user_id: uuid.UUID
    role: str
    organisation_id: uuid.UUID | None
    expires_at: datetime
    jti: str


def create_access_token(
    *, secret: bytes, user_id: uuid.UUID, role: str, organisation_id: uuid.UUID | None,
    issuer: str, audience: str, ttl_seconds: int, now: datetime,
) -> str:
    """A short-lived HS256 access token."""
    payload: dict[str, Any] = {
        "sub": str(user_id),
        "role": role,
        "org": str(organisation_id) if organisation_id else None,
        "iss": issuer,
        "aud": audience,
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_seconds)).timestamp()),
        "jti": uuid.uuid4().hex,
        "typ": "access",
    }
    return jwt.encode(payload, secret, algorithm=JWT_ALGORITHM)


def _verified_claims(*, token: str, secret: bytes, issuer: str, audience: str, kind: str,
                     required: tuple[str, ...]) -> dict[str, Any]:
    """Signature, pinned algorithm, issuer and audience checked; time claims are left to the caller,
    who checks them against the injected `now` (PyJWT would use the wall clock)."""
    try:
        if jwt.get_unverified_header(token).get("alg") != JWT_ALGORITHM:
            raise Unauthorized("token algorithm not accepted")
        return jwt.decode(token, secret, algorithms=[JWT_ALGORITHM], issuer=issuer, audience=audience,
                          options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                                   "require": list(required)})
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}" if kind == "access" else f"invalid {kind} token: {exc}") from None


@lru_cache(maxsize=4096)
def _verified_access_claims(token: str, secret: bytes, issuer: str, audience: str) -> Mapping[str, Any]:
    """An access token is presented on every request of a session, and whether its signature, algorithm,
    issuer and audience check out depends on nothing else: each valid one is verified once per process (a
    refused one every time). Read-only, as it is shared."""
    return MappingProxyType(_verified_claims(token=token, secret=secret, issuer=issuer, audience=audience,
                                             kind="access", required=("exp", "iss", "aud", "sub")))


def decode_access_token(*, token: str, secret: bytes, issuer: str, audience: str, now: datetime) -> TokenClaims:
    """Verify signature, algorithm, issuer, audience and expiry against the injected `now`."""
    payload = _verified_access_claims(token, secret, issuer, audience)
    ts = now.timestamp()
    if payload.get("typ") != "access":
        raise Unauthorized("not an access token")
    if int(payload["exp"]) <= ts:
        raise Unauthorized("token expired")
    if int(payload.get("nbf", 0)) > ts + 30:
        raise Unauthorized("token not yet valid")
    try:
        return TokenClaims(
            user_id=uuid.UUID(payload["sub"]),
            role=str(payload["role"]),
            organisation_id=uuid.UUID(payload["org"]) if payload.get("org") else None,
            expires_at=datetime.fromtimestamp(int(payload["exp"]), tz=now.tzinfo),
            jti=str(payload.get("jti", "")),
        )
    except (KeyError, ValueError):
        raise Unauthorized("malformed token claims") from None


@dataclass(frozen=True)
class RefreshClaims:
    token_id: uuid.UUID
    user_id: uuid.UUID
    family_id: uuid.UUID


def create_refresh_token(
    *, secret: bytes, token_id: uuid.UUID, user_id: uuid.UUID, family_id: uuid.UUID,
    issuer: str, audience: str, expires_at: datetime, now: datetime,
) -> str:
    """A signed refresh token naming its database row; only the row decides whether it is still usable."""
    payload: dict[str, Any] = {
        "sub": str(user_id),
        "jti": str(token_id),
        "fam": str(family_id),
        "iss": issuer,
        "aud": audience,
        "iat": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
        "typ": "refresh",
    }
    return jwt.encode(payload, secret, algorithm=JWT_ALGORITHM)


def decode_refresh_token(*, token: str, secret: bytes, issuer: str, audience: str, now: datetime) -> RefreshClaims:
    """Verify a refresh token's signature, algorithm, issuer, audience, type and expiry."""
    payload = _verified_claims(token=token, secret=secret, issuer=issuer, audience=audience, kind="refresh",
                               required=("exp", "iss", "aud", "sub", "jti"))
    if payload.get("typ") != "refresh":
        raise Unauthorized("not a refresh token")
    if int(payload["exp"]) <= now.timestamp():
        raise Unauthorized("refresh token expired")
    try:
        return RefreshClaims(token_id=uuid.UUID(payload["jti"]), user_id=uuid.UUID(payload["sub"]),
                             family_id=uuid.UUID(payload["fam"]))
    except (KeyError, ValueError, TypeError):
        raise Unauthorized("malformed refresh token claims") from None


def new_api_key(prefix: str) -> str:
    """A random key shown once: `<prefix>_<random>`; only its hash is stored."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_api_key(key: str) -> str:
    """SHA-256 of a high-entropy key (no salt needed: keys are random, not chosen by people)."""
    return hashlib.sha256(key.encode()).hexdigest()


def normalise_plate(raw: str) -> str:
    """Upper case, no spaces, dashes or dots: 'gate 01' -> 'GATE01'."""
    plate = re.sub(r"[\s\-.·]", "", raw or "").upper()
    if not _PLATE_RE.match(plate):
        raise ValidationFailed("plate must be 1-12 letters or digits", loc=("body", "plate"))
    return plate


def plate_hash(secret: bytes, plate: str) -> bytes:
    """Keyed hash (HMAC-SHA256) of a normalised plate: the only way plates are looked up."""
    return hmac.new(secret, b"plate:" + plate.encode(), hashlib.sha256).digest()


def mask_plate(plate: str | None) -> str | None:
    """Show the last two characters only: 'AB123CD' -> '*****CD'."""
    if not plate:
        return plate
    return "*" * max(len(plate) - 2, 1) + plate[-2:]


@dataclass(frozen=True)
class StreamClaims:
    user_id: uuid.UUID
    role: str
    organisation_id: uuid.UUID | None
    lot_id: uuid.UUID


def create_stream_token(*, secret: bytes, user_id: uuid.UUID, role: str, organisation_id: uuid.UUID | None,
                        lot_id: uuid.UUID, issuer: str, audience: str, ttl_seconds: int, now: datetime) -> str:
    """A short-lived token for one lot's live stream, passed in a URL (EventSource cannot send headers): it
    opens that stream only, so a leaked URL is worth one lot's live numbers for `ttl_seconds`."""
    payload: dict[str, Any] = {
        "sub": str(user_id), "role": role, "org": str(organisation_id) if organisation_id else None,
        "lot": str(lot_id), "iss": issuer, "aud": audience, "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_seconds)).timestamp()), "typ": "live",
    }
    return jwt.encode(payload, secret, algorithm=JWT_ALGORITHM)


def decode_stream_token(*, token: str, secret: bytes, issuer: str, audience: str, now: datetime) -> StreamClaims:
    """Verify a live-stream token (signature, algorithm, issuer, audience, type, expiry against `now`)."""
    payload = _verified_claims(token=token, secret=secret, issuer=issuer, audience=audience, kind="stream",
                               required=("exp", "iss", "aud", "sub", "lot"))
    if payload.get("typ") != "live":
        raise Unauthorized("not a stream token")
    if int(payload["exp"]) <= now.timestamp():
        raise Unauthorized("stream token expired")
    try:
        return StreamClaims(user_id=uuid.UUID(payload["sub"]), role=str(payload["role"]),
                            organisation_id=uuid.UUID(payload["org"]) if payload.get("org") else None,
                            lot_id=uuid.UUID(payload["lot"]))
    except (KeyError, ValueError):
        raise Unauthorized("malformed stream token claims") from None
