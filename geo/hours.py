"""A strict parser for the common subset of OSM `opening_hours` (e.g. "Mo-Fr 08:00-20:00; Sa 09:00-14:00")."""

from __future__ import annotations

import re
from dataclasses import dataclass

DAYS = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")
_TIME = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
_DAY_PART = re.compile(r"^(Mo|Tu|We|Th|Fr|Sa|Su|PH)(-(Mo|Tu|We|Th|Fr|Sa|Su))?$")


@dataclass(frozen=True)
class HoursRule:
    days: frozenset[str]  # two-letter days, plus "PH" for public holidays
    spans: tuple[tuple[int, int], ...]  # minutes from midnight; an end past 24:00 runs into the next day
    closed: bool = False


def parse_opening_hours(value: str) -> list[HoursRule]:
    """Parse `value`; raise ValueError naming the part that is not understood."""
    text = value.strip()
    if not text:
        raise ValueError("opening_hours is empty")
    if text == "24/7":
        return [HoursRule(days=frozenset(DAYS), spans=((0, 1440),))]
    rules = []
    for raw in text.split(";"):
        part = raw.strip()
        if not part:
            continue
        days_text, _, rest = part.partition(" ")
        if _TIME.match(days_text) or days_text in {"off", "closed"}:
            days, rest = frozenset(DAYS), part
        else:
            days = _parse_days(days_text)
            rest = rest.strip()
        if rest in {"off", "closed"}:
            rules.append(HoursRule(days=days, spans=(), closed=True))
            continue
        if not rest:
            raise ValueError(f"no hours in {part!r}")
        rules.append(HoursRule(days=days, spans=tuple(_parse_span(s.strip()) for s in rest.split(","))))
    if not rules:
        raise ValueError("opening_hours has no rules")
    return rules


def _parse_days(text: str) -> frozenset[str]:
    days: set[str] = set()
    for item in text.split(","):
        m = _DAY_PART.match(item.strip())
        if not m:
            raise ValueError(f"unsupported day expression {item!r}")
        start, end = m.group(1), m.group(3)
        if start == "PH":
            if end:
                raise ValueError(f"unsupported day expression {item!r}")
            days.add("PH")
            continue
        i, j = DAYS.index(start), DAYS.index(end or start)
        span = range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)]
        days.update(DAYS[k] for k in span)
    return frozenset(days)


def _parse_span(text: str) -> tuple[int, int]:
    m = _TIME.match(text)
    if not m:
        raise ValueError(f"unsupported time range {text!r} (use HH:MM-HH:MM)")
    start = int(m.group(1)) * 60 + int(m.group(2))
    end = int(m.group(3)) * 60 + int(m.group(4))
    if start >= 1440 or end > 1440:
        raise ValueError(f"time out of range in {text!r}")
    if end <= start:
        end += 1440  # runs past midnight
    return start, end
