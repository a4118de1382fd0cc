"""Table tests for price_window and the fee helpers: known windows, known prices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.errors import ValidationFailed
from core.money import Money
from pricing.discounts import discount_code_usable
from pricing.engine import cancellation_refund, no_show_fee, overstay_fee, price_window
from pricing.examples import demo_rate_card, example_card_data
from pricing.rates import RateCard

NY, BERLIN = "America/New_York", "Europe/Berlin"
ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def local(tz: str, *args: int) -> datetime:
    """A wall-clock time in `tz` (first occurrence if ambiguous), as UTC."""
    return datetime(*args, tzinfo=ZoneInfo(tz)).astimezone(UTC)  # type: ignore[misc,arg-type]


def two_bands(**overrides: Any) -> RateCard:
    """07:00-19:00 at 400/h, 19:00-07:00 at 150/h, 15-minute increments, no caps, no grace."""
    rules = [
        {"name": "day", "spot_types": ["regular"], "days": ALL_DAYS, "from": "07:00", "to": "19:00",
         "rate_per_hour": 400, "increment_minutes": 15},
        {"name": "night", "spot_types": ["regular"], "days": ALL_DAYS, "from": "19:00", "to": "07:00",
         "rate_per_hour": 150, "increment_minutes": 15},
    ]
    return RateCard.model_validate({"currency": "usd", "rules": rules} | overrides)


def price(card: RateCard, start: datetime, end: datetime, tz: str = NY, **kw: Any) -> Any:
    return price_window(card=card, spot_type="regular", starts_at=start, ends_at=end, tz=tz, **kw)


def bands(quote: Any) -> list[tuple[str, int, int]]:
    return [(ln.label, ln.minutes, ln.amount) for ln in quote.lines if ln.kind == "band"]


def test_multi_band_day() -> None:
    q = price(two_bands(), local(NY, 2030, 3, 5, 10, 0), local(NY, 2030, 3, 5, 21, 0))
    assert bands(q) == [("day", 540, 3600), ("night", 120, 300)]
    assert q.subtotal == Money(3900) and q.total == Money(3900)


def test_overnight_window_crosses_both_bands() -> None:
    q = price(two_bands(), local(NY, 2030, 3, 5, 17, 0), local(NY, 2030, 3, 6, 9, 0))
    assert bands(q) == [("day", 120, 800), ("night", 720, 1800), ("day", 120, 800)]
    assert q.total.amount == 3400
    assert sum(ln.amount for ln in q.lines) == q.subtotal.amount


@pytest.mark.parametrize(
    ("tz", "start", "night_minutes", "day_minutes"),
    [
        (NY, (2030, 3, 9, 22, 0), 480, 120),  # spring forward 10 March: 02:00 -> 03:00
        (NY, (2030, 11, 2, 22, 0), 600, 0),  # fall back 3 November: 02:00 -> 01:00
        (BERLIN, (2030, 3, 30, 22, 0), 480, 120),  # 31 March: 02:00 -> 03:00
        (BERLIN, (2030, 10, 26, 22, 0), 600, 0),  # 27 October: 03:00 -> 02:00
    ],
)
def test_dst_days_charge_real_elapsed_minutes(tz: str, start: tuple[int, ...], night_minutes: int,
                                              day_minutes: int) -> None:
    begin = local(tz, *start)
    q = price(two_bands(), begin, begin + timedelta(hours=10), tz)
    assert sum(ln.minutes for ln in q.lines if ln.kind == "band") == 600
    by_label: dict[str, int] = {}
    for label, minutes, _ in bands(q):
        by_label[label] = by_label.get(label, 0) + minutes
    assert by_label.get("night", 0) == night_minutes and by_label.get("day", 0) == day_minutes
    assert q.subtotal.amount == night_minutes * 150 // 60 + day_minutes * 400 // 60


def test_band_boundary_inside_the_skipped_hour() -> None:
    rules = [
        {"name": "a", "spot_types": ["regular"], "days": ALL_DAYS, "from": "00:00", "to": "02:30",
         "rate_per_hour": 600, "increment_minutes": 1},
        {"name": "b", "spot_types": ["regular"], "days": ALL_DAYS, "from": "02:30", "to": "24:00",
         "rate_per_hour": 60, "increment_minutes": 1},
    ]
    card = RateCard.model_validate({"currency": "usd", "rules": rules})
    q = price(card, local(NY, 2030, 3, 10, 1, 0), local(NY, 2030, 3, 10, 4, 0))
    assert bands(q) == [("a", 60, 600), ("b", 60, 60)]


def test_fall_back_repeats_the_wall_clock_band() -> None:
    rules = [
        {"name": "a", "spot_types": ["regular"], "days": ALL_DAYS, "from": "00:00", "to": "01:30",
         "rate_per_hour": 600, "increment_minutes": 1},
        {"name": "b", "spot_types": ["regular"], "days": ALL_DAYS, "from": "01:30", "to": "24:00",
         "rate_per_hour": 60, "increment_minutes": 1},
    ]
    card = RateCard.model_validate({"currency": "usd", "rules": rules})
    start = local(NY, 2030, 11, 3, 1, 0)  # first 01:00 (EDT)
    q = price(card, start, start + timedelta(hours=3))
    assert [(label, minutes) for label, minutes, _ in bands(q)] == [("a", 30), ("b", 30), ("a", 30), ("b", 90)]


def test_holiday_uses_hol_rules() -> None:
    card = demo_rate_card()
    q = price(card, local(NY, 2030, 12, 25, 10, 0), local(NY, 2030, 12, 25, 13, 0))
    assert bands(q) == [("holiday", 180, 300)]
    workday = price(card, local(NY, 2030, 12, 24, 10, 0), local(NY, 2030, 12, 24, 13, 0))
    assert bands(workday) == [("day", 180, 1200)]


def test_holiday_without_hol_rule_falls_back_to_weekday() -> None:
    card = two_bands(holidays=["2030-12-25"])
    q = price(card, local(NY, 2030, 12, 25, 10, 0), local(NY, 2030, 12, 25, 13, 0))
    assert bands(q) == [("day", 180, 1200)]


def test_early_bird_wins_when_it_qualifies_and_is_cheaper() -> None:
    card = demo_rate_card()
    q = price(card, local(NY, 2030, 3, 6, 8, 0), local(NY, 2030, 3, 6, 17, 0))
    assert [ln.kind for ln in q.lines] == ["band", "cap", "flat"]
    assert q.subtotal.amount == 1800 and q.lines[-1].label == "flat rate: early bird"


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ((2030, 3, 6, 9, 30), (2030, 3, 6, 17, 0), 3000),  # entered after enter_to: capped band price
        ((2030, 3, 6, 8, 0), (2030, 3, 6, 19, 30), 3000),  # left after exit_by
        ((2030, 3, 6, 8, 0), (2030, 3, 6, 10, 0), 800),  # qualifies but hourly is cheaper
    ],
)
def test_early_bird_does_not_apply(start: tuple[int, ...], end: tuple[int, ...], expected: int) -> None:
    q = price(demo_rate_card(), local(NY, *start), local(NY, *end))
    assert q.subtotal.amount == expected
    assert all(ln.kind != "flat" for ln in q.lines)


def test_evening_flat_rate_exits_next_morning() -> None:
    q = price(demo_rate_card(), local(NY, 2030, 3, 6, 18, 0), local(NY, 2030, 3, 7, 5, 0))
    assert q.subtotal.amount == 1200 and q.lines[-1].kind == "flat"


def test_grace_period() -> None:
    card = demo_rate_card()
    start = local(NY, 2030, 3, 6, 12, 0)
    assert price(card, start, start + timedelta(minutes=10)).total.amount == 0
    assert price(card, start, start + timedelta(minutes=11)).subtotal.amount == 100


def test_each_started_increment_is_charged() -> None:
    start = local(NY, 2030, 3, 6, 12, 0)
    q = price(two_bands(), start, start + timedelta(minutes=61))
    assert q.lines[0].charged_minutes == 75 and q.subtotal.amount == 500
    q = price(two_bands(), start, start + timedelta(minutes=60, seconds=1))
    assert q.lines[0].charged_minutes == 75


def test_daily_max_over_three_days() -> None:
    card = demo_rate_card()
    start = local(NY, 2030, 3, 6, 10, 0)
    q = price(card, start, start + timedelta(days=3))
    assert q.subtotal.amount == 9000
    assert [ln.label for ln in q.lines if ln.kind == "cap"] == ["daily max, day 1", "daily max, day 2", "daily max, day 3"]
    q = price(card, start, start + timedelta(days=3, hours=2))
    assert q.subtotal.amount == 9000 + 800


def test_rule_without_daily_max_is_uncapped() -> None:
    start = local(NY, 2030, 3, 6, 10, 0)
    assert price(two_bands(), start, start + timedelta(days=1)).subtotal.amount == 12 * 400 + 12 * 150


def test_discount_percent_and_fixed() -> None:
    card, now = demo_rate_card(), datetime(2030, 6, 1, tzinfo=UTC)
    start = local(NY, 2030, 3, 6, 10, 0)
    end = start + timedelta(hours=5)  # 2000
    q = price(card, start, end, discount_code="welcome10", now=now)
    assert (q.discount.amount, q.pre_tax.amount, q.discount_code) == (200, 1800, "WELCOME10")
    q = price(card, start, end, discount_code="FIVEOFF", now=now)
    assert q.discount.amount == 500 and q.pre_tax.amount == 1500
    short = price(card, start, start + timedelta(minutes=30), discount_code="FIVEOFF", now=now)
    assert short.discount.amount == 200 and short.total.amount == 0  # never below zero


def test_expired_and_unknown_discount_codes() -> None:
    card = demo_rate_card()
    start = local(NY, 2030, 3, 6, 10, 0)
    for code, now in [("FIVEOFF", datetime(2031, 1, 1, tzinfo=UTC)), ("FIVEOFF", datetime(2029, 12, 31, tzinfo=UTC)),
                      ("NOPE", datetime(2030, 6, 1, tzinfo=UTC))]:
        with pytest.raises(ValidationFailed) as err:
            price(card, start, start + timedelta(hours=1), discount_code=code, now=now)
        assert err.value.loc == ("body", "discount_code")


def test_discount_max_uses_is_for_the_caller_to_count() -> None:
    card, now = demo_rate_card(), datetime(2030, 6, 1, tzinfo=UTC)
    assert discount_code_usable(card=card, code="FIVEOFF", now=now, times_used=99)
    assert not discount_code_usable(card=card, code="FIVEOFF", now=now, times_used=100)
    assert discount_code_usable(card=card, code="WELCOME10", now=now, times_used=10**6)


@pytest.mark.parametrize(("subtotal_minutes", "pre_tax", "tax"), [(30, 200, 17), (15, 100, 8), (60, 400, 33)])
def test_tax_8_25_percent_rounds_half_up(subtotal_minutes: int, pre_tax: int, tax: int) -> None:
    card = two_bands(tax_percent="8.25")
    start = local(NY, 2030, 3, 6, 10, 0)
    q = price(card, start, start + timedelta(minutes=subtotal_minutes))
    assert (q.pre_tax.amount, q.tax.amount, q.total.amount) == (pre_tax, tax, pre_tax + tax)
    assert tax == int((Decimal(pre_tax) * Decimal("0.0825")).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def test_multiplier_applies_to_pre_tax_and_rounds_half_up() -> None:
    card = two_bands(tax_percent=10)
    start = local(NY, 2030, 3, 6, 10, 0)
    q = price(card, start, start + timedelta(minutes=15), multiplier=Fraction(21, 20))  # 100 * 1.05
    assert (q.subtotal.amount, q.pre_tax.amount, q.tax.amount, q.total.amount) == (100, 105, 11, 116)
    q = price(card, start, start + timedelta(minutes=15), multiplier=Decimal("1.005"))  # 100.5 -> 101
    assert q.pre_tax.amount == 101
    assert q.as_json()["multiplier"] == "1.005"


def test_window_and_type_errors() -> None:
    start = local(NY, 2030, 3, 6, 10, 0)
    with pytest.raises(ValidationFailed) as err:
        price(two_bands(), start, start)
    assert err.value.loc == ("body", "ends_at")
    with pytest.raises(ValidationFailed) as err:
        price_window(card=two_bands(), spot_type="ev", starts_at=start, ends_at=start + timedelta(hours=1), tz=NY)
    assert err.value.loc == ("body", "vehicle_type")
    with pytest.raises(ValidationFailed):
        price(two_bands(), start.replace(tzinfo=None), start + timedelta(hours=1))
    with pytest.raises(ValidationFailed):
        price(two_bands(), start, start + timedelta(hours=1), tz="Mars/Olympus")


def test_as_json_is_plain_json_with_int_amounts() -> None:
    import json

    q = price(demo_rate_card(), local(NY, 2030, 3, 5, 17, 30), local(NY, 2030, 3, 6, 9, 15))
    data = json.loads(json.dumps(q.as_json()))
    assert data["total"] == {"amount": q.total.amount, "currency": "usd"}
    assert all(isinstance(line["amount"], int) for line in data["lines"])
    assert {"label", "from", "to", "minutes", "charged_minutes", "rate_per_hour", "amount"} <= set(data["lines"][0])


def test_overstay_fee_rounds_up_to_increment() -> None:
    card = demo_rate_card()  # 600/h in 15-minute increments
    assert overstay_fee(card=card, minutes_over=0) == Money(0)
    assert overstay_fee(card=card, minutes_over=1) == Money(150)
    assert overstay_fee(card=card, minutes_over=16) == Money(300)


def test_cancellation_refund_policy() -> None:
    card = demo_rate_card()  # free until 60 min before, else keep 20 %
    start, paid = datetime(2030, 3, 6, 15, 0, tzinfo=UTC), Money(1999)
    assert cancellation_refund(card=card, paid_amount=paid, starts_at=start,
                               cancelled_at=start - timedelta(minutes=60)) == paid
    late = cancellation_refund(card=card, paid_amount=paid, starts_at=start, cancelled_at=start - timedelta(minutes=59))
    assert late == Money(1999 - 400)  # 20 % of 1999 = 399.8 -> 400 kept
    after = cancellation_refund(card=card, paid_amount=paid, starts_at=start, cancelled_at=start + timedelta(hours=1))
    assert after.amount <= paid.amount


def test_full_fee_refund_never_exceeds_paid_or_goes_negative() -> None:
    data = example_card_data()
    data["cancellation"] = {"free_until_minutes_before": 0, "fee_percent": 100}
    card = RateCard.model_validate(data)
    start = datetime(2030, 3, 6, 15, 0, tzinfo=UTC)
    assert cancellation_refund(card=card, paid_amount=Money(500), starts_at=start, cancelled_at=start) == Money(500)
    assert cancellation_refund(card=card, paid_amount=Money(500), starts_at=start,
                               cancelled_at=start + timedelta(seconds=1)) == Money(0)


def test_no_show_fee() -> None:
    assert no_show_fee(demo_rate_card()) == Money(500)


def test_uncapped_band_is_charged_on_top_of_the_capped_ones() -> None:
    data = {"currency": "usd", "rules": [
        {"name": "day", "spot_types": ["regular"], "days": ALL_DAYS, "from": "07:00", "to": "19:00",
         "rate_per_hour": 400, "increment_minutes": 15, "daily_max": 2000},
        {"name": "night", "spot_types": ["regular"], "days": ALL_DAYS, "from": "19:00", "to": "07:00",
         "rate_per_hour": 150, "increment_minutes": 15},
    ]}
    q = price(RateCard.model_validate(data), local(NY, 2030, 3, 6, 7, 0), local(NY, 2030, 3, 6, 21, 0))
    assert [(ln.kind, ln.amount) for ln in q.lines] == [("band", 4800), ("band", 300), ("cap", -2800)]
    assert q.subtotal.amount == 2000 + 300


def test_run_cut_by_a_24h_period_keeps_its_increments() -> None:
    # 60-minute increments; the window's 24 h cut falls inside the night band: the cut adds no rounding.
    data = {"currency": "usd", "rules": [
        {"name": "all", "spot_types": ["regular"], "days": ALL_DAYS, "from": "00:00", "to": "24:00",
         "rate_per_hour": 100, "increment_minutes": 60},
    ]}
    start = local(NY, 2030, 3, 6, 10, 30)
    q = price(RateCard.model_validate(data), start, start + timedelta(hours=24, minutes=30))
    assert q.subtotal.amount == 2500  # 24.5 h -> 25 increments, not 24 + 1 + 1
    assert [(ln.period, ln.amount) for ln in q.lines] == [(0, 2400), (1, 100)]  # one run across midnight
