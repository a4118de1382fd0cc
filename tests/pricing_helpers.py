"""Rate cards for pricing and payment tests."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from pricing.service import put_rate_card

WEEK = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
BASE_CARD: dict[str, Any] = {
    "currency": "usd", "tax_percent": "8.25", "grace_minutes": 0,
    "rules": [
        {"name": "day", "spot_types": ["regular", "compact"], "days": WEEK, "from": "07:00", "to": "19:00",
         "rate_per_hour": 400, "increment_minutes": 15, "daily_max": 4000},
        {"name": "night", "spot_types": ["regular", "compact"], "days": WEEK, "from": "19:00", "to": "07:00",
         "rate_per_hour": 150, "increment_minutes": 30},
    ],
    "cancellation": {"free_until_minutes_before": 60, "fee_percent": 20},
    "no_show_fee": 500, "overstay": {"rate_per_hour": 600, "increment_minutes": 15},
    "dynamic": {"enabled": False, "min_multiplier": "0.8", "max_multiplier": "1.5"},
}


def card(**overrides: Any) -> dict[str, Any]:
    """A day/night card (LA-friendly: day 07-19 at 4.00/h, night 19-07 at 1.50/h, 8.25 % tax) with overrides."""
    data = copy.deepcopy(BASE_CARD)
    data.update(overrides)
    return data


async def give_card(conn: AsyncConnection, lot_id: uuid.UUID, **overrides: Any) -> None:
    from datetime import UTC, datetime

    await put_rate_card(conn, lot_id=lot_id, data=card(**overrides), now=datetime(2030, 1, 1, tzinfo=UTC))
