"""A sample rate card (for the demo seed, docs and tests) and a worked example: `python -m pricing.examples`."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

from pricing.rates import SPOT_TYPES, WEEKDAYS, RateCard

_EXAMPLE: dict[str, Any] = {
    "currency": "usd",
    "tax_percent": "8.25",
    "grace_minutes": 10,
    "rules": [
        {"name": "day", "spot_types": list(SPOT_TYPES), "days": list(WEEKDAYS), "from": "07:00",
         "to": "19:00", "rate_per_hour": 400, "increment_minutes": 15, "daily_max": 3000},
        {"name": "night", "spot_types": list(SPOT_TYPES), "days": list(WEEKDAYS), "from": "19:00",
         "to": "07:00", "rate_per_hour": 150, "increment_minutes": 30, "daily_max": 3000},
        {"name": "holiday", "spot_types": list(SPOT_TYPES), "days": ["hol"], "from": "00:00",
         "to": "24:00", "rate_per_hour": 100, "increment_minutes": 60, "daily_max": 1000},
    ],
    "flat_rates": [
        {"name": "early bird", "enter_from": "06:00", "enter_to": "09:00", "exit_by": "19:00", "amount": 1800},
        {"name": "evening", "enter_from": "17:00", "enter_to": "23:00", "exit_by": "06:00", "amount": 1200},
    ],
    "cancellation": {"free_until_minutes_before": 60, "fee_percent": 20},
    "no_show_fee": 500,
    "overstay": {"rate_per_hour": 600, "increment_minutes": 15},
    "dynamic": {"enabled": True, "min_multiplier": "0.8", "max_multiplier": "1.5"},
    "holidays": ["2030-12-25", "2031-01-01"],
    "discount_codes": [
        {"code": "WELCOME10", "kind": "percent", "value": 10},
        {"code": "FIVEOFF", "kind": "fixed", "value": 500, "max_uses": 100,
         "valid_from": "2030-01-01T00:00:00Z", "valid_to": "2031-01-01T00:00:00Z"},
    ],
}


def example_card_data() -> dict[str, Any]:
    """A fresh, mutable copy of the sample rate card JSON (day/night bands, holiday, flat rates, codes)."""
    return copy.deepcopy(_EXAMPLE)


def demo_rate_card() -> RateCard:
    """The sample rate card, validated."""
    return RateCard.model_validate(example_card_data())


def _main() -> None:
    from pricing.dynamic import dynamic_multiplier
    from pricing.engine import price_window

    card = demo_rate_card()
    # Tue 17:30 -> Wed 09:15 New York time: day band, the whole night band, then day again.
    starts, ends = datetime(2030, 3, 5, 22, 30, tzinfo=UTC), datetime(2030, 3, 6, 14, 15, tzinfo=UTC)
    mult, reason = dynamic_multiplier(occupancy=0.87, previous=None, settings=card.dynamic)
    quote = price_window(card=card, spot_type="regular", starts_at=starts, ends_at=ends, tz="America/New_York",
                         discount_code="WELCOME10", now=datetime(2030, 3, 1, tzinfo=UTC), multiplier=mult,
                         multiplier_reason=reason)
    print(json.dumps(quote.as_json(), indent=2))


if __name__ == "__main__":
    _main()
