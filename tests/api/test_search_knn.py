"""The KNN search path and the in-process index (the default): ties at page, chunk and ring edges, poles,
filters that thin the scan."""

from __future__ import annotations

import httpx
import pytest

from core.context import AppContext
from geo import lotindex
from geo import search as geo_search
from geo.search import great_circle_m
from tests.api.test_search import ORIGIN, add, clock, offset, search  # noqa: F401  (clock: the shared fixture)


async def test_knn_matches_the_baselines_with_ties_and_filters(client: httpx.AsyncClient, ctx: AppContext,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(geo_search, "KNN_MIN_SCAN", 2)  # force several chunks, ties across chunk edges
    monkeypatch.setattr(lotindex, "FIRST_COVER_M", 30.0)  # and several rings for the index
    for i in range(12):
        # three lots at each distance, every other ring with the amenity searched for
        for j in range(3):
            await add(ctx, f"T{i}-{j}", *offset(*ORIGIN, north_m=40.0 * (i + 1) * (1 if j == 0 else -1),
                                                 east_m=0.0 if j < 2 else 40.0 * (i + 1)),
                      amenities=["covered"] if i % 2 else [])
    for params in ({}, {"amenities": "covered"}, {"radius_m": 250}):
        pages: dict[str, list[tuple[str, float]]] = {}
        for prefilter in ("index", "knn", "st_dwithin", "h3"):
            items, cursor = [], None
            for _ in range(40):
                res = await search(client, lat=ORIGIN[0], lng=ORIGIN[1], limit=2, prefilter=prefilter,
                                   **{"radius_m": 1000, **params}, **({"cursor": cursor} if cursor else {}))
                assert res.status_code == 200, res.text
                body = res.json()
                items += [(i["lot"]["id"], i["distance_m"]) for i in body["items"]]
                cursor = body["next_cursor"]
                if cursor is None:
                    break
            assert len(items) == len({i for i, _ in items})
            pages[prefilter] = items
        assert pages["knn"] == pages["st_dwithin"] == pages["h3"], params
        # The index breaks ties by id at a micrometre; PostGIS's `<->` differs from the exact distance in the last
        # bits (40 m north and 40 m south are not equal there), so ties may come in another order, nothing else.
        index = pages["index"]
        assert sorted(index) == sorted(pages["knn"]), params
        assert [d for _, d in index] == [d for _, d in pages["knn"]], params
        assert index == sorted(index, key=lambda item: (item[1], item[0])), params


@pytest.mark.parametrize("prefilter", ["knn", "index"])
async def test_far_from_every_lot_is_empty(client: httpx.AsyncClient, ctx: AppContext, prefilter: str) -> None:
    await add(ctx, "far", *offset(*ORIGIN, north_m=4000))
    res = await search(client, lat=ORIGIN[0], lng=ORIGIN[1], radius_m=1000, prefilter=prefilter)
    assert res.status_code == 200 and res.json()["items"] == [] and res.json()["next_cursor"] is None


@pytest.mark.parametrize(("lat", "lng", "others"), [
    (0.0, 179.999, [(0.0, -179.999), (0.003, 179.995), (0.0, -179.98)]),
    (89.999, 0.0, [(89.999, 180.0), (90.0, 0.0), (89.995, 90.0)]),
    (-90.0, 0.0, [(-89.998, 45.0), (-89.997, -135.0)]),
])
async def test_knn_antimeridian_and_poles(client: httpx.AsyncClient, ctx: AppContext, lat: float, lng: float,
                                          others: list[tuple[float, float]]) -> None:
    for i, (a, b) in enumerate(others):
        await add(ctx, f"P{i}", a, b, timezone="UTC")
    expected = sorted((great_circle_m(lat, lng, a, b), f"P{i}") for i, (a, b) in enumerate(others))
    for prefilter in ("knn", "index"):
        res = await search(client, lat=lat, lng=lng, radius_m=2000, prefilter=prefilter)
        assert res.status_code == 200, res.text
        assert [i["lot"]["name"] for i in res.json()["items"]] == [name for d, name in expected if d <= 2000]
