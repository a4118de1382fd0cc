"""Pure slot arithmetic and spot-compatibility rules; no I/O, no clock.

Time is cut into 15-minute UTC slots, 96 per day. A window [starts_at, ends_at) is widened
to whole slots (floor the start, ceil the end). Slots are also numbered absolutely
("abs slot" = seconds since the Unix epoch // 900) so hot paths can work on ints.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

from core.clock import ensure_utc
from core.errors import ValidationFailed

# Spot types in type-index order (stored in Redis) and the one compatibility rule live in core.vocabulary.
from core.vocabulary import SPOT_TYPES, TYPE_INDEX, VEHICLE_TYPES, compatible_types, widen_to_slots

__all__ = ["SPOT_TYPES", "TYPE_INDEX", "VEHICLE_TYPES", "compatible_types"]

SLOT_SECONDS = 15 * 60
SLOTS_PER_DAY = 96
BYTES_PER_SPOT_DAY = SLOTS_PER_DAY // 8  # 12: each spot's day is byte-aligned in the bitmap
DEFAULT_MAX_SPAN = timedelta(days=7)
MAX_SPOTS_PER_LOT = (1 << 24) - 1  # candidate entries pack the spot index in 24 bits
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

STRATEGIES = ("nearest_entrance", "spread_levels", "best_fit")


class SlotRange(NamedTuple):
    """Slots [first, last) of one UTC day."""

    day: date
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class SpotInfo:
    """A spot as the slot layer sees it: dense index within its lot, type, level, entrance rank."""

    idx: int
    type: str
    level: int | str = 0
    rank: int = 0


def abs_slot_floor(value: datetime) -> int:
    """Absolute slot number containing `value`."""
    return int(ensure_utc(value).timestamp()) // SLOT_SECONDS


def abs_slot_ceil(value: datetime) -> int:
    """First absolute slot starting at or after `value`."""
    ts = ensure_utc(value).timestamp()
    return -int(-ts // SLOT_SECONDS)


def abs_slot_to_datetime(slot: int) -> datetime:
    """Start of an absolute slot as an aware UTC datetime."""
    return datetime.fromtimestamp(slot * SLOT_SECONDS, UTC)


def day_of_abs_slot(slot: int) -> date:
    """UTC day an absolute slot falls in."""
    return date.fromordinal(_EPOCH_ORDINAL + slot // SLOTS_PER_DAY)


def abs_day(day: date) -> int:
    """Days since 1970-01-01."""
    return day.toordinal() - _EPOCH_ORDINAL


def widen(
    starts_at: datetime, ends_at: datetime, *, max_span: timedelta = DEFAULT_MAX_SPAN
) -> tuple[datetime, datetime]:
    """Validate a window and widen it to whole slots (floor start, ceil end), in UTC."""
    for name, value in (("starts_at", starts_at), ("ends_at", ends_at)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValidationFailed(f"{name} must carry a timezone offset", loc=("body", name))
    if ends_at <= starts_at:
        raise ValidationFailed("ends_at must be after starts_at", loc=("body", "ends_at"))
    if ends_at - starts_at > max_span:
        raise ValidationFailed(f"window longer than {max_span}", loc=("body", "ends_at"))
    return widen_to_slots(starts_at, ends_at)


def abs_ranges(first: int, last: int) -> list[tuple[int, int, int]]:
    """Split absolute slots [first, last) into (abs_day, first_slot, last_slot_exclusive) per day."""
    out: list[tuple[int, int, int]] = []
    while first < last:
        day, slot = divmod(first, SLOTS_PER_DAY)
        end = min(last - day * SLOTS_PER_DAY, SLOTS_PER_DAY)
        out.append((day, slot, end))
        first = day * SLOTS_PER_DAY + end
    return out


def slot_ranges(start: datetime, end: datetime) -> list[SlotRange]:
    """Days touched by [start, end) with the slot range of each (start floored, end ceiled)."""
    return [
        SlotRange(date.fromordinal(_EPOCH_ORDINAL + d), a, b)
        for d, a, b in abs_ranges(abs_slot_floor(start), abs_slot_ceil(end))
    ]


def day_expire_at(day: date, margin: timedelta) -> int:
    """Unix time at which a day's keys may go: end of the day plus a margin."""
    return (abs_day(day) + 1) * 86_400 + int(margin.total_seconds())


def candidate_order(
    spots: Sequence[SpotInfo], vehicle_type: str, *, strategy: str, ev_overflow: bool
) -> list[SpotInfo]:
    """Spots a vehicle may use, in the order the hold script tries them."""
    if strategy not in STRATEGIES:
        raise ValidationFailed(f"unknown allocation strategy {strategy!r}", loc=("body", "strategy"))
    out: list[SpotInfo] = []
    for spot_type in compatible_types(vehicle_type, ev_overflow=ev_overflow):
        tier = sorted((s for s in spots if s.type == spot_type), key=lambda s: (s.rank, s.idx))
        if strategy == "spread_levels":
            tier = _round_robin_levels(tier)
        out.extend(tier)
    return out


def _round_robin_levels(tier: list[SpotInfo]) -> list[SpotInfo]:
    by_level: dict[str, list[SpotInfo]] = {}
    for spot in tier:
        by_level.setdefault(str(spot.level), []).append(spot)
    queues = [by_level[k] for k in sorted(by_level)]
    out: list[SpotInfo] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out.extend(q[i] for q in queues if i < len(q))
    return out


def pack_candidates(spots: Iterable[SpotInfo]) -> bytes:
    """Big-endian uint32 per candidate: spot index in the top 24 bits, type index in the low 8."""
    values = [(s.idx << 8) | TYPE_INDEX[s.type] for s in spots]
    return struct.pack(f">{len(values)}I", *values)


def unpack_candidates(blob: bytes) -> list[tuple[int, int]]:
    """Inverse of pack_candidates: (spot idx, type index) pairs."""
    return [(v >> 8, v & 0xFF) for v in struct.unpack(f">{len(blob) // 4}I", blob)]


def validate_spots(spots: Sequence[SpotInfo]) -> None:
    """Spot indices must be dense 0..n-1 and types known."""
    seen = sorted(s.idx for s in spots)
    if seen != list(range(len(spots))):
        raise ValidationFailed("spot indices must be dense 0..n-1 within a lot", loc=("spots",))
    if len(spots) > MAX_SPOTS_PER_LOT:
        raise ValidationFailed("too many spots in one lot", loc=("spots",))
    for s in spots:
        if s.type not in TYPE_INDEX:
            raise ValidationFailed(f"unknown spot type {s.type!r}", loc=("spots", s.idx, "type"))
