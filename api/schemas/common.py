"""Shared wire models: money, cursors."""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from core.errors import ValidationFailed

_RFC3339_DATE = re.compile(r"\d{4}-\d\d-\d\d[Tt ]")


def _text_time(value: Any) -> Any:
    # pydantic also reads numbers (and numeric strings, as in a query string) as Unix times: the contract (and the
    # OpenAPI schema) say an RFC 3339 string
    if isinstance(value, int | float) or (isinstance(value, str) and not _RFC3339_DATE.match(value)):
        raise ValueError("must be an RFC 3339 date-time string with an offset")
    return value


#: a timestamp in a request body: an RFC 3339 string with an offset, never a number
Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_text_time), Field(strict=False)]
#: an id in a request body (a JSON string; StrictBody would otherwise want a UUID object)
WireUuid = Annotated[uuid.UUID, Field(strict=False)]


class StrictBody(BaseModel):
    """A request body read as JSON says: no 0/1 for booleans, no "5" or 5.0 for integers, no numbers for times
    (pydantic's lax mode accepts them; Schemathesis's negative_data_rejection check refuses that)."""

    model_config = ConfigDict(strict=True)


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
