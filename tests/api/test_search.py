"""Search over HTTP: distances, filters, GeoJSON, bad input, pagination while lots are added, poles and antimeridian."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from shapely.geometry import shape
from sqlalchemy import text

from api.routers import search as search_router
from core.clock import ManualClock
from core.context import AppContext
from geo.search import great_circle_m
from tests.factories import insert_lot

NOW = datetime(2025, 1, 6, 16, 0, tzinfo=UTC)
ORIGIN = (48.8566, 2.3522)  # Paris, Hôtel de Ville


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


def offset(lat: float, lng: float, *, north_m: float = 0.0, east_m: float = 0.0) -> tuple[float, float]:
    r = 6_371_008.7714
    return lat + math.degrees(north_m / r), lng + math.degrees(east_m / (r * math.cos(math.radians(lat))))


async def add(ctx: AppContext, name: str, lat: float, lng: float, **kw: Any) -> uuid.UUID:
    async with ctx.engine.begin() as conn:
        return await insert_lot(conn, name=name, lat=lat, lng=lng, **kw)


async def search(client: httpx.AsyncClient, *, prefilter: str | None = None, **params: Any) -> httpx.Response:
    """A search; `prefilter` names a SQL baseline to run instead of the index: not a public parameter, the test
    patches the route's module for the one request."""
    if prefilter is None:
        return await client.get("/api/v1/lots/search", params=params)
    saved = search_router.PREFILTER
    search_router.PREFILTER = prefilter  # type: ignore[assignment]
    try:
        return await client.get("/api/v1/lots/search", params=params)
    finally:
        search_router.PREFILTER = saved


async def test_nearest_first_with_great_circle_distances(client: httpx.AsyncClient, ctx: AppContext) -> None:
    placed = {"A": 120.0, "B": 480.0, "C": 950.0, "D": 1400.0}
    for name, metres in placed.items():
        await add(ctx, name, *offset(*ORIGIN, north_m=metres * 0.6, east_m=metres * 0.8))
    res = await search(client, lat=ORIGIN[0], lng=ORIGIN[1], radius_m=1000)
    assert res.status_code == 200, res.text
    items = res.json()["items"]
    assert [i["lot"]["name"] for i in items] == ["A", "B", "C"]
    for item in items:
        loc = item["lot"]["location"]
        expected = great_circle_m(ORIGIN[0], ORIGIN[1], loc["lat"], loc["lng"])
        assert item["distance_m"] == pytest.approx(expected, abs=0.05)
        assert item["distance_m"] == pytest.approx(placed[item["lot"]["name"]], rel=2e-3)
        assert item["available"] == item["capacity"] == 10 and item["quote"] is None
        assert item["freshness"] == {"source": "database", "as_of": "2025-01-06T16:00:00Z"}
    # the prefilters agree
    for prefilter in ("knn", "st_dwithin"):
        other = (await search(client, lat=ORIGIN[0], lng=ORIGIN[1], radius_m=1000, prefilter=prefilter)).json()
        assert other["items"] == items, prefilter
    wide = (await search(client, lat=ORIGIN[0], lng=ORIGIN[1], radius_m=5000)).json()
    assert [i["lot"]["name"] for i in wide["items"]] == ["A", "B", "C", "D"]


