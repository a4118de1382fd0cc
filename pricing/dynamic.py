"""Dynamic price multiplier from occupancy: bounded, stepped, with hysteresis, and explained.

Curve (before bounds): below 30 % occupancy it falls linearly to min_multiplier at 0 %; from
30 % to 60 % it is exactly 1; from 60 % it rises linearly to max_multiplier at 95 % and stays there.
The result is rounded half up to 0.05 steps and clamped to [min_multiplier, max_multiplier].

Hysteresis: with a `previous` multiplier we keep it as long as it is still reachable from an
occupancy within DEAD_BAND of the current one, i.e. while
target(occupancy - DEAD_BAND) <= previous <= target(occupancy + DEAD_BAND).
So occupancy must move more than DEAD_BAND past the edge of the range that produced `previous`
before the price moves (by at least one step), and prices do not flap around a threshold.
"""

from __future__ import annotations

import math
from fractions import Fraction

from pricing.rates import DynamicSettings

STEP = Fraction(1, 20)  # 0.05
DEAD_BAND = Fraction(3, 100)  # 3 percentage points of occupancy
LOW, FLAT_END, HIGH = Fraction(30, 100), Fraction(60, 100), Fraction(95, 100)
ONE = Fraction(1)


def _occupancy(value: float | Fraction) -> Fraction:
    if isinstance(value, float) and math.isnan(value):
        raise ValueError("occupancy is NaN")
    # Decimal-string conversion so 0.6 means 3/5, not the nearest binary float.
    occ = Fraction(str(value)) if isinstance(value, float) else Fraction(value)
    return min(max(occ, Fraction(0)), ONE)  # overbooked counts as full, negative as empty


def target_multiplier(*, occupancy: float | Fraction, settings: DynamicSettings) -> Fraction:
    """The multiplier the curve gives for `occupancy` (no hysteresis), stepped and bounded."""
    occ = _occupancy(occupancy)
    lo, hi = Fraction(settings.min_multiplier), Fraction(settings.max_multiplier)
    if occ < LOW:
        raw = lo + (ONE - lo) * occ / LOW
    elif occ <= FLAT_END:
        raw = ONE
    elif occ < HIGH:
        raw = ONE + (hi - ONE) * (occ - FLAT_END) / (HIGH - FLAT_END)
    else:
        raw = hi
    stepped = ((raw / STEP) * 2 + 1) // 2 * STEP  # round half up to a 0.05 step: monotone
    return min(max(stepped, lo), hi)


def dynamic_multiplier(
    *,
    occupancy: float | Fraction,
    previous: Fraction | None,
    settings: DynamicSettings,
    source: str = "booked",
) -> tuple[Fraction, str]:
    """Multiplier for a window's occupancy (0..1), sticky around `previous`, with a human reason."""
    if not settings.enabled:
        return ONE, "dynamic pricing off"
    occ = _occupancy(occupancy)
    pct = f"occupancy {round(occ * 100)}% for the window ({source})"
    target = target_multiplier(occupancy=occ, settings=settings)
    if previous is not None:
        prev = Fraction(previous)
        lo, hi = Fraction(settings.min_multiplier), Fraction(settings.max_multiplier)
        if lo <= prev <= hi:
            below = target_multiplier(occupancy=occ - DEAD_BAND, settings=settings)
            above = target_multiplier(occupancy=occ + DEAD_BAND, settings=settings)
            if below <= prev <= above:
                if prev != target:
                    return prev, f"{pct}; kept x{_fmt(prev)} (within the {_fmt(DEAD_BAND * 100)}-point dead band)"
                return prev, f"{pct}: x{_fmt(prev)}"
    return target, f"{pct}: x{_fmt(target)}"


def _fmt(value: Fraction) -> str:
    return f"{float(value):.2f}".rstrip("0").rstrip(".") if value.denominator != 1 else str(value.numerator)
