"""Discount codes: is a code usable now, and how much does it take off."""

from __future__ import annotations

from datetime import datetime

from core.errors import ValidationFailed
from core.money import percent_of
from pricing.rates import DiscountCode, RateCard

_LOC = ("body", "discount_code")


def check_discount_code(*, card: RateCard, code: str, now: datetime, times_used: int | None = None) -> DiscountCode:
    """Return the card's code if usable at `now` (and below max_uses when `times_used` is given), else raise ValidationFailed."""
    if now.utcoffset() is None:
        raise ValueError("now must carry a timezone offset")
    found = card.find_code(code)
    if found is None:
        raise ValidationFailed("unknown discount code", loc=_LOC)
    # valid_from is inclusive, valid_to exclusive, like every other window in ParkGrid.
    if found.valid_from is not None and now < found.valid_from:
        raise ValidationFailed("discount code is not valid yet", loc=_LOC)
    if found.valid_to is not None and now >= found.valid_to:
        raise ValidationFailed("discount code has expired", loc=_LOC)
    if times_used is not None and found.max_uses is not None and times_used >= found.max_uses:
        raise ValidationFailed("discount code has been used up", loc=_LOC)
    return found


def discount_code_usable(*, card: RateCard, code: str, now: datetime, times_used: int) -> bool:
    """True when `code` exists, is inside its validity window at `now`, and has been used fewer than max_uses times."""
    try:
        check_discount_code(card=card, code=code, now=now, times_used=times_used)
    except ValidationFailed:
        return False
    return True


def discount_amount(*, code: DiscountCode, subtotal: int) -> int:
    """Minor units a code takes off `subtotal`: percent rounded half up, fixed capped, never below zero."""
    if subtotal <= 0:
        return 0
    off = percent_of(subtotal, code.value * 100, basis_points=True) if code.kind == "percent" else code.value
    return min(off, subtotal)
