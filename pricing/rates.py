"""A lot's rate card: pydantic models for the JSON operators PUT, plus the band schedule derived from it.

Times are wall-clock "HH:MM" in the lot's timezone; amounts are integer minor units.
Percentages may carry two decimals (8.25) and are kept as basis points internally.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from core.errors import ValidationFailed
from core.vocabulary import SPOT_TYPES, SpotType

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun", "hol"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_MINUTES = 24 * 60

Amount = Annotated[int, Field(ge=0, le=10**12, strict=True)]  # minor units; bounded to fit bigint sums
# Two decimals at most so the value is a whole number of basis points; no floats in arithmetic.
Percent = Annotated[Decimal, Field(ge=0, le=100, decimal_places=2)]
Multiplier = Annotated[Decimal, Field(gt=0, le=10, decimal_places=2)]

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(value: str, *, allow_24: bool = False) -> int:
    """Minutes after local midnight for "HH:MM" ("24:00" only where allowed)."""
    if allow_24 and value == "24:00":
        return DAY_MINUTES
    m = _HHMM.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a time of day HH:MM" + (" (or 24:00)" if allow_24 else ""))
    return int(m.group(1)) * 60 + int(m.group(2))


def fmt_minutes(minutes: int) -> str:
    """Format minutes after midnight as "HH:MM"."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _bp(value: Decimal) -> int:
    return int(value * 100)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Rule(_Model):
    """One time-of-day band: applies on `days` to `spot_types` from `from` to `to` (wall clock)."""

    name: str = Field(min_length=1, max_length=80)
    spot_types: list[SpotType] = Field(min_length=1)
    days: list[Day] = Field(min_length=1)
    from_: str = Field(alias="from")
    to: str
    rate_per_hour: Amount
    increment_minutes: int = Field(gt=0, le=DAY_MINUTES, strict=True)
    daily_max: Amount | None = None

    @field_validator("from_")
    @classmethod
    def _from(cls, v: str) -> str:
        parse_hhmm(v)
        return v

    @field_validator("to")
    @classmethod
    def _to(cls, v: str) -> str:
        parse_hhmm(v, allow_24=True)
        return v

    @field_validator("spot_types", "days")
    @classmethod
    def _no_duplicates(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("listed twice")
        return v

    @model_validator(mode="after")
    def _not_empty(self) -> Rule:
        if self.start_minute == self.end_minute:
            raise ValueError("from equals to: an empty band (write 00:00-24:00 for a whole day)")
        return self

    @property
    def start_minute(self) -> int:
        return parse_hhmm(self.from_)

    @property
    def end_minute(self) -> int:
        return parse_hhmm(self.to, allow_24=True)

    def pieces(self) -> list[tuple[int, int]]:
        """The [start, end) minute ranges this band covers within one local day.

        An overnight band (to < from) covers both ends of the *same* day: 19:00-07:00 on "mon"
        means Monday 00:00-07:00 and Monday 19:00-24:00 (see docs/adr/0005-pricing-bands.md).
        """
        s, e = self.start_minute, self.end_minute
        if s < e:
            return [(s, e)]
        return [(0, e), (s, DAY_MINUTES)] if e > 0 else [(s, DAY_MINUTES)]


class FlatRate(_Model):
    """A fixed price (early bird, evening, event) for entering in a window and leaving by a time."""

    name: str = Field(min_length=1, max_length=80)
    enter_from: str
    enter_to: str
    exit_by: str
    amount: Amount

    @field_validator("enter_from", "enter_to")
    @classmethod
    def _enter(cls, v: str) -> str:
        parse_hhmm(v)
        return v

    @field_validator("exit_by")
    @classmethod
    def _exit(cls, v: str) -> str:
        parse_hhmm(v, allow_24=True)
        return v

    @model_validator(mode="after")
    def _order(self) -> FlatRate:
        if parse_hhmm(self.enter_to) < parse_hhmm(self.enter_from):
            raise ValueError("enter_to is before enter_from (entry windows may not wrap midnight)")
        return self


class Cancellation(_Model):
    free_until_minutes_before: int = Field(default=0, ge=0, strict=True)
    fee_percent: Percent = Decimal(0)

    @property
    def fee_bp(self) -> int:
        return _bp(self.fee_percent)


class Overstay(_Model):
    rate_per_hour: Amount = 0
    increment_minutes: int = Field(default=15, gt=0, le=DAY_MINUTES, strict=True)


class DynamicSettings(_Model):
    enabled: bool = False
    min_multiplier: Multiplier = Decimal(1)
    max_multiplier: Multiplier = Decimal(1)

    @model_validator(mode="after")
    def _bounds(self) -> DynamicSettings:
        if self.min_multiplier > self.max_multiplier:
            raise ValueError("min_multiplier is greater than max_multiplier")
        return self


class DiscountCode(_Model):
    """`percent` takes `value` as a percentage (0-100); `fixed` as minor units off."""

    code: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    kind: Literal["percent", "fixed"]
    value: Amount
    max_uses: int | None = Field(default=None, ge=1, strict=True)
    valid_from: datetime | None = None
    valid_to: datetime | None = None

    @field_validator("valid_from", "valid_to")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.utcoffset() is None:
            raise ValueError("must carry a timezone offset")
        return v

    @model_validator(mode="after")
    def _check(self) -> DiscountCode:
        if self.kind == "percent" and self.value > 100:
            raise ValueError("a percent discount is at most 100")
        if self.valid_from and self.valid_to and self.valid_to <= self.valid_from:
            raise ValueError("valid_to is not after valid_from")
        return self


Piece = tuple[int, int, int]  # (start minute, end minute, rule index)


class RateCard(_Model):
    """A lot's complete price list; validated so every (spot type, day) is tiled by exactly one band."""

    currency: str = Field(pattern=r"^[A-Za-z]{3}$")
    tax_percent: Percent = Decimal(0)
    grace_minutes: int = Field(default=0, ge=0, le=DAY_MINUTES, strict=True)
    rules: list[Rule] = Field(min_length=1)
    flat_rates: list[FlatRate] = Field(default_factory=list)
    cancellation: Cancellation = Field(default_factory=Cancellation)
    no_show_fee: Amount = 0
    overstay: Overstay = Field(default_factory=Overstay)
    dynamic: DynamicSettings = Field(default_factory=DynamicSettings)
    holidays: list[date] = Field(default_factory=list)
    discount_codes: list[DiscountCode] = Field(default_factory=list)
    #: when a reservation's authorisation is captured: at its start (entry, or the start time) or at exit
    capture: Literal["at_start", "at_exit"] = "at_exit"
    #: price of a monthly pass for one plate (None: the lot sells no passes unless an operator names a price)
    monthly_pass_amount: Amount | None = None
    #: EV charging: once a car has finished charging, what it pays per hour it stays plugged in past the grace
    idle_fee_per_hour: Amount = 0
    idle_grace_minutes: int = Field(default=0, ge=0, le=DAY_MINUTES, strict=True)

    _schedule: dict[tuple[str, str], tuple[Piece, ...]] = PrivateAttr(default_factory=dict)
    _hol_types: frozenset[str] = PrivateAttr(default=frozenset())
    _spot_types: frozenset[str] = PrivateAttr(default=frozenset())

    @field_validator("currency")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower()

    @field_validator("discount_codes")
    @classmethod
    def _unique_codes(cls, v: list[DiscountCode]) -> list[DiscountCode]:
        seen = [c.code.upper() for c in v]
        if len(set(seen)) != len(seen):
            raise ValueError("discount codes must be unique (case-insensitive)")
        return v

    @model_validator(mode="after")
    def _tile(self) -> RateCard:
        # Raises core ValidationFailed (not ValueError) so the loc names the rule, e.g. ("body","rules",2).
        self._schedule, self._hol_types = _build_schedule(self.rules)
        self._spot_types = frozenset(t for t, _ in self._schedule)  # asked once per card and search page
        return self

    @property
    def tax_bp(self) -> int:
        return _bp(self.tax_percent)

    @property
    def spot_types(self) -> frozenset[str]:
        return self._spot_types

    def day_key(self, day: date, spot_type: str) -> str:
        """Which schedule a local date uses: "hol" if it is a holiday with "hol" rules, else its weekday."""
        if spot_type in self._hol_types and day in self.holidays:
            return "hol"
        return WEEKDAYS[day.weekday()]

    def band_at(self, *, spot_type: str, day: date, minute: int) -> Piece:
        """The band piece covering local `minute` (0..1439) of `day` for `spot_type`."""
        pieces = self._schedule[(spot_type, self.day_key(day, spot_type))]
        i = bisect_right([p[0] for p in pieces], minute) - 1
        return pieces[i]

    def find_code(self, code: str) -> DiscountCode | None:
        """The discount code matching `code`, case-insensitively."""
        wanted = code.strip().upper()
        return next((c for c in self.discount_codes if c.code.upper() == wanted), None)

    def as_json(self) -> dict[str, Any]:
        """The card as JSON-ready data, with the same field names operators send."""
        return self.model_dump(mode="json", by_alias=True)


def _build_schedule(rules: list[Rule]) -> tuple[dict[tuple[str, str], tuple[Piece, ...]], frozenset[str]]:
    covered: dict[tuple[str, str], list[Piece]] = {}
    first_rule: dict[str, int] = {}
    for idx, rule in enumerate(rules):
        for rule_spot in rule.spot_types:
            first_rule.setdefault(rule_spot, idx)
            for rule_day in rule.days:
                for s, e in rule.pieces():
                    covered.setdefault((rule_spot, rule_day), []).append((s, e, idx))
    hol_types = frozenset(spot for spot, day in covered if day == "hol")
    schedule: dict[tuple[str, str], tuple[Piece, ...]] = {}
    for spot in SPOT_TYPES:
        if spot not in first_rule:
            continue
        for day in WEEKDAYS + (("hol",) if spot in hol_types else ()):
            pieces = sorted(covered.get((spot, day), []))
            if not pieces:
                raise ValidationFailed(
                    f"no rule covers {spot} on {day}: every day needs bands covering 00:00-24:00",
                    loc=("body", "rules", first_rule[spot]),
                )
            _check_tiling(rules, spot, day, pieces)
            schedule[(spot, day)] = tuple(pieces)
    return schedule, hol_types


def _check_tiling(rules: list[Rule], spot: str, day: str, pieces: list[Piece]) -> None:
    cursor, prev = 0, None
    for s, e, idx in pieces:
        if s < cursor and prev is not None:
            # Blame the later-declared rule of the pair: it is the one that was added on top.
            culprit, other = max(idx, prev[2]), min(idx, prev[2])
            raise ValidationFailed(
                f"rule {culprit} {rules[culprit].name!r} overlaps rule {other} {rules[other].name!r} "
                f"for {spot} on {day} between {fmt_minutes(s)} and {fmt_minutes(min(cursor, e))}",
                loc=("body", "rules", culprit),
            )
        if s > cursor:
            culprit = prev[2] if prev is not None else idx
            raise ValidationFailed(
                f"gap: nothing covers {fmt_minutes(cursor)}-{fmt_minutes(s)} for {spot} on {day} "
                f"(next to rule {culprit} {rules[culprit].name!r})",
                loc=("body", "rules", culprit),
            )
        cursor, prev = e, (s, e, idx)
    if cursor < DAY_MINUTES and prev is not None:
        raise ValidationFailed(
            f"gap: nothing covers {fmt_minutes(cursor)}-24:00 for {spot} on {day} "
            f"(after rule {prev[2]} {rules[prev[2]].name!r})",
            loc=("body", "rules", prev[2]),
        )


def parse_rate_card(data: Any) -> RateCard:
    """Validate operator JSON into a RateCard; field errors raise pydantic ValidationError, tiling errors ValidationFailed."""
    return RateCard.model_validate(data)
