"""Compute a lot's exact slot bitmaps and counters from occupancy read from PostgreSQL.

Pure CPU work, no I/O: the rebuild and repair paths feed its output to Lua scripts.
A rebuild may see millions of occupancy rows, so the lot is built with numpy, whole arrays at a
time: one boolean per spot and slot of the horizon, set for every slot a row covers (rows that
overlap on a spot still mark each slot once), then packed to bits and summed per spot type.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from booking.slots import BYTES_PER_SPOT_DAY, SLOT_SECONDS, SLOTS_PER_DAY, SPOT_TYPES

_FULL = (1 << SLOTS_PER_DAY) - 1
Ints = npt.NDArray[np.int64]


def slot_mask(first: int, last: int) -> int:
    """96-bit mask of slots [first, last): slot 0 is the most significant bit, as in Redis."""
    return (_FULL >> first) & ~(_FULL >> last)


def spot_day_bytes(mask: int) -> bytes:
    """The 12 bytes of one spot's day."""
    return mask.to_bytes(BYTES_PER_SPOT_DAY, "big")


@dataclass(frozen=True)
class Occupancy:
    """What occupies a lot's spots: row i takes spot[i] for absolute slots [first[i], last[i])."""

    spot: Ints
    first: Ints
    last: Ints

    @classmethod
    def from_windows(cls, rows: Iterable[tuple[int, datetime, datetime]]) -> Occupancy:
        """From (spot idx, start, end) rows; start floored and end ceiled to whole slots."""
        rows = list(rows)
        return cls(np.array([spot for spot, _, _ in rows], np.int64),
                   np.array([int(start.timestamp()) // SLOT_SECONDS for _, start, _ in rows], np.int64),
                   np.array([-int(-end.timestamp() // SLOT_SECONDS) for _, _, end in rows], np.int64))

    def __add__(self, other: Occupancy) -> Occupancy:
        return Occupancy(np.concatenate([self.spot, other.spot]), np.concatenate([self.first, other.first]),
                         np.concatenate([self.last, other.last]))


@dataclass(frozen=True, slots=True)
class DayImage:
    """Desired Redis values of one lot-day (b'' when nothing is occupied: the key is deleted)."""

    bitmap: bytes  # 12 bytes per spot, trailing free spots trimmed
    counters: bytes  # BITFIELD u16 #(type*96+slot), trailing zero bytes trimmed


def day_images(occupancy: Occupancy, type_of: Sequence[int], days: Iterable[int], *,
               max_cells: int = 1 << 24) -> dict[int, DayImage]:
    """Bitmap and counters of each of the given absolute days, computed from the occupancy.

    Works on runs of consecutive days of at most `max_cells` spot-slots at a time (16 MB of
    booleans by default), so a huge lot costs bounded memory."""
    n = len(type_of)
    if len(occupancy.spot) and (occupancy.spot.min() < 0 or occupancy.spot.max() >= n):
        raise ValueError(f"occupancy names a spot outside 0..{n - 1}")
    wanted = sorted(set(days))
    if not wanted:
        return {}
    run = max(1, max_cells // (max(n, 1) * SLOTS_PER_DAY))
    types = np.asarray(type_of, np.int64)
    out: dict[int, DayImage] = {}
    for base in range(wanted[0], wanted[-1] + 1, run):
        chunk = [d for d in wanted if base <= d < base + run]
        if chunk:
            out |= _run_images(occupancy, types, base, chunk[-1] - base + 1, chunk)
    return out


def _run_images(occupancy: Occupancy, types: Ints, base: int, n_days: int, days: list[int]) -> dict[int, DayImage]:
    """day_images of `days`, all within the n_days consecutive days from absolute day `base`."""
    width = n_days * SLOTS_PER_DAY
    first = np.clip(occupancy.first - base * SLOTS_PER_DAY, 0, width)
    last = np.clip(occupancy.last - base * SLOTS_PER_DAY, 0, width)
    inside = first < last
    # Spot s owns cells [s * width, (s + 1) * width) of one flat array; mark every cell each row covers.
    start = occupancy.spot[inside] * width + first[inside]
    length = last[inside] - first[inside]
    cells = np.repeat(start - (np.cumsum(length) - length), length) + np.arange(length.sum())
    busy = np.zeros((len(types), n_days, SLOTS_PER_DAY), np.bool_)  # spot, day, slot
    busy.reshape(-1)[cells] = True
    bitmaps = np.packbits(busy.transpose(1, 0, 2), axis=-1)  # day, spot, 12 bytes (slot 0 in the MSB)
    counts = np.zeros((n_days, len(SPOT_TYPES), SLOTS_PER_DAY), ">u2")  # day, type, slot
    for t in np.unique(types):
        counts[:, t, :] = busy[types == t].sum(axis=0, dtype=np.uint16)  # load_lot caps a type at 65535
    out: dict[int, DayImage] = {}
    for d in days:
        bitmap = bitmaps[d - base].tobytes().rstrip(b"\0")
        spots_used = -(-len(bitmap) // BYTES_PER_SPOT_DAY)
        out[d] = DayImage(bitmap.ljust(spots_used * BYTES_PER_SPOT_DAY, b"\0"),
                          counts[d - base].tobytes().rstrip(b"\0"))
    return out
