"""The words every lane shares: spot and vehicle types, the spot compatibility rule, one window and its widening
to whole 15-minute slots. Written once here; HTTP models, the search fast lane, MQTT, the edge agent, the slot
store, search counts and the database's CHECK constraints all say the same thing (tests/unit/test_vocabulary.py
checks the migration's list against this one)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from core.errors import ValidationFailed


class SpotType(StrEnum):
    """A spot's type, and a vehicle's (docs/api.md: "Vehicle and spot types"). Declaration order is the type index
    stored in Redis and in numpy/SQL count arrays: only append."""

    motorcycle = "motorcycle"
    compact = "compact"
    regular = "regular"
    large = "large"
    ev = "ev"
    handicap = "handicap"


VehicleType = SpotType
#: the type names in type-index order
SPOT_TYPES: tuple[str, ...] = tuple(t.value for t in SpotType)
VEHICLE_TYPES = SPOT_TYPES
TYPE_INDEX: dict[str, int] = {name: i for i, name in enumerate(SPOT_TYPES)}
#: physical sizes, smallest first: a vehicle fits its own size and every larger one
SIZES: tuple[str, ...] = ("motorcycle", "compact", "regular", "large")


def compatible_types(vehicle_type: str, *, ev_overflow: bool = False) -> tuple[str, ...]:
    """Spot types a vehicle may use, most preferred first (smallest fitting size first); 422 on vehicle_type
    for an unknown type. The one compatibility rule: holds try spots in this order, counts sum these types."""
    if vehicle_type not in TYPE_INDEX:
        raise ValidationFailed(f"unknown vehicle type {vehicle_type!r}", loc=("body", "vehicle_type"))
    if vehicle_type == "ev":
        # An EV is a regular-sized car that prefers a charger.
        return ("ev", "regular", "large")
    if vehicle_type == "handicap":
        # A permit holder (regular-sized car) prefers an accessible spot, else any that fits.
        sizes: tuple[str, ...] = ("handicap", "regular", "large")
    else:
        sizes = SIZES[SIZES.index(vehicle_type):]
    # EV spots are regular-sized; others may use them only when the lot allows overflow,
    # and then last, so chargers stay free for EVs as long as possible.
    if ev_overflow and vehicle_type != "large":
        sizes = (*sizes, "ev")
    return sizes


def usable_split(vehicle_type: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(spot types always usable, types usable only where the lot allows ev overflow) for a vehicle type, from
    `compatible_types`; None (no type asked) means every spot."""
    if vehicle_type is None:
        return SPOT_TYPES, ()
    base = compatible_types(vehicle_type)
    return base, tuple(t for t in compatible_types(vehicle_type, ev_overflow=True) if t not in base)


SLOT = timedelta(minutes=15)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def widen_to_slots(starts_at: datetime, ends_at: datetime) -> tuple[datetime, datetime]:
    """The window widened to whole 15-minute UTC slots: start floored, end ceiled (exact: timedelta arithmetic)."""
    floored = _EPOCH + SLOT * ((starts_at.astimezone(UTC) - _EPOCH) // SLOT)
    ceiled = _EPOCH + SLOT * -((_EPOCH - ends_at.astimezone(UTC)) // SLOT)
    return floored, ceiled


@dataclass(frozen=True)
class Window:
    """A requested window and the whole 15-minute slots it occupies (search, availability, holds, walk-ins)."""

    starts_at: datetime  # as asked
    ends_at: datetime
    slot_start: datetime  # widened to whole 15-minute slots
    slot_end: datetime
    horizon_days: int = 0  # the booking horizon a lot needs to accept this window (search); 0 when not asked

    @classmethod
    def widened(cls, starts_at: datetime, ends_at: datetime, *, horizon_days: int = 0) -> Window:
        """The window with its slots (`widen_to_slots`)."""
        return cls(starts_at, ends_at, *widen_to_slots(starts_at, ends_at), horizon_days=horizon_days)
