"""Pure parts of the operators' dashboard: totals never turn unknown into a number; the lot's local day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controllers.dashboard import local_day, summarise_occupancy
from controllers.live import stream_id


def _group(spot_type: str, capacity: int, free: int | None, *, source: str = "sensor", stale: bool = False,
           as_of: datetime | None = None) -> dict[str, Any]:
    return {"spot_type": spot_type, "capacity": capacity, "free": free,
            "occupied": None if free is None else capacity - free, "unknown": capacity if free is None else 0,
            "stale": stale, "freshness": {"source": source, "as_of": as_of}}


def test_a_stale_group_makes_its_level_type_and_total_unknown_not_a_number() -> None:
    t0 = datetime(2030, 1, 7, 8, tzinfo=UTC)
    displays = {"levels": [
        {"level_id": "a", "name": "L0", "types": [_group("regular", 10, 4, source="database", as_of=t0),
                                                   _group("ev", 2, None, stale=True, as_of=t0 - timedelta(hours=1))]},
        {"level_id": "b", "name": "L1", "types": [_group("regular", 10, 10, as_of=t0)]},
    ]}
    occ = summarise_occupancy(displays)
    assert occ["total"]["free"] is None and occ["total"]["stale"] is True and occ["total"]["occupancy"] is None
    assert occ["total"]["capacity"] == 22 and occ["total"]["freshness"]["source"] == "mixed"
    assert occ["total"]["freshness"]["as_of"] == t0 - timedelta(hours=1)  # the oldest number decides
    by_level = {lv["name"]: lv for lv in occ["by_level"]}
    assert by_level["L0"]["free"] is None and by_level["L1"]["free"] == 10 and by_level["L1"]["occupancy"] == 0
    by_type = {t["spot_type"]: t for t in occ["by_type"]}
    assert by_type["regular"]["free"] == 14 and by_type["regular"]["occupied"] == 6 and by_type["ev"]["free"] is None


def test_the_local_day_follows_the_lots_zone_and_its_dst_changes() -> None:
    start, end = local_day(datetime(2030, 1, 8, 7, 30, tzinfo=UTC), "America/Los_Angeles")
    assert (start, end) == (datetime(2030, 1, 7, 8, tzinfo=UTC), datetime(2030, 1, 8, 8, tzinfo=UTC))
    spring = local_day(datetime(2030, 3, 10, 12, tzinfo=UTC), "America/Los_Angeles")
    assert spring[1] - spring[0] == timedelta(hours=23)
    autumn = local_day(datetime(2030, 11, 3, 12, tzinfo=UTC), "America/Los_Angeles")
    assert autumn[1] - autumn[0] == timedelta(hours=25)


def test_stream_ids_compare_as_numbers() -> None:
    assert stream_id("1796407057177-10") > stream_id("1796407057177-9") > stream_id("999-0")
    assert stream_id(b"5") == (5, 0)
    for bad in ("yesterday", "1-x", "-1", ""):
        with pytest.raises(ValueError):
            stream_id(bad)