async def test_filters_vehicle_type_amenities_window_and_closed(client: httpx.AsyncClient, ctx: AppContext) -> None:
    moto = await add(ctx, "moto", *offset(*ORIGIN, north_m=100), spots={"motorcycle": 4})
    await add(ctx, "ev", *offset(*ORIGIN, north_m=200), spots={"ev": 3, "compact": 2}, amenities=["ev_charging"])
    await add(ctx, "overflow", *offset(*ORIGIN, north_m=300), spots={"ev": 5}, ev_overflow=True)
    await add(ctx, "big", *offset(*ORIGIN, north_m=400), spots={"large": 2, "handicap": 1}, amenities=["covered"])
    await add(ctx, "closed", *offset(*ORIGIN, north_m=500), status="closed")
    await add(ctx, "short-horizon", *offset(*ORIGIN, north_m=600), booking_horizon_days=2)

    async def names(**kw: Any) -> dict[str, tuple[int, int]]:
        res = await search(client, lat=ORIGIN[0], lng=ORIGIN[1], radius_m=2000, **kw)
        assert res.status_code == 200, res.text
        return {i["lot"]["name"]: (i["available"], i["capacity"]) for i in res.json()["items"]}

    assert set(await names()) == {"moto", "ev", "overflow", "big", "short-horizon"}
    assert await names(vehicle_type="motorcycle") == {"moto": (4, 4), "ev": (2, 2), "overflow": (5, 5),
                                                      "big": (2, 2), "short-horizon": (10, 10)}
    assert await names(vehicle_type="large") == {"big": (2, 2)}
    assert await names(vehicle_type="ev") == {"ev": (3, 3), "overflow": (5, 5), "big": (2, 2),
                                              "short-horizon": (10, 10)}
    assert await names(vehicle_type="handicap") == {"overflow": (5, 5), "big": (3, 3), "short-horizon": (10, 10)}
    assert set(await names(amenities="covered")) == {"big"}
    assert set(await names(amenities=["ev_charging", "covered"])) == set()
    later = (NOW + timedelta(days=5)).isoformat()
    assert "short-horizon" not in await names(starts_at=later, ends_at=(NOW + timedelta(days=5, hours=2)).isoformat())

    # an active reservation on the moto lot's spots reduces its count for overlapping windows only
    async with ctx.engine.begin() as conn:
        spot = await conn.scalar(text("SELECT id FROM spots WHERE lot_id = :l ORDER BY idx LIMIT 1"), {"l": moto})
        await conn.execute(text(
            "INSERT INTO reservations (lot_id, spot_id, vehicle_type, starts_at, ends_at, period, status)"
            " VALUES (:l, :s, 'motorcycle', :a, :b, tstzrange(:a, :b, '[)'), 'confirmed')"),
            {"l": moto, "s": spot, "a": NOW + timedelta(hours=1), "b": NOW + timedelta(hours=3)})
    assert (await names(vehicle_type="motorcycle"))["moto"] == (4, 4)  # default window [now, now+1h)
    during = {"starts_at": (NOW + timedelta(minutes=70)).isoformat(), "ends_at": (NOW + timedelta(hours=2)).isoformat()}
    assert (await names(vehicle_type="motorcycle", **during))["moto"] == (3, 4)


async def test_geojson_feature_collection(client: httpx.AsyncClient, ctx: AppContext) -> None:
    lot = await add(ctx, "Geo", *offset(*ORIGIN, east_m=250))
    res = await client.get("/api/v1/lots/search", params={"lat": ORIGIN[0], "lng": ORIGIN[1]},
                           headers={"Accept": "application/geo+json"})
    assert res.status_code == 200 and res.headers["content-type"].startswith("application/geo+json")
    fc = res.json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 1
    feature = fc["features"][0]
    assert feature["type"] == "Feature" and feature["id"] == str(lot)
    lng, lat = feature["geometry"]["coordinates"]  # RFC 7946: [longitude, latitude]
    assert feature["geometry"]["type"] == "Point" and (lat, lng) == pytest.approx(offset(*ORIGIN, east_m=250))
    assert shape(feature["geometry"]).is_valid
    props = feature["properties"]
    assert props["name"] == "Geo" and props["available"] == 10 and props["distance_m"] == pytest.approx(250, rel=1e-3)
    assert props["freshness"]["source"] == "database" and fc["next_cursor"] is None


