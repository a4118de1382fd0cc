"""OSM import: a .osm.pbf written here with pyosmium, Overpass JSON and a GeoJSON FeatureCollection; listed car parks
without capacity, re-import by OSM id, private car parks skipped, damaged files refused with nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import osmium
import pytest
from osmium.osm.mutable import Node, Relation, Way
from sqlalchemy import text

from core.accounts import create_partner, ensure_organisation
from core.context import AppContext
from core.settings import Settings
from geo.osm_import import import_osm, parse_maxheight
from geo.osm_read import OsmFileError, read_json, read_osm

DATA = Path(__file__).resolve().parent.parent / "data" / "osm_parking.geojson"
ROOT = Path(__file__).resolve().parent.parent.parent

# a 0.001-degree grid around the Hauptbahnhof of Munich
LON0, LAT0 = 11.558, 48.140


def _n(i: int, j: int) -> tuple[float, float]:
    return (round(LON0 + 0.001 * i, 7), round(LAT0 + 0.001 * j, 7))


def write_pbf(path: Path, *, garage_capacity: str = "120", garage_name: str = "Parkhaus Hauptbahnhof",
              extra: bool = False, laim_access: str | None = None) -> None:
    """Nodes, ways and multipolygons covering every case the importer tells apart."""
    coords = {
        1: _n(0, 0), 2: _n(2, 0), 3: _n(2, 2), 4: _n(0, 2),  # the garage: a square way
        5: _n(4, 0), 6: _n(8, 0), 7: _n(8, 1), 8: _n(5, 1), 9: _n(5, 6), 10: _n(4, 6),  # an L: centroid outside
        11: _n(10, 0), 12: _n(14, 0), 13: _n(14, 4), 14: _n(10, 4),  # multipolygon outer
        15: _n(11, 1), 16: _n(13, 1), 17: _n(13, 3), 18: _n(11, 3),  # its inner ring
        19: _n(20, 0), 20: _n(21, 0),  # an open way
    }
    w = osmium.SimpleWriter(str(path))
    for nid, (lon, lat) in sorted(coords.items()):
        w.add_node(Node(id=nid, location=(lon, lat), tags={}))
    parking_nodes = {
        100: ({"amenity": "parking", "name": "P+R Laim", "capacity": "40", "capacity:disabled": "2",
               "capacity:charging": "4", "park_ride": "train", "fee": "no", "parking": "surface"}, _n(30, 0)),
        101: ({"amenity": "parking", "name": "Parkplatz Kirche"}, _n(31, 0)),  # no capacity: listed
        102: ({"amenity": "parking", "capacity": "12", "access": "private"}, _n(32, 0)),
        103: ({"amenity": "parking", "capacity": "lots", "parking": "street_side"}, _n(33, 0)),
        104: ({"amenity": "parking", "capacity": "6", "parking": "garage_boxes"}, _n(34, 0)),
        105: ({"amenity": "parking", "capacity": "5", "capacity:disabled": "9"}, _n(35, 0)),
        106: ({"amenity": "parking", "capacity": "20", "access": "customers", "opening_hours": "Mo-Sa 08:00-20:00",
               "maxheight": "2.0"}, _n(36, 0)),
    }
    if laim_access:
        parking_nodes[100][0]["access"] = laim_access
    if extra:
        parking_nodes[107] = ({"amenity": "parking", "capacity": "8", "name": "Neu"}, _n(37, 0))
    for nid, (tags, loc) in parking_nodes.items():
        w.add_node(Node(id=nid, location=loc, tags=tags))
    w.add_way(Way(id=200, nodes=[1, 2, 3, 4, 1], tags={
        "amenity": "parking", "parking": "multi-storey", "name": garage_name, "capacity": garage_capacity,
        "capacity:disabled": "4", "maxheight": "2.1", "fee": "yes", "opening_hours": "24/7",
        "addr:street": "Bayerstraße", "addr:housenumber": "10"}))
    w.add_way(Way(id=201, nodes=[5, 6, 7, 8, 9, 10, 5], tags={"amenity": "parking", "capacity": "30",
                                                              "parking": "surface"}))
    w.add_way(Way(id=202, nodes=[11, 12, 13, 14, 11], tags={}))
    w.add_way(Way(id=203, nodes=[15, 16, 17, 18, 15], tags={}))
    w.add_way(Way(id=204, nodes=[19, 20], tags={"amenity": "parking", "capacity": "3"}))
    w.add_relation(Relation(id=300, members=[("w", 202, "outer"), ("w", 203, "inner")], tags={
        "type": "multipolygon", "amenity": "parking", "parking": "underground", "capacity": "200",
        "name": "Tiefgarage Stachus"}))
    w.add_relation(Relation(id=301, members=[("w", 999, "outer")], tags={  # its way is not in the extract
        "type": "multipolygon", "amenity": "parking", "capacity": "10"}))
    w.close()


async def _org(ctx: AppContext) -> Any:
    async with ctx.engine.begin() as conn:
        return await ensure_organisation(conn=conn, name="Landeshauptstadt München")


async def _import(ctx: AppContext, items: list[Any], org: Any, **kw: Any) -> Any:
    async with ctx.engine.begin() as conn:
        return await import_osm(conn, items=items, organisation_id=org, timezone="Europe/Berlin",
                                now=ctx.clock.now(), **kw)


async def _lots(ctx: AppContext) -> dict[str, Any]:
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT external_ref, name, capacity, spots_in_service, kind, fee, opening_hours, height_limit_cm, access,"
            " park_ride, ST_Y(location::geometry) AS lat, ST_X(location::geometry) AS lng,"
            " ST_GeometryType(osm_geometry) AS outline, ST_NumInteriorRings(osm_geometry) AS holes,"
            " ST_Contains(osm_geometry, location::geometry) AS inside FROM lots"))).all()
    return {r.external_ref: r for r in rows}


async def test_pbf_nodes_ways_multipolygons_listed_and_skipped(ctx: AppContext, tmp_path: Path) -> None:
    pbf = tmp_path / "oberbayern.osm.pbf"
    write_pbf(pbf)
    org = await _org(ctx)
    report = await _import(ctx, read_osm(pbf), org)
    lots = await _lots(ctx)
    assert set(lots) == {"osm:node/100", "osm:node/101", "osm:node/103", "osm:node/106", "osm:way/200",
                         "osm:way/201", "osm:relation/300"}
    skipped = {s["ref"]: s["reason"] for s in report.skipped}
    assert "not public" in skipped["node/102"] and "private garages" in skipped["node/104"]
    assert "exceed capacity" in skipped["node/105"] and "not closed" in skipped["way/204"]
    assert "could not be assembled" in skipped["relation/301"]
    garage = lots["osm:way/200"]
    assert (garage.name, garage.capacity, garage.kind, garage.fee, garage.height_limit_cm) == \
        ("Parkhaus Hauptbahnhof", 120, "multi-storey", True, 210)
    assert garage.spots_in_service == [0, 0, 116, 0, 0, 4] and garage.outline == "ST_Polygon" and garage.inside
    assert garage.lng == pytest.approx(LON0 + 0.001) and garage.lat == pytest.approx(LAT0 + 0.001)
    assert lots["osm:way/201"].inside  # an L whose centroid lies outside: a point inside it instead
    stachus = lots["osm:relation/300"]
    assert (stachus.kind, stachus.capacity, stachus.holes) == ("underground", 200, 1) and stachus.inside
    pr = lots["osm:node/100"]
    assert pr.park_ride is True and pr.fee is False and pr.spots_in_service == [0, 0, 34, 0, 4, 2]
    listed = lots["osm:node/101"]
    assert (listed.capacity, listed.spots_in_service) == (0, [0] * 6)  # no spots: capacity unknown, not bookable
    assert lots["osm:node/103"].kind == "street" and lots["osm:node/103"].capacity == 0
    assert any("capacity='lots'" in w["warning"] for w in report.warnings)
    customers = lots["osm:node/106"]
    assert (customers.access, customers.opening_hours, customers.height_limit_cm) == ("customers", "Mo-Sa 08:00-20:00",
                                                                                       200)
    assert report.as_dict()["listed_without_capacity"] == 2


async def test_listed_lot_without_capacity_is_null_in_every_feed(ctx: AppContext, client: Any, tmp_path: Path) -> None:
    pbf = tmp_path / "x.osm.pbf"
    write_pbf(pbf)
    await _import(ctx, read_osm(pbf), await _org(ctx))
    async with ctx.engine.begin() as conn:
        _, key = await create_partner(conn=conn, name="OTP")
        lot_id = str((await conn.execute(text("SELECT id FROM lots WHERE external_ref = 'osm:node/101'"))).scalar_one())
    h = {"X-API-Key": key}
    geo = {f["id"]: f["properties"] for f in (await client.get("/api/v1/open/lots", headers=h)).json()["features"]}
    assert (geo[lot_id]["capacity"], geo[lot_id]["available"], geo[lot_id]["bookable"]) == (None, None, False)
    v1 = {x["id"]: x for x in (await client.get("/api/v1/open/parkapi", headers=h)).json()["lots"]}
    assert "total" not in v1[lot_id] and "free" not in v1[lot_id]
    datex = (await client.get("/api/v1/open/datex2", headers=h)).json()["parkingPublicationLight"]["parkingSite"]
    site = next(s for s in datex if s["_id"] == lot_id)
    assert "numberOfSpaces" not in site and "availableSpaces" not in site
    v3 = (await client.get("/api/v1/open/parkapi/v3/parking-sites", headers=h)).json()["items"]
    assert lot_id not in {i["uid"] for i in v3}  # ParkAPI v3 requires a capacity
    assert geo[lot_id]["external_ids"] == {"osm": "node/101"}


async def test_reimport_updates_by_osm_id_and_reports_what_changed(ctx: AppContext, tmp_path: Path) -> None:
    org = await _org(ctx)
    first, second = tmp_path / "a.osm.pbf", tmp_path / "b.osm.pbf"
    write_pbf(first)
    write_pbf(second, garage_capacity="100", garage_name="Parkhaus Hbf Süd", extra=True)
    await _import(ctx, read_osm(first), org)
    same = await _import(ctx, read_osm(first), org)
    assert same.created == [] and same.updated == [] and len(same.unchanged) == 7
    report = await _import(ctx, read_osm(second), org)
    assert [c["ref"] for c in report.created] == ["osm:node/107"]
    assert [u["ref"] for u in report.updated] == ["osm:way/200"]
    changes = report.updated[0]["changes"]
    assert changes["name"] == {"from": "Parkhaus Hauptbahnhof", "to": "Parkhaus Hbf Süd"}
    assert changes["spots.regular"] == {"from": 116, "to": 96}
    lots = await _lots(ctx)
    assert len(lots) == 8  # never duplicated
    assert lots["osm:way/200"].spots_in_service == [0, 0, 96, 0, 0, 4]
    back = await _import(ctx, read_osm(first), org)  # capacity back up: spots return to service
    assert back.updated[0]["changes"]["spots.regular"] == {"from": 96, "to": 116}
    assert (await _lots(ctx))["osm:way/200"].spots_in_service == [0, 0, 116, 0, 0, 4]
    gated = tmp_path / "c.osm.pbf"
    write_pbf(gated, laim_access="private")  # the P+R became private: skipped, and no longer published
    closed = await _import(ctx, read_osm(gated), org)
    assert [u["changes"] for u in closed.updated] == [{"access": {"from": None, "to": "private"}}]
    assert (await _lots(ctx))["osm:node/100"].access == "private"


def test_truncated_and_non_osm_files_are_clear_errors(tmp_path: Path) -> None:
    pbf = tmp_path / "full.osm.pbf"
    write_pbf(pbf)
    cut = tmp_path / "cut.osm.pbf"
    cut.write_bytes(pbf.read_bytes()[: len(pbf.read_bytes()) - 40])
    with pytest.raises(OsmFileError, match="truncated"):
        read_osm(cut)
    photo = tmp_path / "holiday.osm.pbf"
    photo.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(2000))
    with pytest.raises(OsmFileError):
        read_osm(photo)
    notes = tmp_path / "notes.txt"
    notes.write_text("car parks to visit")
    with pytest.raises(OsmFileError, match="not an OpenStreetMap file"):
        read_osm(notes)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(OsmFileError, match="not OpenStreetMap JSON"):
        read_osm(other)
    half = tmp_path / "half.json"
    half.write_text('{"elements": [{"type": "node", "id": 1, ')
    with pytest.raises(OsmFileError, match="truncated"):
        read_osm(half)


def test_overpass_json_nodes_ways_and_multipolygons() -> None:
    ring = [{"lat": LAT0 + dy, "lon": LON0 + dx} for dx, dy in ((0, 0), (0.002, 0), (0.002, 0.002), (0, 0.002), (0, 0))]
    doc = {"version": 0.6, "generator": "Overpass API", "elements": [
        {"type": "node", "id": 1, "lat": LAT0, "lon": LON0, "tags": {"amenity": "parking", "capacity": "5"}},
        {"type": "way", "id": 2, "geometry": ring, "tags": {"amenity": "parking"}},
        {"type": "way", "id": 3, "center": {"lat": LAT0, "lon": LON0}, "tags": {"amenity": "parking"}},
        {"type": "relation", "id": 4, "tags": {"type": "multipolygon", "amenity": "parking"},
         "members": [{"type": "way", "ref": 9, "role": "outer", "geometry": ring}]},
        {"type": "way", "id": 5, "geometry": [*ring[:3], ring[0] | {"lat": LAT0 + 0.005}],
         "tags": {"amenity": "parking"}},
        {"type": "relation", "id": 6, "tags": {"type": "site", "amenity": "parking"}, "members": []},
    ]}
    items = read_json(doc)
    kinds = {getattr(i, "ref", None): (type(i).__name__, getattr(i, "geometry", None)) for i in items}
    assert kinds["node/1"][1].geom_type == "Point" and kinds["way/2"][1].geom_type == "Polygon"
    assert kinds["way/3"][1].geom_type == "Point" and kinds["relation/4"][1].geom_type == "Polygon"
    assert kinds["way/5"][0] == "OsmSkip" and kinds["relation/6"][0] == "OsmSkip"


async def test_geojson_features_still_import(ctx: AppContext) -> None:
    report = await _import(ctx, read_json(json.loads(DATA.read_text())), await _org(ctx))
    created = {c["ref"]: c["capacity"] for c in report.created}
    # a car park without capacity (node/1003) or with capacity=lots (node/1004) is listed, rooftops are garages
    assert created == {"osm:way/1001": 120, "osm:node/1002": 15, "osm:node/1003": None, "osm:node/1004": None,
                       "osm:relation/1012": 40}
    reasons = " | ".join(s["reason"] for s in report.skipped)
    for fragment in ("coordinates out of range", "not parking", "unsupported geometry", "exceed capacity",
                     "not public", "duplicate", "no OSM id", "no geometry", "not a GeoJSON Feature"):
        assert fragment in reasons, fragment


@pytest.mark.parametrize(("raw", "cm"), [("2.1", 210), ("2.1 m", 210), ("6'8\"", 203), ("7'", 213),
                                         ("none", None), ("default", None)])
def test_maxheight(raw: str, cm: int | None) -> None:
    assert parse_maxheight(raw) == cm


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PARKGRID_DATABASE_URL": settings.database_url,
           "PARKGRID_SECRET_KEY": settings.secret_key.get_secret_value(), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "cli", "lots", "import", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


async def test_cli_imports_a_pbf_and_a_damaged_file_writes_nothing(settings: Settings, ctx: AppContext,
                                                                   tmp_path: Path) -> None:
    pbf = tmp_path / "muenchen.osm.pbf"
    write_pbf(pbf)
    cut = tmp_path / "cut.osm.pbf"
    cut.write_bytes(pbf.read_bytes()[:-40])
    bad = _cli(settings, str(cut), "--org", "München", "--timezone", "Europe/Berlin", "--json")
    assert bad.returncode == 2 and "truncated" in bad.stderr and bad.stdout == ""
    assert (await _lots(ctx)) == {}  # nothing written
    dry = _cli(settings, str(pbf), "--org", "München", "--dry-run", "--json")
    assert dry.returncode == 0 and json.loads(dry.stdout)["created"] == 7 and (await _lots(ctx)) == {}
    out = _cli(settings, str(pbf), "--org", "München", "--timezone", "Europe/Berlin", "--json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert (body["created"], body["listed_without_capacity"], body["skipped"]) == (7, 2, 5)
    again = _cli(settings, str(pbf), "--org", "München")
    assert again.returncode == 0 and "created 0 lot(s)" in again.stdout and "unchanged 7" in again.stdout
    bad_tz = _cli(settings, str(pbf), "--org", "x", "--timezone", "Nowhere/Land")
    assert bad_tz.returncode == 2 and "Nowhere/Land" in bad_tz.stderr
