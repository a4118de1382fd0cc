"""Shared wire models: money, cursors."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from core.errors import ValidationFailed


class MoneyOut(BaseModel):
    amount: int = Field(description="integer minor units")
    currency: str


def money(amount: int, currency: str) -> dict[str, Any]:
    return {"amount": int(amount), "currency": currency.strip().lower()}


def encode_cursor(values: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, default=str, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, fields: tuple[str, ...]) -> dict[str, Any]:
    """Decode an opaque cursor; a malformed one is 422 naming `cursor`."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(data, dict) or set(data) != set(fields):
            raise ValueError
        return data
    except (ValueError, TypeError, UnicodeDecodeError):
        raise ValidationFailed("malformed cursor", loc=("query", "cursor")) from None


def parse_cursor_time(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise ValidationFailed("malformed cursor", loc=("query", "cursor")) from None
