"""Rate card validation: bands must tile each (spot type, day); bad fields are refused by name."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from core.errors import ValidationFailed
from pricing.examples import example_card_data
from pricing.rates import RateCard, parse_rate_card

ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def rule(name: str, start: str, end: str, **kw: Any) -> dict[str, Any]:
    base = {"name": name, "spot_types": ["regular"], "days": ALL_DAYS, "from": start, "to": end,
            "rate_per_hour": 300, "increment_minutes": 15}
    return base | kw


def card(*rules: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"currency": "usd", "rules": list(rules)} | kw


def test_example_card_is_valid_and_round_trips_with_aliases() -> None:
    c = parse_rate_card(example_card_data())
    assert c.tax_bp == 825
    assert c.rules[0].from_ == "07:00"
    dumped = c.as_json()
    assert dumped["rules"][0]["from"] == "07:00"
    assert RateCard.model_validate(dumped) == c


def test_overnight_and_24_00_bands_tile() -> None:
    c = parse_rate_card(card(rule("day", "07:00", "19:00"), rule("night", "19:00", "07:00")))
    assert c.band_at(spot_type="regular", day=date(2030, 1, 7), minute=6 * 60)[2] == 1
    assert c.band_at(spot_type="regular", day=date(2030, 1, 7), minute=7 * 60)[2] == 0
    assert c.band_at(spot_type="regular", day=date(2030, 1, 7), minute=23 * 60 + 59)[2] == 1
    parse_rate_card(card(rule("all", "00:00", "24:00")))
    parse_rate_card(card(rule("a", "00:00", "12:00"), rule("b", "12:00", "00:00")))


def test_overlap_names_the_later_rule() -> None:
    data = card(rule("day", "07:00", "19:00"), rule("night", "19:00", "07:00"), rule("late", "18:00", "20:00"))
    with pytest.raises(ValidationFailed) as err:
        parse_rate_card(data)
    assert err.value.loc == ("body", "rules", 2)
    assert "overlaps" in err.value.detail and "'late'" in err.value.detail and "18:00" in err.value.detail


def test_overlap_on_one_day_only_is_found() -> None:
    data = card(rule("all", "00:00", "24:00"), rule("sunday extra", "10:00", "11:00", days=["sun"]))
    with pytest.raises(ValidationFailed) as err:
        parse_rate_card(data)
    assert err.value.loc == ("body", "rules", 1)
    assert "sun" in err.value.detail


def test_gap_is_named() -> None:
    data = card(rule("morning", "00:00", "12:00"), rule("evening", "13:00", "24:00"))
    with pytest.raises(ValidationFailed) as err:
        parse_rate_card(data)
    assert err.value.loc == ("body", "rules", 0)
    assert "gap" in err.value.detail and "12:00-13:00" in err.value.detail


def test_gap_at_end_of_day_and_missing_day() -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_rate_card(card(rule("a", "00:00", "22:00")))
    assert "22:00-24:00" in err.value.detail and err.value.loc == ("body", "rules", 0)
    with pytest.raises(ValidationFailed) as err:
        parse_rate_card(card(rule("weekdays", "00:00", "24:00", days=ALL_DAYS[:5])))
    assert "sat" in err.value.detail


def test_other_spot_types_tile_independently() -> None:
    ok = card(rule("car", "00:00", "24:00"), rule("moto", "00:00", "24:00", spot_types=["motorcycle"]))
    assert parse_rate_card(ok).spot_types == {"regular", "motorcycle"}
    bad = card(rule("car", "00:00", "24:00"), rule("moto", "00:00", "23:00", spot_types=["motorcycle"]))
    with pytest.raises(ValidationFailed) as err:
        parse_rate_card(bad)
    assert err.value.loc == ("body", "rules", 1) and "motorcycle" in err.value.detail


def test_holiday_rules_must_tile_too() -> None:
    data = card(rule("all", "00:00", "24:00"), rule("hol", "08:00", "20:00", days=["hol"]))
    with pytest.raises(ValidationFailed) as err:
        parse_rate_card(data)
    assert "hol" in err.value.detail and err.value.loc == ("body", "rules", 1)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("rules", 0, "rate_per_hour"), -1, "rate_per_hour"),
        (("rules", 0, "daily_max"), -5, "daily_max"),
        (("rules", 0, "increment_minutes"), 0, "increment_minutes"),
        (("rules", 0, "increment_minutes"), -15, "increment_minutes"),
        (("rules", 0, "days"), ["mon", "funday"], "days"),
        (("rules", 0, "spot_types"), ["truck"], "spot_types"),
        (("rules", 0, "from"), "7:00", "from"),
        (("rules", 0, "from"), "24:00", "from"),
        (("rules", 0, "to"), "19:60", "to"),
        (("rules", 0, "to"), "25:00", "to"),
        (("tax_percent",), 101, "tax_percent"),
        (("tax_percent",), -1, "tax_percent"),
        (("tax_percent",), "8.255", "tax_percent"),
        (("no_show_fee",), -1, "no_show_fee"),
        (("flat_rates", 0, "amount"), -100, "amount"),
        (("flat_rates", 0, "exit_by"), "noon", "exit_by"),
        (("overstay", "increment_minutes"), 0, "increment_minutes"),
        (("cancellation", "fee_percent"), 150, "fee_percent"),
        (("discount_codes", 0, "value"), -3, "value"),
        (("discount_codes", 0, "kind"), "bogo", "kind"),
        (("currency",), "dollars", "currency"),
    ],
)
def test_bad_fields_are_refused_by_name(path: tuple[Any, ...], value: Any, field: str) -> None:
    data = example_card_data()
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValidationError) as err:
        parse_rate_card(data)
    locs = [e["loc"] for e in err.value.errors()]
    assert any(field in loc for loc in locs), locs


def test_min_multiplier_above_max_is_refused() -> None:
    data = example_card_data()
    data["dynamic"] = {"enabled": True, "min_multiplier": "1.5", "max_multiplier": "1.2"}
    with pytest.raises(ValidationError) as err:
        parse_rate_card(data)
    assert err.value.errors()[0]["loc"] == ("dynamic",)
    assert "min_multiplier" in str(err.value)


def test_empty_band_and_duplicate_codes_are_refused() -> None:
    with pytest.raises(ValidationError):
        parse_rate_card(card(rule("x", "07:00", "07:00")))
    data = example_card_data()
    data["discount_codes"].append({"code": "welcome10", "kind": "fixed", "value": 1})
    with pytest.raises(ValidationError):
        parse_rate_card(data)


def test_tax_percent_decimal_is_kept_exact_as_basis_points() -> None:
    assert parse_rate_card(card(rule("a", "00:00", "24:00"), tax_percent=8.25)).tax_bp == 825
    assert parse_rate_card(card(rule("a", "00:00", "24:00"), tax_percent="7")).tax_percent == Decimal(7)
