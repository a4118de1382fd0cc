"""Walking times on a real pedestrian network: an OSM extract written here with pyosmium, loaded into pgRouting.

The town: a theatre on the south bank of a river that has one bridge, 1 km east. Lot North stands 200 m from
the theatre in a straight line, across the river; Lot South 400 m along the theatre's own street. The straight
line picks North; the walk (about 2.2 km to North) picks South.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import osmium
import pytest
from sqlalchemy import text

from core.context import AppContext
from core.settings import Settings
from geo.walknet import load_network, read_extract
from tests.factories import UserFactory, insert_lot

ROOT = Path(__file__).resolve().parent.parent.parent
LAT0, LNG0 = 48.85, 2.35  # a European town; nothing here depends on where


def at(x_m: float, y_m: float) -> tuple[float, float]:
    """(lng, lat) of a point x metres east and y metres north of the origin."""
    return (LNG0 + x_m / (111_320.0 * math.cos(math.radians(LAT0))), LAT0 + y_m / 111_320.0)


def write_town(path: Path, *, with_bridge: bool = True) -> None:
    nodes = {  # id: (x, y, tags)
        1: (-200, 0, {}), 2: (0, 0, {}), 3: (400, 0, {}), 4: (1000, 0, {}),  # the south bank's street
        5: (1000, 200, {}), 6: (0, 200, {"amenity": "parking_entrance"}), 7: (-200, 200, {}),  # north bank
        20: (-300, 100, {}), 21: (1300, 100, {}),  # the river
        30: (0, -10, {"amenity": "theatre", "name": "Théâtre du Pont"}),
        31: (300, 220, {"shop": "bakery", "name": "Boulangerie du Nord"}),
        40: (0, -100, {}), 41: (800, -100, {}),  # a motorway pedestrians may not use
    }
    ways = [
        (100, [1, 2, 3, 4], {"highway": "residential", "name": "Quai Sud"}),
        (102, [5, 6, 7], {"highway": "residential", "name": "Quai Nord"}),
        (103, [20, 21], {"waterway": "river", "name": "La Rivière"}),
        (104, [40, 41], {"highway": "motorway"}),
    ]
    if with_bridge:
        ways.append((101, [4, 5], {"highway": "footway", "bridge": "yes"}))
    with osmium.SimpleWriter(str(path)) as writer:
        for nid, (x, y, tags) in nodes.items():
            writer.add_node(osmium.osm.mutable.Node(id=nid, location=at(x, y), tags=tags, version=1))
        for wid, refs, tags in ways:
            writer.add_way(osmium.osm.mutable.Way(id=wid, nodes=refs, tags=tags, version=1))


@pytest.fixture
def town(tmp_path: Path) -> Path:
    path = tmp_path / "town.osm.pbf"
    write_town(path)
    return path


async def make_lots(ctx: AppContext) -> dict[str, uuid.UUID]:
    lots = {}
    async with ctx.engine.begin() as conn:
        for name, (x, y) in {"North": (0, 200), "South": (400, 0)}.items():
            lng, lat = at(x, y)
            lots[name] = await insert_lot(conn, name=f"Lot {name}", lat=lat, lng=lng, timezone="Europe/Paris")
    return lots


async def load(ctx: AppContext, path: Path) -> dict[str, object]:
    async with (await ctx.pg()).acquire() as pg:
        report = await load_network(pg, extract=read_extract(path), name=path.name, now=ctx.clock.now())
    return report.as_dict()


async def theatre(client: httpx.AsyncClient) -> dict[str, object]:
    found = (await client.get("/api/v1/destinations", params={"q": "théâtre", "near": f"{LAT0},{LNG0}"})).json()
    return found["items"][0]  # type: ignore[no-any-return]


async def test_walk_picks_the_lot_on_this_side_of_the_river(ctx: AppContext, client: httpx.AsyncClient,
                                                            town: Path) -> None:
    lots = await make_lots(ctx)
    report = await load(ctx, town)
    assert report["lots_joined"] == 2 and report["entrances"] == 1 and report["destinations"] == 2
    dest = await theatre(client)
    assert dest["name"] == "Théâtre du Pont" and dest["kind"] == "theatre" and dest["source"] == "osm"

    walk = (await client.get("/api/v1/lots/search", params={"destination_id": dest["id"], "max_walk_m": 3000})).json()
    names = [i["lot"]["name"] for i in walk["items"]]
    assert names == ["Lot South", "Lot North"], walk
    south, north = walk["items"]
    assert 390 <= south["walk"]["meters"] <= 430, south
    assert 2150 <= north["walk"]["meters"] <= 2300, north  # 1 km east, the bridge, 1 km back west
    assert north["walk"]["minutes"] == pytest.approx(north["walk"]["meters"] / 80, abs=0.1)
    assert walk["walk"]["network"] is True and walk["next_cursor"] is None
    for item in walk["items"]:  # walking is never shorter than the straight line
        assert item["walk"]["meters"] >= item["distance_m"]

    # negative control: ordered by straight-line distance, the lot across the river comes first
    plain = (await client.get("/api/v1/lots/search", params={"lat": dest["location"]["lat"],
                                                              "lng": dest["location"]["lng"], "radius_m": 3000})).json()
    assert [i["lot"]["name"] for i in plain["items"]] == ["Lot North", "Lot South"]
    assert "walk" not in plain["items"][0]

    # within the default 1.5 km walk the lot across the river is out of reach
    short = (await client.get("/api/v1/lots/search", params={"destination_id": dest["id"]})).json()
    assert [i["lot"]["name"] for i in short["items"]] == ["Lot South"]
    # and the same by point, as GeoJSON
    geo = await client.get("/api/v1/lots/search", params={"lat": LAT0, "lng": LNG0, "sort": "walk", "max_walk_m": 3000},
                           headers={"Accept": "application/geo+json"})
    assert [f["properties"]["name"] for f in geo.json()["features"]] == ["Lot South", "Lot North"]
    assert lots


async def test_without_the_bridge_the_far_bank_is_unreachable_and_reimport_replaces(
        ctx: AppContext, client: httpx.AsyncClient, tmp_path: Path, town: Path) -> None:
    await make_lots(ctx)
    await load(ctx, town)
    broken = tmp_path / "town-no-bridge.osm.pbf"
    write_town(broken, with_bridge=False)
    report = await load(ctx, broken)
    assert report["replaced_areas"] == 1
    async with ctx.engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM walk_areas")) == 1
        assert await conn.scalar(text("SELECT count(*) FROM destinations WHERE source = 'osm'")) == 2
    dest = await theatre(client)
    walk = (await client.get("/api/v1/lots/search", params={"destination_id": dest["id"], "max_walk_m": 5000})).json()
    assert [i["lot"]["name"] for i in walk["items"]] == ["Lot South"]


async def test_remembered_walks_follow_the_network(ctx: AppContext, client: httpx.AsyncClient, tmp_path: Path,
                                                   town: Path, users: UserFactory) -> None:
    """A venue's walks are remembered, and forgotten when the network they were computed on is replaced."""
    await make_lots(ctx)
    await load(ctx, town)
    operator = await users.create("operator")
    lng, lat = at(0, -10)
    venue = (await client.post("/api/v1/destinations", headers=operator.headers, json={
        "name": "Salle des fêtes", "kind": "venue", "location": {"lat": lat, "lng": lng}})).json()
    params = {"destination_id": venue["id"], "max_walk_m": 3000}
    first = [i["lot"]["name"] for i in (await client.get("/api/v1/lots/search", params=params)).json()["items"]]
    assert first == ["Lot South", "Lot North"]
    async with ctx.engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM destination_walks")) == 2
    again = [i["lot"]["name"] for i in (await client.get("/api/v1/lots/search", params=params)).json()["items"]]
    assert again == first
    broken = tmp_path / "town-no-bridge.osm.pbf"
    write_town(broken, with_bridge=False)
    await load(ctx, broken)  # the bridge is gone: what was remembered no longer holds
    after = [i["lot"]["name"] for i in (await client.get("/api/v1/lots/search", params=params)).json()["items"]]
    assert after == ["Lot South"]


