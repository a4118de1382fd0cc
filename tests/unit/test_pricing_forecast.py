"""The quote's dynamic multiplier follows the higher of booked and forecast occupancy, and says which."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from types import SimpleNamespace

from analytics.forecast import ForecastCache
from core.clock import ManualClock
from core.keys import Keys
from geo.seed import DEFAULT_RATE_CARD
from pricing.service import QuoteService, StoredCard

NOW = datetime(2030, 3, 6, 12, 0, tzinfo=UTC)
START, END = NOW + timedelta(hours=2), NOW + timedelta(hours=4)
LOT = uuid.uuid4()


def dynamic_card() -> StoredCard:
    card = copy.deepcopy(DEFAULT_RATE_CARD)
    card["dynamic"] = {"enabled": True, "min_multiplier": 0.8, "max_multiplier": 1.5}
    return StoredCard(json.dumps(card), 1, "America/Los_Angeles")


def cache(share_in_window: float) -> ForecastCache:
    clock = ManualClock(NOW)
    forecasts = ForecastCache(engine=None, clock=clock)
    rows = [SimpleNamespace(lot_id=LOT, at=NOW + timedelta(minutes=15 * k),
                            occupancy=share_in_window if START <= NOW + timedelta(minutes=15 * k) < END else 0.1)
            for k in range(192)]
    forecasts.load(rows, start=NOW, version=NOW)
    return forecasts


async def quote(forecasts: ForecastCache | None, booked: Fraction) -> dict:
    async def occupancy(lot_ids, starts_at, ends_at):
        return {lot: booked for lot in lot_ids}

    service = QuoteService(secret=b"s" * 32, clock=ManualClock(NOW), redis=None, keys=Keys("t"), forecasts=forecasts)
    out = await service.quotes_for_cards({LOT: dynamic_card()}, vehicle_type="regular", starts_at=START, ends_at=END,
                                         occupancy=occupancy)
    return out[LOT]


async def test_a_busy_forecast_raises_the_multiplier_and_the_reason_says_forecast() -> None:
    q = await quote(cache(0.9), Fraction(1, 5))
    assert q["reason"] == "occupancy 90% for the window (forecast; booked 20%): x1.45"
    assert Fraction(q["multiplier"]) == Fraction(145, 100)
    # the control: without the forecast the same booked share prices below 1
    plain = await quote(None, Fraction(1, 5))
    assert plain["reason"].startswith("occupancy 20% for the window (booked)")
    assert Fraction(plain["multiplier"]) < 1
    assert q["total"]["amount"] > plain["total"]["amount"]


async def test_when_booked_is_higher_the_reason_says_booked_and_gives_the_forecast() -> None:
    q = await quote(cache(0.3), Fraction(4, 5))
    assert q["reason"].startswith("occupancy 80% for the window (booked; forecast 30%)")


async def test_the_window_takes_its_busiest_forecast_step() -> None:
    forecasts = cache(0.5)
    assert forecasts.occupancy(LOT, START, END) == 0.5
    assert forecasts.occupancy(LOT, NOW, START) == 0.1
    assert forecasts.occupancy(uuid.uuid4(), START, END) is None
    item = forecasts.search_item(LOT, NOW)
    assert item == {"occupancy_at_start": 0.1, "likely_full_at": None}
    full = cache(0.97).search_item(LOT, NOW)
    assert full == {"occupancy_at_start": 0.1, "likely_full_at": START.isoformat().replace("+00:00", "Z")}
