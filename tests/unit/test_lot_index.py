"""The lot index on hand-made rows (no database): great-circle distances to the micrometre, the keyset order
(distance, then id) through ties, pages that neither repeat nor skip, and filters, against a brute-force scan."""

from __future__ import annotations

import random
import uuid

import pytest

from geo.distance import great_circle_m
from geo.lotindex import TIE_DECIMALS, LotSnapshot

START = (-1.0, uuid.UUID(int=0))


def snapshot(points: list[tuple[float, float]], ids: list[uuid.UUID] | None = None,
             spots: list[list[int]] | None = None) -> LotSnapshot:
    ids = ids or [uuid.UUID(int=i + 1) for i in range(len(points))]
    spots = spots or [[0, 0, 5, 0, 0, 0]] * len(points)
    rows = [{"id": lot_id, "name": f"L{i}", "lat": lat, "lng": lng, "amenities": [],
             "booking_horizon_days": 30, "ev_overflow": False, "spots_in_service": in_service}
            for i, ((lat, lng), lot_id, in_service) in enumerate(zip(points, ids, spots, strict=True))]
    return LotSnapshot.build(1, rows, {})  # type: ignore[arg-type]  # dicts read like asyncpg Records here


def scatter(lat: float, lng: float, n: int, seed: int = 7) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [(max(-90.0, min(90.0, lat + rng.uniform(-0.02, 0.02))), ((lng + rng.uniform(-0.03, 0.03) + 180) % 360)
             - 180) for _ in range(n)]


@pytest.mark.parametrize(("lat", "lng"), [(48.8566, 2.3522), (-33.86, 151.21), (0.0, 179.999), (89.9, 10.0),
                                          (-89.999, -120.0)])
def test_distances_are_great_circle_m_to_the_micrometre(lat: float, lng: float) -> None:
    points = scatter(lat, lng, 300)
    hits = snapshot(points).nearest(lat=lat, lng=lng, radius_m=5000, vehicle_type=None, amenities=0, horizon_days=1,
                                    after=START, need=300)
    inside = sorted(great_circle_m(lat, lng, a, b) for a, b in points if great_circle_m(lat, lng, a, b) <= 5000)
    assert len(hits) == len(inside) > 50
    for hit, expected in zip(hits, inside, strict=True):
        assert hit.distance_m == pytest.approx(great_circle_m(lat, lng, hit.lat, hit.lng), abs=1e-6)
        assert hit.distance_m == pytest.approx(expected, abs=1e-6)


def test_brute_force_order_with_filters_and_growing_rings() -> None:
    rng = random.Random(3)
    points = scatter(37.78, -122.42, 2000, seed=11)
    ids = [uuid.UUID(int=rng.getrandbits(128)) for _ in points]
    spots = [[0, 0, rng.choice([0, 0, 3]), 0, rng.choice([0, 2]), 0] for _ in points]  # regular, ev
    snap = snapshot(points, ids, spots)
    for _ in range(30):
        lat, lng = 37.78 + rng.uniform(-0.01, 0.01), -122.42 + rng.uniform(-0.01, 0.01)
        radius, need = rng.choice([150.0, 800.0, 2500.0]), rng.choice([1, 5, 21, 60])
        hits = snap.nearest(lat=lat, lng=lng, radius_m=radius, vehicle_type="regular", amenities=0, horizon_days=1,
                            after=START, need=need)
        wanted = sorted((great_circle_m(lat, lng, a, b), lot_id) for (a, b), lot_id, s in zip(points, ids, spots,
                                                                                              strict=True)
                        if s[2] > 0 and great_circle_m(lat, lng, a, b) <= radius)[:need]
        assert [h.id for h in hits] == [lot_id for _, lot_id in wanted]


def test_ties_are_ordered_by_id_and_pages_neither_repeat_nor_skip() -> None:
    # lots at one point (equal distances) and a pair mirrored north and south of the origin, whose distances are
    # equal to the micrometre but may differ in their last bits: the order among them is by id (all 128 bits)
    ids = [uuid.UUID(int=(hi << 64) | lo) for hi, lo in [(5, 1), (1, 9), (5, 0), (1, 2), (0, 7), (2**63, 1), (3, 3)]]
    points = [(52.5, 13.4)] * 5 + [(52.501, 13.41), (52.499, 13.41)]
    snap = snapshot(points, ids)
    origin = {"lat": 52.5, "lng": 13.41, "radius_m": 2000.0, "vehicle_type": None, "amenities": 0, "horizon_days": 1}
    whole = snap.nearest(**origin, after=START, need=10)  # type: ignore[arg-type]
    assert [h.id for h in whole[:2]] == sorted(ids[5:])
    assert [h.id for h in whole[2:]] == sorted(ids[:5])
    assert round(whole[0].distance_m, TIE_DECIMALS) == round(whole[1].distance_m, TIE_DECIMALS)
    paged, after = [], START
    while True:
        page = snap.nearest(**origin, after=after, need=2)  # type: ignore[arg-type]
        if not page:
            break
        paged += page
        after = (page[-1].sort_key, page[-1].id)
    assert [h.id for h in paged] == [h.id for h in whole]
