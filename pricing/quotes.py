"""Signed quote tokens: the driver pays what was shown, for this lot, type and window, until it expires.

Format: base64url(canonical JSON payload) "." base64url(HMAC-SHA256(secret, domain + payload)).
The MAC is checked (constant time) over the payload bytes as received, before any JSON parsing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from core.errors import ValidationFailed
from core.money import Money

_DOMAIN = b"parkgrid.quote.v1\x00"  # keeps these MACs from being valid for any other signed thing
_LOC = ("body", "quote_token")


@dataclass(frozen=True, slots=True)
class SignedQuote:
    """What a valid quote token promised."""

    lot_id: str
    vehicle_type: str
    starts_at: datetime
    ends_at: datetime
    total: Money
    expires_at: datetime
    discount_code: str | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _ts(value: datetime) -> str:
    if value.tzinfo is not UTC:
        if value.utcoffset() is None:
            raise ValueError("datetimes in a quote must carry a timezone offset")
        value = value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def _mac(secret: bytes, payload: bytes) -> bytes:
    if not secret:
        raise ValueError("refusing to sign or verify quotes with an empty secret")
    return hmac.digest(secret, _DOMAIN + payload, hashlib.sha256)  # one-shot (hmac.new builds Python objects)


def sign_quote(
    *,
    secret: bytes,
    lot_id: object,
    vehicle_type: str,
    starts_at: datetime,
    ends_at: datetime,
    total: Money,
    expires_at: datetime,
    discount_code: str | None = None,
) -> str:
    """A token binding lot, vehicle type, window, total and optional discount code until `expires_at`."""
    body: dict[str, Any] = {
        "v": 1,
        "lot": str(lot_id),
        "vt": vehicle_type,
        "s": _ts(starts_at),
        "e": _ts(ends_at),
        "amt": total.amount,
        "cur": total.currency,
        "exp": _ts(expires_at),
        "dc": discount_code.upper() if discount_code else None,
    }
    # compact, keys sorted (orjson: ~10x json.dumps; verification reads the bytes as received, whoever wrote them)
    payload = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return f"{_b64(payload)}.{_b64(_mac(secret, payload))}"


def verify_quote(
    *,
    secret: bytes,
    token: str,
    now: datetime,
    lot_id: object,
    vehicle_type: str,
    starts_at: datetime,
    ends_at: datetime,
    discount_code: str | None = None,
) -> SignedQuote:
    """Check a token's MAC, expiry and that it was issued for this lot, type, window (and code); return its promise."""
    try:
        payload_b64, mac_b64 = token.split(".")
        payload, mac = _unb64(payload_b64), _unb64(mac_b64)
    except (ValueError, binascii.Error) as exc:
        raise ValidationFailed("malformed quote token", loc=_LOC) from exc
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        raise ValidationFailed("quote token signature does not match", loc=_LOC)
    try:
        body = json.loads(payload)
        quote = SignedQuote(
            lot_id=body["lot"],
            vehicle_type=body["vt"],
            starts_at=datetime.fromisoformat(body["s"]),
            ends_at=datetime.fromisoformat(body["e"]),
            total=Money(body["amt"], body["cur"]),
            expires_at=datetime.fromisoformat(body["exp"]),
            discount_code=body.get("dc"),
        )
    except (ValueError, KeyError, TypeError) as exc:  # only reachable with a leaked secret or a bug
        raise ValidationFailed("malformed quote token", loc=_LOC) from exc
    if now.utcoffset() is None:
        raise ValueError("now must carry a timezone offset")
    if now >= quote.expires_at:
        raise ValidationFailed("quote has expired; ask for a new one", loc=_LOC)
    wanted_code = discount_code.upper() if discount_code else None
    if (
        quote.lot_id != str(lot_id)
        or quote.vehicle_type != vehicle_type
        or quote.starts_at != starts_at
        or quote.ends_at != ends_at
        or quote.discount_code != wanted_code
    ):
        raise ValidationFailed("quote was issued for another lot, vehicle type, window or discount code", loc=_LOC)
    return quote
