"""Whether a lot is open at a moment by its OSM opening_hours, in its own time zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from geo.feed_hours import is_open_at

# Monday 2030-01-07; Berlin is UTC+1 in January
MON = datetime(2030, 1, 7, tzinfo=UTC)


def at(day_offset: int, hour: int, minute: int = 0) -> datetime:
    return MON.replace(day=7 + day_offset, hour=hour, minute=minute)


@pytest.mark.parametrize(("hours", "when", "expected"), [
    ("24/7", at(0, 3), True),
    ("Mo-Fr 08:00-20:00", at(0, 6, 59), False),  # 07:59 in Berlin
    ("Mo-Fr 08:00-20:00", at(0, 7), True),  # 08:00 in Berlin
    ("Mo-Fr 08:00-20:00", at(0, 19), False),  # 20:00 in Berlin: the end is exclusive
    ("Mo-Fr 08:00-20:00", at(5, 10), False),  # Saturday: no rule names it, so closed
    ("Mo-Su 08:00-20:00; Sa off", at(5, 10), False),  # the later rule wins for Saturday
    ("Mo-Su 08:00-20:00; Sa off", at(4, 10), True),
    ("Fr 22:00-02:00", at(5, 0, 30), True),  # Saturday 01:30 in Berlin: Friday's span runs past midnight
    ("Fr 22:00-02:00", at(5, 1, 30), False),  # Saturday 02:30
    ("Mo 08:00-12:00,14:00-18:00", at(0, 12), False),  # 13:00: between the two spans
    ("Mo 08:00-12:00,14:00-18:00", at(0, 13), True),
])
def test_is_open_at(hours: str, when: datetime, expected: bool) -> None:
    assert is_open_at(hours, timezone="Europe/Berlin", at=when) is expected


def test_unparseable_hours_are_an_error() -> None:
    with pytest.raises(ValueError):
        is_open_at("sunrise-sunset", timezone="Europe/Berlin", at=MON)
