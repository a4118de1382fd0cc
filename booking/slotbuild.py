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
    TYPE_INDEX,
    SpotInfo,
    abs_ranges,
)

_FULL = (1 << SLOTS_PER_DAY) - 1


def slot_mask(first: int, last: int) -> int:
    """96-bit mask of slots [first, last): slot 0 is the most significant bit, as in Redis."""
    return (_FULL >> first) & ~(_FULL >> last)


@dataclass(slots=True)
class DayState:
    """Desired state of one lot-day: a mask per occupied spot and per-type booked counters."""

    masks: dict[int, int] = field(default_factory=dict)
    # Difference arrays per type index; exact only while no spot has overlapping rows.
    diffs: dict[int, list[int]] = field(default_factory=dict)
    slots_added: int = 0


def occupancy_by_day(
    spots: Sequence[SpotInfo],
    occupancy: Iterable[tuple[int, datetime, datetime]],
    days: Iterable[int],
) -> dict[int, DayState]:
    """Group (spot_idx, start, end) rows into per-day desired states, for the given abs days only."""
    wanted = set(days)
    states: dict[int, DayState] = {d: DayState() for d in wanted}
    type_of = [TYPE_INDEX[s.type] for s in sorted(spots, key=lambda s: s.idx)]
    n = len(type_of)
    for spot, start, end in occupancy:
        if not 0 <= spot < n:
            raise ValueError(f"occupancy names spot {spot}, lot has {n}")
        first = int(start.timestamp()) // SLOT_SECONDS
        last = -int(-end.timestamp() // SLOT_SECONDS)
        ti = type_of[spot]
        for day, a, b in abs_ranges(first, last):
            state = states.get(day)
            if state is None:
                continue
            state.masks[spot] = state.masks.get(spot, 0) | slot_mask(a, b)
            diff = state.diffs.get(ti)
            if diff is None:
                diff = state.diffs[ti] = [0] * (SLOTS_PER_DAY + 1)
            diff[a] += 1
            diff[b] -= 1
            state.slots_added += b - a
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
    counts: dict[int, list[int]] = {}
    if sum(m.bit_count() for m in state.masks.values()) == state.slots_added:
        # No spot had overlapping rows, so the difference arrays count each bit once.
        for ti, diff in state.diffs.items():
            run, row = 0, []
            for t in range(SLOTS_PER_DAY):
                run += diff[t]
                row.append(run)
            counts[ti] = row
    else:
        # Overlapping rows for a spot (e.g. a reservation and a session): count bits instead.
        for spot, mask in state.masks.items():
            row = counts.setdefault(type_of[spot], [0] * SLOTS_PER_DAY)
            for t in range(SLOTS_PER_DAY):
                if mask >> (SLOTS_PER_DAY - 1 - t) & 1:
                    row[t] += 1
    if not any(any(row) for row in counts.values()):
        return b""
    out = bytearray(len(SPOT_TYPES) * SLOTS_PER_DAY * 2)
    for ti, row in counts.items():
        for t, value in enumerate(row):
            if value:
                off = (ti * SLOTS_PER_DAY + t) * 2
                out[off : off + 2] = value.to_bytes(2, "big")
    return bytes(out.rstrip(b"\0"))


def spot_day_bytes(mask: int) -> bytes:
    """The 12 bytes of one spot's day."""
    return mask.to_bytes(BYTES_PER_SPOT_DAY, "big")
