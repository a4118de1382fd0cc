"""Open data feeds against the real services: shapes checked by outside validators, counts that cannot be impossible,
caching (ETag / Last-Modified / 304, gzip), filters, and a gate entry or sensor change reaching every feed."""

from __future__ import annotations

import gzip
import json
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from geojson_pydantic import FeatureCollection
from jsonschema import Draft4Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
from sqlalchemy import text

from core.accounts import create_partner
from core.clock import ManualClock
from core.context import AppContext
from core.settings import Settings
from geo.feed_snapshot import feed_snapshots
from tests.api.test_gates_world import event, gate_lot, post_event
from tests.factories import device_key_for
from tests.integration.test_ratelimit import _assert_429, _limited, serve
from tests.open_data_world import City, build_city, get_json

DATEX_DIR = Path(__file__).resolve().parent.parent / "data" / "datex2_ppl"
FEEDS = ("/api/v1/open/lots", "/api/v1/open/parkapi", "/api/v1/open/datex2", "/api/v1/open/parkapi/v3/parking-sites")


def datex2_validator() -> Draft4Validator:
    """The public DATEX II v3 Parking Publication Light JSON Schema (tests/data/datex2_ppl/SOURCE.md)."""
    resources = []
    for path in DATEX_DIR.glob("DATEXII_3_*.json"):
        resources.append((path.name, Resource.from_contents(json.loads(path.read_text()), default_specification=DRAFT4)))
    registry: Registry = Registry().with_resources(resources)
    root = json.loads((DATEX_DIR / "DATEXII_3_D2Payload.json").read_text())
    return Draft4Validator(root, registry=registry, format_checker=FormatChecker())


@pytest.fixture
async def city(ctx: AppContext) -> City:
    return await build_city(ctx)


def _props(collection: dict[str, Any]) -> dict[uuid.UUID, dict[str, Any]]:
    return {uuid.UUID(f["id"]): f["properties"] for f in collection["features"]}