async def test_outside_any_network_walks_are_null_and_say_why(ctx: AppContext, client: httpx.AsyncClient) -> None:
    await make_lots(ctx)  # no network imported
    res = (await client.get("/api/v1/lots/search", params={"lat": LAT0, "lng": LNG0, "sort": "walk"})).json()
    assert [i["lot"]["name"] for i in res["items"]] == ["Lot North", "Lot South"]  # straight-line order
    assert all(i["walk"] is None and "no walking network" in i["walk_reason"] for i in res["items"])
    assert res["walk"]["network"] is False


async def test_bad_input(client: httpx.AsyncClient, ctx: AppContext, users: UserFactory) -> None:
    unknown = await client.get("/api/v1/lots/search", params={"destination_id": str(uuid.uuid4())})
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("application/problem+json")
    for q in ("a", "x" * 101):
        res = await client.get("/api/v1/destinations", params={"q": q})
        assert res.status_code == 422 and res.json()["errors"][0]["loc"] == ["query", "q"], res.text
    near = await client.get("/api/v1/destinations", params={"q": "park", "near": "91,2"})
    assert near.status_code == 422 and near.json()["errors"][0]["loc"] == ["query", "near"]
    bad_walk = await client.get("/api/v1/lots/search", params={"lat": 1, "lng": 2, "sort": "walk", "max_walk_m": 10})
    assert bad_walk.status_code == 422 and bad_walk.json()["errors"][0]["loc"] == ["query", "max_walk_m"]
    no_point = await client.get("/api/v1/lots/search", params={"sort": "walk"})
    assert no_point.status_code == 422


async def test_operators_define_venues_found_by_name(client: httpx.AsyncClient, users: UserFactory) -> None:
    operator, driver = await users.create("operator"), await users.create("driver")
    body = {"name": "Stade Municipal", "kind": "stadium", "location": {"lat": LAT0, "lng": LNG0}}
    assert (await client.post("/api/v1/destinations", json=body, headers=driver.headers)).status_code == 403
    made = await client.post("/api/v1/destinations", json=body, headers=operator.headers)
    assert made.status_code == 201 and made.json()["source"] == "operator"
    found = (await client.get("/api/v1/destinations", params={"q": "stade"})).json()["items"]
    assert [d["id"] for d in found] == [made.json()["id"]]


def test_a_truncated_or_foreign_file_is_refused_by_the_cli_and_writes_nothing(
        tmp_path: Path, town: Path, settings: Settings) -> None:
    truncated = tmp_path / "cut.osm.pbf"
    truncated.write_bytes(town.read_bytes()[: len(town.read_bytes()) // 2])
    foreign = tmp_path / "notes.osm.pbf"
    foreign.write_text("not an extract")
    env = {**os.environ, "PARKGRID_DATABASE_URL": settings.database_url, "PARKGRID_SECRET_KEY": "x" * 40,
           "PYTHONPATH": str(ROOT)}
    for bad in (truncated, foreign):
        out = subprocess.run([sys.executable, "-m", "cli", "network", "import", str(bad), "--json"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "not a readable OpenStreetMap extract" in out.stderr, out.stderr
    ok = subprocess.run([sys.executable, "-m", "cli", "network", "import", str(town), "--json"], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["edges"] >= 4

