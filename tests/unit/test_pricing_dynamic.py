"""Dynamic multiplier: bounded, monotone in occupancy, stepped, sticky (hysteresis), off when disabled."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from pricing.dynamic import DEAD_BAND, STEP, dynamic_multiplier, target_multiplier
from pricing.rates import DynamicSettings

ON = DynamicSettings(enabled=True, min_multiplier=Decimal("0.8"), max_multiplier=Decimal("1.5"))
occupancies = st.floats(0, 1, allow_nan=False)
bounds = st.tuples(st.integers(10, 100), st.integers(100, 300)).map(
    lambda t: DynamicSettings(enabled=True, min_multiplier=Decimal(t[0]) / 100, max_multiplier=Decimal(t[1]) / 100))
previous = st.one_of(st.none(), st.integers(10, 300).map(lambda n: Fraction(n, 100)))


def test_curve_shape() -> None:
    assert target_multiplier(occupancy=0.0, settings=ON) == Fraction(4, 5)
    assert target_multiplier(occupancy=0.45, settings=ON) == 1
    assert target_multiplier(occupancy=0.6, settings=ON) == 1
    assert target_multiplier(occupancy=0.95, settings=ON) == Fraction(3, 2)
    assert target_multiplier(occupancy=1.0, settings=ON) == Fraction(3, 2)
    mult, reason = dynamic_multiplier(occupancy=0.87, previous=None, settings=ON)
    assert mult == Fraction(7, 5) and reason == "occupancy 87% for the window (booked): x1.4"


@given(occupancies, previous, bounds)
def test_bounded_and_on_step_grid(occ: float, prev: Fraction | None, cfg: DynamicSettings) -> None:
    mult, _ = dynamic_multiplier(occupancy=occ, previous=prev, settings=cfg)
    assert Fraction(cfg.min_multiplier) <= mult <= Fraction(cfg.max_multiplier)


@given(occupancies, occupancies, previous, bounds)
def test_monotone_in_occupancy(a: float, b: float, prev: Fraction | None, cfg: DynamicSettings) -> None:
    lo, hi = sorted([a, b])
    assert dynamic_multiplier(occupancy=lo, previous=prev, settings=cfg)[0] <= \
        dynamic_multiplier(occupancy=hi, previous=prev, settings=cfg)[0]
    assert target_multiplier(occupancy=lo, settings=cfg) <= target_multiplier(occupancy=hi, settings=cfg)


@given(occupancies, bounds)
def test_target_is_on_the_step_grid_inside_bounds(occ: float, cfg: DynamicSettings) -> None:
    t = target_multiplier(occupancy=occ, settings=cfg)
    assert (t / STEP).denominator == 1 or t in (Fraction(cfg.min_multiplier), Fraction(cfg.max_multiplier))


def _step_edge() -> Fraction:
    """The first occupancy above 60 % where the stepped target moves up."""
    return next(Fraction(i, 1000) for i in range(600, 950)
                if target_multiplier(occupancy=Fraction(i, 1000), settings=ON)
                != target_multiplier(occupancy=Fraction(i - 1, 1000), settings=ON))


def test_hysteresis_oscillation_around_a_step_edge_does_not_flap() -> None:
    # Wobble 1 point either side of a step edge: the multiplier is set once and then kept.
    edge = _step_edge()
    prev: Fraction | None = None
    seen = []
    for i in range(40):
        occ = edge + (Fraction(1, 100) if i % 2 else -Fraction(1, 100))
        prev, _ = dynamic_multiplier(occupancy=occ, previous=prev, settings=ON)
        seen.append(prev)
    assert len(set(seen)) == 1
    # Without hysteresis the same wobble flips the target every time: the test can fail.
    raw = {target_multiplier(occupancy=edge + d, settings=ON) for d in (Fraction(1, 100), -Fraction(1, 100))}
    assert len(raw) == 2


def test_moves_once_occupancy_leaves_the_dead_band() -> None:
    prev, _ = dynamic_multiplier(occupancy=0.7, previous=None, settings=ON)
    kept, _ = dynamic_multiplier(occupancy=0.7 + float(DEAD_BAND) / 2, previous=prev, settings=ON)
    assert kept == prev
    moved, _ = dynamic_multiplier(occupancy=0.9, previous=prev, settings=ON)
    assert moved > prev and moved - prev >= STEP
    down, _ = dynamic_multiplier(occupancy=0.1, previous=prev, settings=ON)
    assert down < 1


def test_held_value_is_explained() -> None:
    edge = _step_edge()
    above = target_multiplier(occupancy=edge + Fraction(1, 100), settings=ON)
    mult, reason = dynamic_multiplier(occupancy=edge - Fraction(1, 100), previous=above, settings=ON)
    assert mult == above != target_multiplier(occupancy=edge - Fraction(1, 100), settings=ON)
    assert "dead band" in reason and "kept x" in reason


def test_disabled_is_exactly_one() -> None:
    off = DynamicSettings(enabled=False, min_multiplier=Decimal("0.5"), max_multiplier=Decimal(2))
    assert dynamic_multiplier(occupancy=0.99, previous=Fraction(2), settings=off) == (1, "dynamic pricing off")


def test_out_of_range_occupancy_is_clamped() -> None:
    assert dynamic_multiplier(occupancy=1.3, previous=None, settings=ON)[0] == Fraction(3, 2)
    assert dynamic_multiplier(occupancy=-0.2, previous=None, settings=ON)[0] == Fraction(4, 5)