async def test_geojson_is_rfc7946_and_every_count_is_possible(client: httpx.AsyncClient, city: City) -> None:
    r = await client.get("/api/v1/open/lots", headers=city.headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    body = r.json()
    FeatureCollection.model_validate(body)  # geojson-pydantic: the RFC 7946 shapes
    props = _props(body)
    assert set(props) == city.published()  # the private car park is not published
    for p in props.values():
        assert p["status"] in {"open", "closed", "full", "unknown"}
        if p["available"] is not None:
            assert isinstance(p["available"], int) and 0 <= p["available"] <= p["capacity"]
            assert p["available"] == sum(p["available_by_type"].values())
        else:
            assert p["status"] in {"closed", "unknown"} and p["status_reason"]
        for t, n in p["available_by_type"].items():
            assert n is None or 0 <= n <= p["capacity_by_type"][t]
    gate, sensor, stale = props[city.gate], props[city.sensor], props[city.stale]
    assert (gate["available"], gate["capacity"], gate["status"]) == (10, 10, "open")
    assert gate["available_by_type"] == {"regular": 8, "handicap": 2} and gate["freshness"]["source"] == "gate"
    assert (sensor["available"], sensor["freshness"]["source"], sensor["freshness"]["stale"]) == (2, "sensor", False)
    assert (stale["available"], stale["status"], stale["freshness"]["stale"]) == (None, "unknown", True)
    assert (props[city.closed]["available"], props[city.closed]["status"]) == (None, "closed")
    assert "opening hours" in props[city.night]["status_reason"] and props[city.night]["available"] is None
    assert (props[city.blind]["available"], props[city.blind]["status"]) == (None, "unknown")
    listed = props[city.listed]
    assert (listed["capacity"], listed["available"], listed["bookable"]) == (None, None, False)
    assert listed["external_ids"] == {"osm": "node/4242"} and listed["status"] == "unknown"
    assert (props[city.full]["available"], props[city.full]["status"]) == (0, "full")


async def test_datex2_is_valid_against_the_public_ppl_schema(client: httpx.AsyncClient, city: City) -> None:
    body = await get_json(client, "/api/v1/open/datex2", city)
    validator = datex2_validator()
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    sites = {uuid.UUID(s["_id"]): s for s in body["parkingPublicationLight"]["parkingSite"]}
    assert set(sites) == city.published()
    assert sites[city.gate]["availableSpaces"] == 10 and sites[city.gate]["numberOfSpaces"] == 10
    assert "availableSpaces" not in sites[city.closed] and sites[city.closed]["isOpenNow"] is False
    assert "availableSpaces" not in sites[city.stale] and "numberOfSpaces" not in sites[city.listed]
    # the schema can fail: a count as a string and a missing required field are refused
    broken = json.loads(json.dumps(body))
    broken["parkingPublicationLight"]["parkingSite"][0]["availableSpaces"] = "10"
    del broken["parkingPublicationLight"]["parkingSite"][1]["locationAndDimension"]
    assert len(list(validator.iter_errors(broken))) >= 2


def otp_read(lot: dict[str, Any]) -> dict[str, Any]:
    """How OpenTripPlanner's ParkAPI updater (CarParkAPIUpdater / ParkAPIUpdater.parseElement) reads one lot:
    `state` with get(...).asText() (absent: a NullPointerException), "closed" or operational; `total`, `free`,
    `total:disabled`, `free:disabled` with has(...) then asInt() (a JSON null or a string that is not a number is
    read as 0); `coords.lat` / `coords.lng` with asDouble(); `id` with asText(); `opening_hours` as OSM text."""
    assert "state" in lot and isinstance(lot["state"], str)
    read: dict[str, Any] = {"id": str(lot["id"]), "state": "CLOSED" if lot["state"] == "closed" else "OPERATIONAL",
                            "x": float(lot["coords"]["lng"]), "y": float(lot["coords"]["lat"])}
    for name in ("total", "free", "total:disabled", "free:disabled"):
        if name in lot:
            value = lot[name]
            assert isinstance(value, int) and not isinstance(value, bool), (name, value)  # asInt() would read 0
            read[name] = value
    if "opening_hours" in lot:
        assert isinstance(lot["opening_hours"], str) and lot["opening_hours"].strip()
    return read


async def test_parkapi_v1_reads_as_opentripplanner_reads_it(client: httpx.AsyncClient, city: City) -> None:
    body = await get_json(client, "/api/v1/open/parkapi", city)
    assert set(body) >= {"last_updated", "last_downloaded", "lots"}
    lots = {uuid.UUID(lot["id"]): otp_read(lot) for lot in body["lots"]}
    assert set(lots) == city.published()
    for lot in lots.values():
        if "free" in lot:
            assert 0 <= lot["free"] <= lot["total"]
        if "free:disabled" in lot:
            assert 0 <= lot["free:disabled"] <= lot["total:disabled"]
    assert lots[city.gate] == {"id": str(city.gate), "state": "OPERATIONAL", "x": pytest.approx(13.405),
                               "y": pytest.approx(52.52), "total": 10, "free": 10, "total:disabled": 2,
                               "free:disabled": 2}
    assert lots[city.closed]["state"] == "CLOSED" and "free" not in lots[city.closed]
    # unknown counts are left out, never null: OTP would read a null as 0 free
    assert "free" not in lots[city.stale] and "free" not in lots[city.blind] and "total" not in lots[city.listed]
    assert lots[city.full]["free"] == 0 and lots[city.full]["state"] == "OPERATIONAL"
    with pytest.raises(AssertionError):  # the reader can fail: a null count
        otp_read({"id": "x", "state": "open", "coords": {"lat": 1, "lng": 2}, "free": None})


async def test_conditional_polls_get_304_and_gzip_is_the_same_body(client: httpx.AsyncClient, city: City) -> None:
    for path in FEEDS:
        first = await client.get(path, headers=city.headers)
        assert first.status_code == 200 and first.headers["etag"].startswith('W/"')
        assert "max-age=" in first.headers["cache-control"] and first.headers["last-modified"].endswith("GMT")
        again = await client.get(path, headers={**city.headers, "If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == first.headers["etag"]
        since = await client.get(path, headers={**city.headers, "If-Modified-Since": first.headers["last-modified"]})
        assert since.status_code == 304
        other = await client.get(path, headers={**city.headers, "If-None-Match": 'W/"something-else"'})
        assert other.status_code == 200
        raw = await client.get(path, headers={**city.headers, "Accept-Encoding": "gzip"}, extensions={})
        assert raw.headers["content-encoding"] == "gzip"
        assert json.loads(raw.content) == first.json()  # httpx decoded it; the bytes on the wire were gzip
        plain = await client.get(path, headers={**city.headers, "Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        assert len(gzip.compress(plain.content)) < len(plain.content)


async def test_filters_bbox_and_modified_since(client: httpx.AsyncClient, ctx: AppContext, city: City,
                                               clock: ManualClock) -> None:
    # the first three lots of the row (0.003 degrees of longitude apart)
    box = "13.404,52.519,13.4115,52.5245"
    inside = _props(await get_json(client, "/api/v1/open/lots", city, bbox=box))
    assert set(inside) == {city.gate, city.sensor, city.stale}
    datex = await get_json(client, "/api/v1/open/datex2", city, bbox=box)
    assert {uuid.UUID(s["_id"]) for s in datex["parkingPublicationLight"]["parkingSite"]} == set(inside)
    bad = await client.get("/api/v1/open/lots", headers=city.headers, params={"bbox": "1,2,3"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["query", "bbox"]
    naive = await client.get("/api/v1/open/lots", headers=city.headers, params={"modified_since": "2030-01-07T08:00:00"})
    assert naive.status_code == 422 and naive.json()["errors"][0]["loc"] == ["query", "modified_since"]

    before = clock.now()
    assert _props(await get_json(client, "/api/v1/open/lots", city, modified_since=before.isoformat())) == {}
    clock.advance(seconds=10)
    gl_now = clock.now()
    async with ctx.engine.begin() as conn:
        await conn.execute(text("UPDATE lots SET name = 'Gate Garage Nord', updated_at = :n WHERE id = :l"),
                           {"n": gl_now, "l": city.gate})
    clock.advance(seconds=10)
    changed = _props(await get_json(client, "/api/v1/open/lots", city, modified_since=before.isoformat()))
    assert set(changed) == {city.gate} and changed[city.gate]["name"] == "Gate Garage Nord"


async def _available(client: httpx.AsyncClient, city: City, lot: uuid.UUID, key: str) -> dict[str, Any]:
    """The lot's count in every feed."""
    geo = _props(await get_json(client, FEEDS[0], city))[lot]
    v1 = next(x for x in (await get_json(client, FEEDS[1], city))["lots"] if x["id"] == str(lot))
    dx = next(s for s in (await get_json(client, FEEDS[2], city))["parkingPublicationLight"]["parkingSite"]
              if s["_id"] == str(lot))
    v3 = next(s for s in (await get_json(client, FEEDS[3], city))["items"] if s["uid"] == str(lot))
    return {"geojson": geo[key], "parkapi": v1.get("free"), "datex2": dx.get("availableSpaces"),
            "parkapi_v3": v3.get("realtime_free_capacity")}


async def test_a_gate_entry_and_a_sensor_change_reach_every_feed_within_30_s(
        client: httpx.AsyncClient, ctx: AppContext, city: City, clock: ManualClock) -> None:
    gl = await gate_lot(ctx, spots={"regular": 3}, lat=52.51, lng=13.39, timezone="Europe/Berlin")
    assert await _available(client, city, gl.lot_id, "available") == dict.fromkeys(
        ("geojson", "parkapi", "datex2", "parkapi_v3"), 3)
    entry = await post_event(client, gl, gl.entry, event(ctx, plate="B-PG 123"))
    assert entry["decision"] == "open"
    clock.advance(seconds=ctx.settings.open_data_min_rebuild_seconds + 1)  # well within 30 s
    assert set((await _available(client, city, gl.lot_id, "available")).values()) == {2}

    r = await client.post(f"/api/v1/lots/{city.sensor}/sensor-events", headers={"X-Device-Key": await _device(ctx, city)},
                          json={"events": [{"event_id": "s-1", "sensor_id": "L0-002", "state": "occupied",
                                            "confidence": 0.99, "occurred_at": clock.now().isoformat()}]})
    assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
    clock.advance(seconds=ctx.settings.open_data_min_rebuild_seconds + 1)
    assert set((await _available(client, city, city.sensor, "available")).values()) == {1}


async def test_negative_control_without_the_change_number_the_feed_keeps_the_old_count(
        client: httpx.AsyncClient, ctx: AppContext, city: City, clock: ManualClock) -> None:
    """The guard is the change number: a worker that never polls it keeps serving the count it had."""
    gl = await gate_lot(ctx, spots={"regular": 3}, lat=52.51, lng=13.39, timezone="Europe/Berlin")
    assert (await _available(client, city, gl.lot_id, "available"))["geojson"] == 3
    feed_snapshots(ctx).poll = timedelta(days=1)  # the guard off
    await post_event(client, gl, gl.entry, event(ctx, plate="B-PG 124"))
    clock.advance(seconds=ctx.settings.open_data_min_rebuild_seconds + 1)
    assert (await _available(client, city, gl.lot_id, "available"))["geojson"] == 3  # stale: the failure shown


async def test_snapshot_is_rebuilt_when_data_changes_not_per_request(client: httpx.AsyncClient, ctx: AppContext,
                                                                     city: City, clock: ManualClock) -> None:
    snaps = feed_snapshots(ctx)
    for _ in range(5):
        await get_json(client, FEEDS[0], city)
        clock.advance(seconds=2)
    assert snaps.rebuilds == 1  # nothing changed: one build served every request
    etag = (await client.get(FEEDS[0], headers=city.headers)).headers["etag"]
    clock.advance(seconds=ctx.settings.open_data_max_age_seconds + 1)  # a rebuild by age with the same data
    again = await client.get(FEEDS[0], headers={**city.headers, "If-None-Match": etag})
    assert snaps.rebuilds == 2 and again.status_code == 304


async def test_feeds_need_a_partner_key(client: httpx.AsyncClient, city: City) -> None:
    for path in FEEDS:
        assert (await client.get(path)).status_code == 401
        assert (await client.get(path, headers={"X-API-Key": "pgp_not-a-key"})).status_code == 401


async def _device(ctx: AppContext, city: City) -> str:
    async with ctx.engine.begin() as conn:
        return await device_key_for(conn, city.sensor)


ROOT = Path(__file__).resolve().parent.parent.parent
PARKAPI_PYTHON = ROOT / "var" / "py312-parkapi" / "bin" / "python"
VALIDATOR = ROOT / "tests" / "tools" / "parkapi_v3_validate.py"


def parkapi_sources_validate(body: dict[str, Any]) -> dict[str, Any]:
    """Run parkapi-sources' own models (Python >= 3.12, its venv made by scripts/setup.sh) over the items."""
    assert PARKAPI_PYTHON.exists(), f"{PARKAPI_PYTHON} is missing: run scripts/setup.sh (needs Python >= 3.12)"
    out = subprocess.run([str(PARKAPI_PYTHON), str(VALIDATOR)], input=json.dumps(body), capture_output=True,
                         text=True, timeout=60, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


async def test_parkapi_v3_items_pass_the_parkapi_sources_models(client: httpx.AsyncClient, ctx: AppContext,
                                                                city: City) -> None:
    async with ctx.engine.begin() as conn:  # an OSM outline and park-and-ride on one lot
        await conn.execute(text(
            "UPDATE lots SET osm_geometry = ST_GeomFromText('POLYGON((13.404 52.519,13.406 52.519,13.406 52.521,"
            "13.404 52.519))', 4326), park_ride = true, external_ref = 'osm:way/77', fee = true,"
            " height_limit_cm = 210 WHERE id = :l"), {"l": city.gate})
    body = await get_json(client, "/api/v1/open/parkapi/v3/parking-sites", city)
    items = {uuid.UUID(i["uid"]): i for i in body["items"]}
    assert set(items) == city.published() - {city.listed}  # ParkAPI v3 requires a capacity
    report = parkapi_sources_validate(body)
    assert report == {"valid": len(items), "errors": []}, report
    gate = items[city.gate]
    assert (gate["realtime_free_capacity"], gate["capacity"], gate["realtime_opening_status"]) == (10, 10, "OPEN")
    assert gate["geojson"]["type"] == "Polygon" and gate["external_identifiers"] == [{"type": "OSM", "value": "way/77"}]
    assert gate["restrictions"] == [{"type": "DISABLED", "capacity": 2, "realtime_free_capacity": 2}]
    assert "realtime_free_capacity" not in items[city.stale] and items[city.closed]["realtime_opening_status"] == "CLOSED"
    # the models can fail: an unknown field, and a lot outside Europe (what a non-European deployment must know)
    broken = {"items": [dict(gate, surprise=1), dict(gate, lat=37.78, lon=-122.42)]}
    assert parkapi_sources_validate(broken)["valid"] == 0


async def test_conditional_polls_ahead_of_routing_are_charged_to_the_quota(settings: Settings, clock: ManualClock) -> None:
    """A 304 answered ahead of routing (api.routers.open_data.shortcuts) still counts against the partner's quota,
    and a key it has not seen in this worker goes through the route (which looks it up)."""
    async with serve(_limited(settings), clock) as (ctx, http):
        city = await build_city(ctx, quota="3/minute")
        first = await http.get("/api/v1/open/datex2", headers=city.headers)
        assert first.status_code == 200
        poll = {**city.headers, "If-None-Match": first.headers["etag"]}
        assert [(await http.get("/api/v1/open/datex2", headers=poll)).status_code for _ in range(2)] == [304, 304]
        _assert_429(await http.get("/api/v1/open/datex2", headers=poll), 60)
        async with ctx.engine.begin() as conn:
            _, other = await create_partner(conn=conn, name="Never seen", quota="5/minute")
        unseen = await http.get("/api/v1/open/datex2", headers={"X-API-Key": other,
                                                                 "If-None-Match": first.headers["etag"]})
        assert unseen.status_code == 304  # through the route: the key looked up, then the same ETag
        bad = await http.get("/api/v1/open/datex2", headers={"X-API-Key": "pgp_nope",
                                                              "If-None-Match": first.headers["etag"]})
        assert bad.status_code == 401


async def test_database_away_serves_the_snapshot_in_memory_then_503(client: httpx.AsyncClient, ctx: AppContext,
                                                                    city: City, clock: ManualClock) -> None:
    before = await get_json(client, FEEDS[0], city)
    dsn = ctx.settings.database_url.replace("postgresql+asyncpg://", "postgresql://")
    gone_pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    await gone_pool.close()

    async def unreachable() -> asyncpg.Pool:
        return gone_pool

    feed_snapshots(ctx)._pool = unreachable  # the snapshot's reads fail from now on (keys are still looked up)
    clock.advance(seconds=ctx.settings.open_data_min_rebuild_seconds + 1)
    assert await get_json(client, FEEDS[0], city) == before
    clock.advance(seconds=ctx.settings.open_data_max_age_seconds)
    gone = await client.get(FEEDS[0], headers=city.headers)
    assert gone.status_code == 503 and gone.headers["content-type"] == "application/problem+json"