BAD = [
    ({"lat": 91, "lng": 0}, "lat"),
    ({"lat": -90.5, "lng": 0}, "lat"),
    ({"lat": 0, "lng": 181}, "lng"),
    ({"lat": "nan", "lng": 0}, "lat"),
    ({"lat": "north", "lng": 0}, "lat"),
    ({"lng": 0}, "lat"),
    ({"lat": 0, "lng": 0, "radius_m": 0}, "radius_m"),
    ({"lat": 0, "lng": 0, "radius_m": -5}, "radius_m"),
    ({"lat": 0, "lng": 0, "radius_m": 5001}, "radius_m"),
    ({"lat": 0, "lng": 0, "starts_at": "2025-01-06T18:00:00Z", "ends_at": "2025-01-06T17:00:00Z"}, "ends_at"),
    ({"lat": 0, "lng": 0, "starts_at": "2025-01-06T18:00:00Z", "ends_at": "2025-01-06T18:00:00Z"}, "ends_at"),
    ({"lat": 0, "lng": 0, "starts_at": "2025-01-07T00:00:00Z", "ends_at": "2025-01-14T00:15:00Z"}, "ends_at"),
    ({"lat": 0, "lng": 0, "starts_at": "2026-03-01T00:00:00Z", "ends_at": "2026-03-01T02:00:00Z"}, "ends_at"),
    ({"lat": 0, "lng": 0, "starts_at": "2025-01-01T00:00:00Z", "ends_at": "2025-01-01T02:00:00Z"}, "ends_at"),
    ({"lat": 0, "lng": 0, "starts_at": "2025-01-06T18:00:00"}, "starts_at"),
    ({"lat": 0, "lng": 0, "starts_at": "tomorrow"}, "starts_at"),
    ({"lat": 0, "lng": 0, "vehicle_type": "tank"}, "vehicle_type"),
    ({"lat": 0, "lng": 0, "amenities": "covered,sauna"}, "amenities"),
    ({"lat": 0, "lng": 0, "max_price": -1}, "max_price"),
    ({"lat": 0, "lng": 0, "sort": "rating"}, "sort"),
    ({"lat": 0, "lng": 0, "limit": 0}, "limit"),
    ({"lat": 0, "lng": 0, "limit": 101}, "limit"),
    ({"lat": 0, "lng": 0, "cursor": "not-a-cursor"}, "cursor"),
    ({"lat": 0, "lng": 0, "cursor": "eyJ2IjoxfQ"}, "cursor"),  # {"v":1}
    ({"bbox": "1,2,3"}, "bbox"),
    ({"bbox": "a,b,c,d"}, "bbox"),
    ({"bbox": "2.3,48.9,2.4,48.8"}, "bbox"),
    ({"bbox": "2.3,48.8,2.4,91"}, "bbox"),
    ({"bbox": "-10,40,10,60"}, "bbox"),  # far too large
]


@pytest.mark.parametrize(("params", "field"), BAD, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD)])
async def test_bad_input_is_422_naming_the_field(client: httpx.AsyncClient, params: dict[str, Any],
                                                 field: str) -> None:
    res = await search(client, **params)
    assert res.status_code == 422, res.text
    assert res.headers["content-type"] == "application/problem+json"
    body = res.json()
    assert ["query", field] in [e["loc"] for e in body["errors"]], body


async def test_cursor_from_another_search_is_refused(client: httpx.AsyncClient, ctx: AppContext) -> None:
    for i in range(3):
        await add(ctx, f"L{i}", *offset(*ORIGIN, north_m=100 * (i + 1)))
    first = (await search(client, lat=ORIGIN[0], lng=ORIGIN[1], limit=1)).json()
    assert first["next_cursor"]
    res = await search(client, lat=ORIGIN[0], lng=ORIGIN[1], limit=1, vehicle_type="ev", cursor=first["next_cursor"])
    assert res.status_code == 422 and res.json()["errors"][0]["loc"] == ["query", "cursor"]


