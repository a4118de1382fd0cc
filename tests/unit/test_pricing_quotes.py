"""Signed quote tokens: round trip, expiry, tampering, and binding to lot, type and window."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.errors import ValidationFailed
from core.money import Money
from pricing.quotes import sign_quote, verify_quote

SECRET = b"test-secret-please-change"
NOW = datetime(2030, 3, 6, 12, 0, tzinfo=UTC)
START, END = datetime(2030, 3, 6, 14, 0, tzinfo=UTC), datetime(2030, 3, 6, 16, 0, tzinfo=UTC)
WINDOW: dict[str, Any] = {"lot_id": "lot-1", "vehicle_type": "regular", "starts_at": START, "ends_at": END}


def token(**kw: Any) -> str:
    args = WINDOW | {"secret": SECRET, "total": Money(1250), "expires_at": NOW + timedelta(minutes=10)} | kw
    return sign_quote(**args)


def verify(tok: str, **kw: Any) -> Any:
    return verify_quote(**(WINDOW | {"secret": SECRET, "token": tok, "now": NOW} | kw))


def test_round_trip() -> None:
    q = verify(token())
    assert (q.lot_id, q.vehicle_type, q.starts_at, q.ends_at, q.total) == ("lot-1", "regular", START, END, Money(1250))
    assert q.expires_at == NOW + timedelta(minutes=10)


def test_same_instant_in_another_offset_still_matches() -> None:
    from zoneinfo import ZoneInfo

    ny = ZoneInfo("America/New_York")
    assert verify(token(), starts_at=START.astimezone(ny), ends_at=END.astimezone(ny)).total == Money(1250)


def test_expired() -> None:
    tok = token()
    verify(tok, now=NOW + timedelta(minutes=9, seconds=59))
    with pytest.raises(ValidationFailed) as err:
        verify(tok, now=NOW + timedelta(minutes=10))
    assert err.value.loc == ("body", "quote_token") and "expired" in err.value.detail


@pytest.mark.parametrize("part", [0, 1])
def test_any_flipped_byte_is_refused(part: int) -> None:
    pieces = token().split(".")
    raw = bytearray(base64.urlsafe_b64decode(pieces[part] + "=" * (-len(pieces[part]) % 4)))
    for i in range(len(raw)):
        tampered = bytearray(raw)
        tampered[i] ^= 0x01
        new = list(pieces)
        new[part] = base64.urlsafe_b64encode(bytes(tampered)).rstrip(b"=").decode()
        with pytest.raises(ValidationFailed) as err:
            verify(".".join(new))
        assert err.value.loc == ("body", "quote_token")


def test_cheaper_total_forged_without_secret_is_refused() -> None:
    forged = sign_quote(**(WINDOW | {"secret": b"guess", "total": Money(1), "expires_at": NOW + timedelta(hours=1)}))
    with pytest.raises(ValidationFailed):
        verify(forged)


@pytest.mark.parametrize(
    "change",
    [
        {"lot_id": "lot-2"},
        {"vehicle_type": "ev"},
        {"starts_at": START + timedelta(minutes=15)},
        {"ends_at": END + timedelta(minutes=15)},
        {"discount_code": "WELCOME10"},
    ],
)
def test_other_lot_type_window_or_code_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed) as err:
        verify(token(), **change)
    assert err.value.loc == ("body", "quote_token")


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "!!!.###", "e30.AAAA"])
def test_malformed_tokens(garbage: str) -> None:
    with pytest.raises(ValidationFailed):
        verify(garbage)


def test_discount_code_is_bound_case_insensitively() -> None:
    assert verify(token(discount_code="welcome10"), discount_code="WELCOME10").discount_code == "WELCOME10"


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        token(secret=b"")
