"""Is a lot open at a given moment, by its OSM `opening_hours` (the subset geo.hours parses)?

OSM semantics: for a given day the last rule naming that day wins; a day no rule names is closed; a span past
midnight (22:00-02:00) carries into the next morning. Public holidays (PH) are not known here, so PH rules are
ignored and the weekday rules apply on holidays too (the feeds' docs say so).
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from geo.hours import DAYS, HoursRule, parse_opening_hours


@lru_cache(maxsize=4096)
def _rules(opening_hours: str) -> tuple[HoursRule, ...]:
    """Parsed once per distinct value: a snapshot rebuild asks for every lot's hours."""
    return tuple(parse_opening_hours(opening_hours))


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _day_spans(rules: tuple[HoursRule, ...], day: str) -> tuple[tuple[int, int], ...]:
    spans: tuple[tuple[int, int], ...] = ()
    for rule in rules:
        if day in rule.days:
            spans = () if rule.closed else rule.spans
    return spans


def is_open_at(opening_hours: str, *, timezone: str, at: datetime) -> bool:
    """True when `opening_hours` says open at `at` (tz-aware) in the lot's time zone; ValueError if unparseable."""
    rules = _rules(opening_hours)
    local = at.astimezone(_zone(timezone))
    minute = local.hour * 60 + local.minute
    today = DAYS[local.weekday()]
    yesterday = DAYS[(local.weekday() - 1) % 7]
    if any(start <= minute < end for start, end in _day_spans(rules, today)):
        return True
    return any(end > 1440 and minute < end - 1440 for _, end in _day_spans(rules, yesterday))