@pytest.mark.parametrize("prefilter", ["h3", "st_dwithin"])
async def test_pages_have_no_duplicates_or_gaps_while_lots_are_added(client: httpx.AsyncClient, ctx: AppContext,
                                                                     prefilter: str) -> None:
    original = {}
    for i in range(25):
        # pairs at the same distance exercise the id tie-break
        lot = await add(ctx, f"O{i}", *offset(*ORIGIN, north_m=30 * (i // 2 + 1) * (1 if i % 2 else -1)))
        original[lot] = f"O{i}"
    seen: list[str] = []
    added_far: set[str] = set()
    cursor = None
    params = {"lat": ORIGIN[0], "lng": ORIGIN[1], "radius_m": 3000, "limit": 4}
    for page_no in range(50):
        res = await search(client, prefilter=prefilter, **params, **({"cursor": cursor} if cursor else {}))
        assert res.status_code == 200, res.text
        body = res.json()
        seen += [i["lot"]["id"] for i in body["items"]]
        distances = [i["distance_m"] for i in body["items"]]
        assert distances == sorted(distances)
        # between pages: one lot nearer than anything left (before the cursor), one far beyond it
        near = await add(ctx, f"N{page_no}", *offset(*ORIGIN, east_m=5 + page_no))
        far = await add(ctx, f"F{page_no}", *offset(*ORIGIN, east_m=2000 + 10 * page_no))
        added_far.add(str(far))
        assert near
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "a lot appeared twice"
    assert {str(k) for k in original} <= set(seen), "a lot that existed from the start was skipped"
    assert set(seen) - {str(k) for k in original} <= added_far  # only lots beyond the cursor show up


@pytest.mark.parametrize(("lat", "lng", "others"), [
    (0.0, 179.999, [(0.0, -179.999), (0.003, 179.995), (0.0, -179.98)]),
    (0.0, -180.0, [(0.0, 179.998), (0.001, -179.999)]),
    (89.999, 0.0, [(89.999, 180.0), (90.0, 0.0), (89.995, 90.0)]),
    (-90.0, 0.0, [(-89.998, 45.0), (-89.997, -135.0)]),
])
async def test_antimeridian_and_poles(client: httpx.AsyncClient, ctx: AppContext, lat: float, lng: float,
                                      others: list[tuple[float, float]]) -> None:
    for i, (a, b) in enumerate(others):
        await add(ctx, f"P{i}", a, b, timezone="UTC")
    expected = sorted((great_circle_m(lat, lng, a, b), f"P{i}") for i, (a, b) in enumerate(others))
    within = [name for d, name in expected if d <= 2000]
    for prefilter in ("index", "h3", "st_dwithin"):
        res = await search(client, lat=lat, lng=lng, radius_m=2000, prefilter=prefilter)
        assert res.status_code == 200, res.text
        items = res.json()["items"]
        assert [i["lot"]["name"] for i in items] == within, prefilter
        for item, (d, _) in zip(items, expected, strict=False):
            assert item["distance_m"] == pytest.approx(d, abs=0.05)


async def test_bbox_search_including_across_the_antimeridian(client: httpx.AsyncClient, ctx: AppContext,
                                                             clock: ManualClock) -> None:
    await add(ctx, "west", -16.5, 179.95, timezone="Pacific/Fiji")
    await add(ctx, "east", -16.5, -179.95, timezone="Pacific/Fiji")
    await add(ctx, "outside", -16.5, 179.80, timezone="Pacific/Fiji")
    res = await search(client, bbox="179.93,-16.55,-179.93,-16.45")
    assert res.status_code == 200, res.text
    assert sorted(i["lot"]["name"] for i in res.json()["items"]) == ["east", "west"]
    await add(ctx, "paris", *offset(*ORIGIN, north_m=50))
    clock.advance(milliseconds=ctx.settings.search_index_refresh_ms)  # bbox search reads the lot index too
    res = await search(client, bbox="2.34,48.85,2.36,48.86")
    assert [i["lot"]["name"] for i in res.json()["items"]] == ["paris"]


async def test_h3_zones_heatmap(client: httpx.AsyncClient, ctx: AppContext) -> None:
    await add(ctx, "a", *offset(*ORIGIN, north_m=10), spots={"regular": 5})
    await add(ctx, "b", *offset(*ORIGIN, north_m=20), spots={"regular": 7, "ev": 1})
    await add(ctx, "c", *offset(*ORIGIN, north_m=3000), spots={"regular": 2})
    res = await client.get("/api/v1/zones/h3", params={"res": 7, "bbox": "2.30,48.83,2.40,48.90"})
    assert res.status_code == 200, res.text
    body = res.json()
    assert sum(c["lots"] for c in body["items"]) == 3 and sum(c["capacity"] for c in body["items"]) == 15
    assert all(c["available"] == c["capacity"] and c["res"] == 7 for c in body["items"])
    regular = (await client.get("/api/v1/zones/h3", params={"res": 5, "bbox": "2.30,48.83,2.40,48.90",
                                                            "vehicle_type": "large"})).json()
    assert regular["items"] == [] or all(c["capacity"] == 0 for c in regular["items"])
    for params, field in (({"res": 10, "bbox": "2.3,48.8,2.4,48.9"}, "res"), ({"res": 7, "bbox": "x"}, "bbox"),
                          ({"bbox": "2.3,48.8,2.4,48.9"}, "res")):
        res = await client.get("/api/v1/zones/h3", params=params)
        assert res.status_code == 422 and ["query", field] in [e["loc"] for e in res.json()["errors"]]
