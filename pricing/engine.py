"""Price a parking window from a rate card: bands, increments, daily caps, flat rates, discounts, multiplier, tax.

Pure functions: no I/O, no clock; all money is int minor units (Fraction only in between).
Order: band lines -> daily caps per 24 h from the start -> grace -> cheapest qualifying flat rate
-> discount code -> dynamic multiplier (round half up) -> tax (round half up).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import ValidationFailed
from core.money import Money, percent_of
from pricing.discounts import check_discount_code, discount_amount
from pricing.rates import Cancellation, FlatRate, RateCard, parse_hhmm
from pricing.timeline import Run, band_runs, cut_run

DAY = timedelta(hours=24)
MINUTE_US = 60_000_000
MAX_WINDOW = timedelta(days=366)  # bounds the work one request can ask for


def ceil_div(a: int, b: int) -> int:
    """Integer ceiling of a / b for b > 0."""
    return -(-a // b)


def round_half_up(value: Fraction) -> int:
    """Round a non-negative exact value to the nearest int, halves up."""
    return int((value * 2 + 1) // 2)


@dataclass(frozen=True, slots=True)
class Line:
    """One item of a quote: a band run (positive) or an adjustment (cap, grace, flat rate: negative)."""

    kind: str  # "band" | "cap" | "grace" | "flat"
    label: str
    amount: int
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    minutes: int | None = None
    charged_minutes: int | None = None
    rate_per_hour: int | None = None
    period: int | None = None  # 0-based index of the 24 h period from the window's start

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "label": self.label}
        if self.starts_at is not None and self.ends_at is not None:
            out["from"], out["to"] = self.starts_at.isoformat(), self.ends_at.isoformat()
        for name in ("minutes", "charged_minutes", "rate_per_hour", "period"):
            if (value := getattr(self, name)) is not None:
                out[name] = value
        out["amount"] = self.amount
        return out


@dataclass(frozen=True, slots=True)
class PriceBreakdown:
    """An itemised price: sum(lines) == subtotal; total == round((subtotal - discount) * multiplier) + tax."""

    currency: str
    lines: tuple[Line, ...]
    subtotal: Money
    discount: Money
    multiplier: Fraction
    pre_tax: Money
    tax: Money
    total: Money
    tax_percent: Decimal = Decimal(0)
    discount_code: str | None = None
    multiplier_reason: str | None = None
    notes: tuple[str, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "lines": [line.as_json() for line in self.lines],
            "subtotal": self.subtotal.as_json(),
            "discount_code": self.discount_code,
            "discount": self.discount.as_json(),
            "multiplier": _fraction_str(self.multiplier),
            "multiplier_reason": self.multiplier_reason,
            "pre_tax": self.pre_tax.as_json(),
            "tax_percent": str(self.tax_percent),
            "tax": self.tax.as_json(),
            "total": self.total.as_json(),
        }


def _fraction_str(value: Fraction) -> str:
    # Multipliers are quantised to 0.05 steps, so this is exact; other fractions show as "p/q".
    for places in range(7):
        scaled = value * 10**places
        if scaled.denominator == 1:
            return str(Decimal(scaled.numerator).scaleb(-places))
    return f"{value.numerator}/{value.denominator}"


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationFailed(f"unknown timezone {tz!r}", loc=("body", "timezone")) from exc


def _utc(value: datetime, name: str) -> datetime:
    if value.utcoffset() is None:
        raise ValidationFailed(f"{name} must carry a timezone offset", loc=("body", name))
    return value.astimezone(UTC)


def _band_lines(card: RateCard, runs: list[Run], cuts: list[datetime]) -> list[Line]:
    """Band lines (a run cut at 24 h period boundaries), then a cap line for each period whose cap bites."""
    lines: list[Line] = []
    capped: dict[int, int] = {}  # per period: sum of amounts from rules that have a daily_max
    caps: dict[int, int] = {}  # per period: highest daily_max among rules touched in it
    for run in runs:
        rule = card.rules[run.rule]
        inc, rate = rule.increment_minutes, rule.rate_per_hour

        # Increments restart at every band run, not at 24 h period cuts: a run cut by a period
        # boundary is charged as one run, each piece getting the growth of the run's cumulative
        # charge. So the cut never adds rounding, and only the cap sees the periods.
        def charged(micros: int, inc: int = inc) -> int:
            return ceil_div(micros, inc * MINUTE_US) * inc

        def amount(micros: int, rate: int = rate) -> int:
            return ceil_div(charged(micros) * rate, 60)  # round up: keeps splitting never cheaper

        done = 0
        for period, piece in cut_run(run, cuts):
            upto = done + piece.micros
            if upto == done:
                continue
            line_amount = amount(upto) - amount(done)
            if rule.daily_max is not None:
                capped[period] = capped.get(period, 0) + line_amount
                caps[period] = max(caps.get(period, 0), rule.daily_max)
            lines.append(
                Line("band", rule.name, line_amount, piece.starts_at, piece.ends_at,
                     ceil_div(upto, MINUTE_US) - ceil_div(done, MINUTE_US), charged(upto) - charged(done), rate,
                     period)
            )
            done = upto
    out: list[Line] = []
    for period in sorted({line.period for line in lines if line.period is not None}):
        out.extend(line for line in lines if line.period == period)
        # Capped bands share the highest cap touched in the period; uncapped bands come on top in full.
        if period in caps and capped[period] > caps[period]:
            out.append(Line("cap", f"daily max, day {period + 1}", caps[period] - capped[period], period=period))
    return out


def flat_rate_applies(*, flat: FlatRate, starts_at: datetime, ends_at: datetime, tz: ZoneInfo) -> bool:
    """True when local entry is within [enter_from, enter_to] and exit is by exit_by (next day if exit_by < enter_from)."""
    local = starts_at.astimezone(tz)
    enter_from, enter_to = parse_hhmm(flat.enter_from), parse_hhmm(flat.enter_to)
    entry = local.time().replace(tzinfo=None)
    if not (_as_time(enter_from) <= entry <= _as_time(enter_to)):
        return False
    exit_by = parse_hhmm(flat.exit_by, allow_24=True)
    day = local.date() + timedelta(days=1 if exit_by < enter_from else 0)
    wall = datetime.combine(day, time()) + timedelta(minutes=exit_by)
    deadline = wall.replace(tzinfo=tz)  # fold=0 picks the first of an ambiguous wall time
    return ends_at <= deadline.astimezone(UTC)


def _as_time(minutes: int) -> time:
    return time(minutes // 60, minutes % 60)


def price_window(
    *,
    card: RateCard,
    spot_type: str,
    starts_at: datetime,
    ends_at: datetime,
    tz: str,
    discount_code: str | None = None,
    now: datetime | None = None,
    multiplier: Fraction | Decimal | int = 1,
    multiplier_reason: str | None = None,
) -> PriceBreakdown:
    """Price [starts_at, ends_at) for `spot_type` on `card` in the lot's timezone `tz`, itemised."""
    zone = _zone(tz)
    start, end = _utc(starts_at, "starts_at"), _utc(ends_at, "ends_at")
    if end <= start:
        raise ValidationFailed("ends_at must be after starts_at", loc=("body", "ends_at"))
    if end - start > MAX_WINDOW:
        raise ValidationFailed("window longer than 366 days", loc=("body", "ends_at"))
    if spot_type not in card.spot_types:
        raise ValidationFailed(f"this lot has no rates for {spot_type!r}", loc=("body", "vehicle_type"))
    mult = Fraction(multiplier)
    if mult <= 0:
        raise ValueError("multiplier must be positive")

    runs = band_runs(card=card, spot_type=spot_type, starts_at=start, ends_at=end, tz=zone)
    cuts: list[datetime] = []
    while start + DAY * (len(cuts) + 1) < end:
        cuts.append(start + DAY * (len(cuts) + 1))
    lines = _band_lines(card, runs, cuts)
    computed = sum(line.amount for line in lines)

    if end - start <= timedelta(minutes=card.grace_minutes):
        lines.append(Line("grace", f"grace period ({card.grace_minutes} min)", -computed))
    else:
        flats = [f for f in card.flat_rates if flat_rate_applies(flat=f, starts_at=start, ends_at=end, tz=zone)]
        best = min(flats, key=lambda f: f.amount, default=None)
        if best is not None and best.amount < computed:
            lines.append(Line("flat", f"flat rate: {best.name}", best.amount - computed))
    subtotal = sum(line.amount for line in lines)

    discount, code_name = 0, None
    if discount_code:
        if now is None:
            raise ValueError("now is required to check a discount code")
        code = check_discount_code(card=card, code=discount_code, now=now)
        discount, code_name = discount_amount(code=code, subtotal=subtotal), code.code

    pre_tax = round_half_up((subtotal - discount) * mult)
    tax = percent_of(pre_tax, card.tax_bp, basis_points=True)
    cur = card.currency
    return PriceBreakdown(
        currency=cur,
        lines=tuple(lines),
        subtotal=Money(subtotal, cur),
        discount=Money(discount, cur),
        multiplier=mult,
        pre_tax=Money(pre_tax, cur),
        tax=Money(tax, cur),
        total=Money(pre_tax + tax, cur),
        tax_percent=card.tax_percent,
        discount_code=code_name,
        multiplier_reason=multiplier_reason,
    )


