"""Pure slot arithmetic: widening, day splitting, validation, compatibility and candidate order."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from booking import slotbuild
from booking.slots import (
    SlotRange,
    SpotInfo,
    candidate_order,
    compatible_types,
    pack_candidates,
    slot_ranges,
    unpack_candidates,
    validate_spots,
    widen,
)
from core.errors import ValidationFailed


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_widen_floors_start_and_ceils_end() -> None:
    assert widen(utc(2030, 1, 7, 8, 7), utc(2030, 1, 7, 9, 1)) == (utc(2030, 1, 7, 8, 0), utc(2030, 1, 7, 9, 15))


def test_widen_keeps_aligned_window_and_converts_offsets_to_utc() -> None:
    cet = timezone(timedelta(hours=1))
    start, end = widen(datetime(2030, 1, 7, 9, 0, tzinfo=cet), datetime(2030, 1, 7, 9, 30, tzinfo=cet))
    assert (start, end) == (utc(2030, 1, 7, 8, 0), utc(2030, 1, 7, 8, 30))
    assert start.tzinfo == UTC


def test_widen_sub_slot_window_becomes_one_slot() -> None:
    assert widen(utc(2030, 1, 7, 8, 1), utc(2030, 1, 7, 8, 2)) == (utc(2030, 1, 7, 8, 0), utc(2030, 1, 7, 8, 15))


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (utc(2030, 1, 7, 9), utc(2030, 1, 7, 9)),  # empty
        (utc(2030, 1, 7, 9), utc(2030, 1, 7, 8)),  # reversed
        (utc(2030, 1, 1), utc(2030, 1, 8, 0, 1)),  # longer than 7 days
        (datetime(2030, 1, 7, 8), utc(2030, 1, 7, 9)),  # naive
    ],
)
def test_widen_rejects_bad_windows(start: datetime, end: datetime) -> None:
    with pytest.raises(ValidationFailed) as err:
        widen(start, end)
    assert err.value.status == 422 and err.value.loc


def test_max_span_is_configurable() -> None:
    widen(utc(2030, 1, 1), utc(2030, 1, 20), max_span=timedelta(days=30))
    with pytest.raises(ValidationFailed):
        widen(utc(2030, 1, 1), utc(2030, 1, 1, 3), max_span=timedelta(hours=2))


def test_slot_ranges_within_a_day() -> None:
    assert slot_ranges(utc(2030, 1, 7, 8, 0), utc(2030, 1, 7, 9, 15)) == [SlotRange(date(2030, 1, 7), 32, 37)]


def test_slot_ranges_across_midnight() -> None:
    assert slot_ranges(utc(2030, 1, 7, 23, 0), utc(2030, 1, 8, 1, 0)) == [
        SlotRange(date(2030, 1, 7), 92, 96),
        SlotRange(date(2030, 1, 8), 0, 4),
    ]


def test_slot_ranges_ending_exactly_at_midnight_touches_one_day() -> None:
    assert slot_ranges(utc(2030, 1, 7, 22, 0), utc(2030, 1, 8)) == [SlotRange(date(2030, 1, 7), 88, 96)]


def test_slot_ranges_multi_day() -> None:
    ranges = slot_ranges(utc(2030, 1, 7, 12), utc(2030, 1, 10, 6))
    assert ranges == [
        SlotRange(date(2030, 1, 7), 48, 96),
        SlotRange(date(2030, 1, 8), 0, 96),
        SlotRange(date(2030, 1, 9), 0, 96),
        SlotRange(date(2030, 1, 10), 0, 24),
    ]


@given(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)),
    st.integers(min_value=1, max_value=7 * 24 * 60),
)
def test_slot_ranges_cover_the_widened_window_exactly(start: datetime, minutes: int) -> None:
    end = start + timedelta(minutes=minutes)
    w_start, w_end = widen(start, end)
    assert w_start <= start < end <= w_end and w_end - w_start < end - start + timedelta(minutes=30)
    ranges = slot_ranges(start, end)
    assert sum(r.last - r.first for r in ranges) * 15 == (w_end - w_start).total_seconds() / 60
    assert all(0 <= r.first < r.last <= 96 for r in ranges)
    assert [r.day for r in ranges] == sorted({r.day for r in ranges})


def test_compatibility_smallest_fitting_type_first() -> None:
    assert compatible_types("motorcycle") == ("motorcycle", "compact", "regular", "large")
    assert compatible_types("compact") == ("compact", "regular", "large")
    assert compatible_types("large") == ("large",)
    assert compatible_types("regular", ev_overflow=True) == ("regular", "large", "ev")
    assert compatible_types("large", ev_overflow=True) == ("large",)
    assert compatible_types("ev") == ("ev", "regular", "large")
    assert compatible_types("handicap") == ("handicap", "regular", "large")
    for vt in ("motorcycle", "compact", "regular", "large", "ev"):
        assert "handicap" not in compatible_types(vt, ev_overflow=True)
    with pytest.raises(ValidationFailed):
        compatible_types("truck")


def test_candidate_order_nearest_entrance_and_spread_levels() -> None:
    spots = [SpotInfo(i, "regular", level=i // 3, rank=[5, 1, 3, 2, 0, 4][i]) for i in range(6)]
    nearest = candidate_order(spots, "regular", strategy="nearest_entrance", ev_overflow=False)
    assert [s.idx for s in nearest] == [4, 1, 3, 2, 5, 0]
    spread = candidate_order(spots, "regular", strategy="spread_levels", ev_overflow=False)
    assert [s.level for s in spread] == [0, 1, 0, 1, 0, 1]
    assert [s.idx for s in spread] == [1, 4, 2, 3, 0, 5]


def test_candidates_pack_round_trip() -> None:
    spots = [SpotInfo(70_000, "ev"), SpotInfo(3, "motorcycle")]
    assert unpack_candidates(pack_candidates(spots)) == [(70_000, 4), (3, 0)]


def test_validate_spots_requires_dense_indices() -> None:
    with pytest.raises(ValidationFailed):
        validate_spots([SpotInfo(0, "regular"), SpotInfo(2, "regular")])
    with pytest.raises(ValidationFailed):
        validate_spots([SpotInfo(0, "bus")])


def test_slot_mask_msb_first() -> None:
    assert slotbuild.slot_mask(0, 1) == 1 << 95
    assert slotbuild.slot_mask(95, 96) == 1
    assert slotbuild.spot_day_bytes(slotbuild.slot_mask(0, 8)) == b"\xff" + b"\0" * 11


def test_day_counters_count_overlapping_rows_once() -> None:
    day = utc(2030, 1, 7)
    rows = [(0, day, day + timedelta(hours=1)), (0, day + timedelta(minutes=30), day + timedelta(hours=2)),
            (1, day, day + timedelta(minutes=15))]
    images = slotbuild.day_images(slotbuild.Occupancy.from_windows(rows), [2, 1], [slotbuild_abs_day(day)])
    blob = images[slotbuild_abs_day(day)].counters.ljust(6 * 96 * 2, b"\0")
    regular = [int.from_bytes(blob[(2 * 96 + t) * 2 : (2 * 96 + t) * 2 + 2], "big") for t in range(96)]
    compact = [int.from_bytes(blob[(1 * 96 + t) * 2 : (1 * 96 + t) * 2 + 2], "big") for t in range(96)]
    assert regular == [1] * 8 + [0] * 88
    assert compact == [1] + [0] * 95


def slotbuild_abs_day(value: datetime) -> int:
    return (value.date() - date(1970, 1, 1)).days


def _reference_images(rows: list[tuple[int, int, int]], type_of: list[int], days: list[int]
                      ) -> dict[int, tuple[bytes, bytes]]:
    """day_images the slow, obvious way: a set of (spot, abs slot) cells, then bit by bit."""
    cells = {(spot, t) for spot, first, last in rows for t in range(first, last)}
    out = {}
    for d in days:
        bits = bytearray(len(type_of) * 12)
        counts = [[0] * 96 for _ in range(6)]
        for spot, t in cells:
            if d * 96 <= t < (d + 1) * 96:
                slot = t - d * 96
                bits[spot * 12 + slot // 8] |= 0x80 >> (slot % 8)
                counts[type_of[spot]][slot] += 1
        used = len(bytes(bits).rstrip(b"\0"))
        out[d] = (bytes(bits[: -(-used // 12) * 12]),
                  b"".join(c.to_bytes(2, "big") for row in counts for c in row).rstrip(b"\0"))
    return out


@given(n_spots=st.integers(1, 6), first_day=st.integers(20_000, 20_010), n_days=st.integers(1, 4),
       max_cells=st.sampled_from([1, 1000, 1 << 24]), data=st.data())
def test_day_images_match_a_bit_by_bit_reference(n_spots: int, first_day: int, n_days: int, max_cells: int,
                                                 data: st.DataObject) -> None:
    """Overlapping rows, rows across midnight, rows partly or wholly outside the days asked for;
    built a day at a time, a few days or all at once."""
    type_of = data.draw(st.lists(st.integers(0, 5), min_size=n_spots, max_size=n_spots))
    days = sorted(data.draw(st.sets(st.integers(first_day, first_day + n_days), min_size=1)))
    lo, hi = (first_day - 1) * 96, (first_day + n_days + 2) * 96
    rows = data.draw(st.lists(st.tuples(st.integers(0, n_spots - 1), st.integers(lo, hi), st.integers(1, 300))
                              .map(lambda r: (r[0], r[1], r[1] + r[2])), max_size=30))
    spot, first, last = np.array(rows, np.int64).reshape(-1, 3).T
    got = slotbuild.day_images(slotbuild.Occupancy(spot, first, last), type_of, days, max_cells=max_cells)
    assert {d: (image.bitmap, image.counters) for d, image in got.items()} == _reference_images(rows, type_of, days)


def test_day_images_refuse_a_spot_the_lot_does_not_have() -> None:
    day = utc(2030, 1, 7)
    with pytest.raises(ValueError, match="spot"):
        slotbuild.day_images(slotbuild.Occupancy.from_windows([(2, day, day + timedelta(hours=1))]), [2, 2],
                             [slotbuild_abs_day(day)])
