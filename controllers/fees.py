"""What a car owes at the exit gate: pure functions over a rate card and the session's times.

Reservations are prepaid; past their end (plus the card's grace) they pay the overstay rate.
Walk-ins pay the card's price for [entered_at, exit). Passes pay nothing. Tax is added to
overstay fees as it is to every quote (price_window's total already includes it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.errors import ValidationFailed
from core.money import Money, percent_of
from pricing.engine import overstay_fee, price_window
from pricing.rates import RateCard


@dataclass(frozen=True)
class ExitFee:
    amount: Money
    basis: str  # prepaid | overstay | walk_in | pass | no_rates | lost_ticket_fee | unknown_session


def minutes_over(*, ends_at: datetime, now: datetime, grace_minutes: int) -> int:
    """Whole minutes (rounded up) past ends_at, or 0 while within the grace."""
    if now <= ends_at + timedelta(minutes=grace_minutes):
        return 0
    return math.ceil((now - ends_at).total_seconds() / 60)


def reservation_exit_fee(*, card: RateCard | None, ends_at: datetime, now: datetime, currency: str = "usd") -> ExitFee:
    """Prepaid; overstay (with tax) for every minute past ends_at once the card's grace has run out."""
    if card is None:
        return ExitFee(Money(0, currency), "prepaid")
    over = minutes_over(ends_at=ends_at, now=now, grace_minutes=card.grace_minutes)
    if over == 0:
        return ExitFee(Money(0, card.currency), "prepaid")
    fee = overstay_fee(card=card, minutes_over=over).amount
    return ExitFee(Money(fee + percent_of(fee, card.tax_bp, basis_points=True), card.currency), "overstay")


def walk_in_exit_fee(*, card: RateCard | None, spot_type: str, entered_at: datetime, now: datetime, tz: str,
                     currency: str = "usd") -> ExitFee:
    """The card's price for [entered_at, now) on the spot's type; no card (or no rates for the type) is free."""
    if card is None:
        return ExitFee(Money(0, currency), "no_rates")
    if now <= entered_at:
        return ExitFee(Money(0, card.currency), "walk_in")
    try:
        total = price_window(card=card, spot_type=spot_type, starts_at=entered_at, ends_at=now, tz=tz).total
    except ValidationFailed:
        return ExitFee(Money(0, card.currency), "no_rates")
    return ExitFee(total, "walk_in")


def session_fee(*, card: RateCard | None, timezone: str, kind: str, entered_at: datetime, ends_at: datetime | None,
                spot_type: str, now: datetime) -> ExitFee:
    """What a session owes if it left at `now` (before anything already paid): passes nothing, reservations
    their overstay (`ends_at` is the reservation's), walk-ins their time on the spot's type."""
    if kind == "pass":
        return ExitFee(Money(0, "usd"), "pass")
    if kind == "reservation":
        assert ends_at is not None
        return reservation_exit_fee(card=card, ends_at=ends_at, now=now)
    return walk_in_exit_fee(card=card, spot_type=spot_type, entered_at=entered_at, now=now, tz=timezone)