def overstay_fee(*, card: RateCard, minutes_over: int) -> Money:
    """Fee (before tax) for staying `minutes_over` past the booked end: every overstay increment started is charged."""
    if minutes_over <= 0:
        return Money(0, card.currency)
    inc = card.overstay.increment_minutes
    charged = ceil_div(minutes_over, inc) * inc
    return Money(ceil_div(charged * card.overstay.rate_per_hour, 60), card.currency)


def cancellation_refund(*, card: RateCard, paid_amount: Money, starts_at: datetime, cancelled_at: datetime) -> Money:
    """Refund for a cancellation: all of it until N minutes before start, else paid minus fee_percent of it."""
    return refund_under(policy=card.cancellation, paid_amount=paid_amount, starts_at=starts_at,
                        cancelled_at=cancelled_at)


def refund_under(*, policy: Cancellation, paid_amount: Money, starts_at: datetime, cancelled_at: datetime) -> Money:
    """cancellation_refund for a policy alone (e.g. the snapshot a reservation was sold under)."""
    start, at = _utc(starts_at, "starts_at"), _utc(cancelled_at, "cancelled_at")
    paid = max(paid_amount.amount, 0)
    if at <= start - timedelta(minutes=policy.free_until_minutes_before):
        return Money(paid, paid_amount.currency)
    fee = percent_of(paid, policy.fee_bp, basis_points=True)
    return Money(min(max(paid - fee, 0), paid), paid_amount.currency)


def no_show_fee(card: RateCard) -> Money:
    """The fee (before tax) the lot keeps when a confirmed booking never enters."""
    return Money(card.no_show_fee, card.currency)
