"""The lot index on hand-made rows (no database): its exact distances are great_circle_m's, bit for bit."""

from __future__ import annotations

import random
import uuid

import pytest

from geo.distance import great_circle_m
from geo.h3cells import cell
from geo.lotindex import LotSnapshot


def snapshot(points: list[tuple[float, float]]) -> LotSnapshot:
    rows = [{"id": uuid.UUID(int=i + 1), "name": f"L{i}", "lat": lat, "lng": lng, "h3_r9": cell(lat, lng, 9),
             "amenities": [], "booking_horizon_days": 30, "ev_overflow": False, "spots_in_service": [0, 0, 5, 0, 0, 0]}
            for i, (lat, lng) in enumerate(points)]
    return LotSnapshot.build(1, rows, {})  # type: ignore[arg-type]  # dicts read like asyncpg Records here


@pytest.mark.parametrize(("lat", "lng"), [(48.8566, 2.3522), (-33.86, 151.21), (0.0, 179.999), (89.9, 10.0)])
def test_exact_distances_are_great_circle_m_to_the_last_bit(lat: float, lng: float) -> None:
    rng = random.Random(7)
    points = [(max(-90.0, min(90.0, lat + rng.uniform(-0.02, 0.02))), ((lng + rng.uniform(-0.03, 0.03) + 180) % 360)
               - 180) for _ in range(300)]
    hits = snapshot(points).nearest(lat=lat, lng=lng, radius_m=5000, vehicle_type=None, amenities=0, horizon_days=1,
                                    after=(-1.0, uuid.UUID(int=0)), need=300)
    assert len(hits) > 50
    for hit in hits:
        assert hit.distance_m == great_circle_m(lat, lng, hit.lat, hit.lng)
    assert [h.distance_m for h in hits] == sorted(h.distance_m for h in hits)
