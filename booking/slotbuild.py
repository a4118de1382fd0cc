"""Compute a lot's exact slot bitmaps and counters from occupancy read from PostgreSQL.

Pure CPU work, no I/O: the rebuild and repair paths feed its output to Lua scripts.
Hot loops work on absolute slot ints and Python big ints (one 96-bit mask per spot and day),
because a rebuild may see millions of occupancy rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from booking.slots import (
    BYTES_PER_SPOT_DAY,
    SLOT_SECONDS,
    SLOTS_PER_DAY,
    SPOT_TYPES,
    SpotInfo,
    abs_ranges,
)

_FULL = (1 << SLOTS_PER_DAY) - 1


def slot_mask(first: int, last: int) -> int:
    """96-bit mask of slots [first, last): slot 0 is the most significant bit, as in Redis."""
    return (_FULL >> first) & ~(_FULL >> last)


@dataclass(slots=True)
class DayState:
    """Desired state of one lot-day: a 96-bit mask per occupied spot."""

    masks: dict[int, int] = field(default_factory=dict)


def occupancy_by_day(
    spots: Sequence[SpotInfo],
    occupancy: Iterable[tuple[int, datetime, datetime]],
    days: Iterable[int],
) -> dict[int, DayState]:
    """Group (spot_idx, start, end) rows into per-day desired states, for the given abs days only."""
    states: dict[int, DayState] = {d: DayState() for d in days}
    n = len(spots)
    per_day = SLOTS_PER_DAY
    for spot, start, end in occupancy:
        if not 0 <= spot < n:
            raise ValueError(f"occupancy names spot {spot}, lot has {n}")
        first = int(start.timestamp()) // SLOT_SECONDS
        last = -int(-end.timestamp() // SLOT_SECONDS)
        day = first // per_day
        if day == (last - 1) // per_day:
            # The common case, inlined: one row within one day.
            state = states.get(day)
            if state is not None:
                base = day * per_day
                masks = state.masks
                masks[spot] = masks.get(spot, 0) | ((_FULL >> (first - base)) & ~(_FULL >> (last - base)))
            continue
        for day, a, b in abs_ranges(first, last):
            state = states.get(day)
            if state is not None:
                state.masks[spot] = state.masks.get(spot, 0) | slot_mask(a, b)
    return states


def day_bitmap(state: DayState, n_spots: int) -> bytes:
    """Bitmap bytes for a day (b'' when nothing is occupied); trailing zero spots are trimmed."""
    if not state.masks:
        return b""
    top = max(state.masks)
    buf = bytearray((top + 1) * BYTES_PER_SPOT_DAY)
    for spot, mask in state.masks.items():
        off = spot * BYTES_PER_SPOT_DAY
        buf[off : off + BYTES_PER_SPOT_DAY] = mask.to_bytes(BYTES_PER_SPOT_DAY, "big")
    return bytes(buf)


def day_counters(state: DayState, type_of: Sequence[int]) -> bytes:
    """BITFIELD u16 counters #(type*96+slot) for a day (b'' when all zero)."""
    diffs: dict[int, list[int]] = {}
    for spot, mask in state.masks.items():
        diff = diffs.get(type_of[spot])
        if diff is None:
            diff = diffs[type_of[spot]] = [0] * (SLOTS_PER_DAY + 1)
        # Walk the runs of set bits (a handful per spot), not the 96 bits, so rows that
        # overlap on one spot (a reservation and a session) still count each slot once.
        while mask:
            hi = mask.bit_length()
            lo = (~mask & ((1 << hi) - 1)).bit_length()
            diff[SLOTS_PER_DAY - hi] += 1
            diff[SLOTS_PER_DAY - lo] -= 1
            mask &= (1 << lo) - 1
    if not diffs:
        return b""
    out = bytearray(len(SPOT_TYPES) * SLOTS_PER_DAY * 2)
    for ti, diff in diffs.items():
        run = 0
        for t in range(SLOTS_PER_DAY):
            run += diff[t]
            if run:
                off = (ti * SLOTS_PER_DAY + t) * 2
                out[off : off + 2] = run.to_bytes(2, "big")
    return bytes(out.rstrip(b"\0"))


def spot_day_bytes(mask: int) -> bytes:
    """The 12 bytes of one spot's day."""
    return mask.to_bytes(BYTES_PER_SPOT_DAY, "big")
