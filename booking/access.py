"""Signed QR access tokens: a gate can check one offline with the lot's copy of the secret-derived key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from core.errors import ValidationFailed


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _key(secret: bytes) -> bytes:
    return hmac.new(secret, b"parkgrid-qr-v1", hashlib.sha256).digest()


@dataclass(frozen=True)
class AccessGrant:
    reservation_id: uuid.UUID
    lot_id: uuid.UUID
    not_after: datetime


def qr_token(*, secret: bytes, reservation_id: uuid.UUID, lot_id: uuid.UUID, not_after: datetime) -> str:
    """A compact token naming the reservation and lot, valid until not_after."""
    payload = json.dumps({"r": str(reservation_id), "l": str(lot_id), "x": int(not_after.timestamp())},
                         separators=(",", ":"), sort_keys=True).encode()
    mac = hmac.new(_key(secret), payload, hashlib.sha256).digest()[:16]
    return f"pgq1.{_b64(payload)}.{_b64(mac)}"


def verify_qr_token(*, secret: bytes, token: str, now: datetime, loc: tuple[str, ...] = ("body", "qr_token")) -> AccessGrant:
    """Check signature and expiry (422 naming the field when bad)."""
    try:
        version, payload_b64, mac_b64 = token.split(".")
        payload = _unb64(payload_b64)
        mac = _unb64(mac_b64)
    except ValueError:
        raise ValidationFailed("malformed QR token", loc=loc) from None
    expected = hmac.new(_key(secret), payload, hashlib.sha256).digest()[:16]
    if version != "pgq1" or not hmac.compare_digest(mac, expected):
        raise ValidationFailed("QR token signature is not valid", loc=loc)
    data = json.loads(payload)
    not_after = datetime.fromtimestamp(int(data["x"]), tz=UTC)
    if now > not_after:
        raise ValidationFailed("QR token expired", loc=loc)
    return AccessGrant(reservation_id=uuid.UUID(data["r"]), lot_id=uuid.UUID(data["l"]), not_after=not_after)
