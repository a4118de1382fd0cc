"""OSM import: a small hand-written FeatureCollection with good and bad features, through the CLI too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from core.accounts import ensure_organisation
from core.context import AppContext
from core.settings import Settings
from geo.osm_import import import_osm, parse_maxheight

DATA = Path(__file__).resolve().parent.parent / "data" / "osm_parking.geojson"
ROOT = Path(__file__).resolve().parent.parent.parent

EXPECTED_SKIPS = {
    2: "no capacity tag", 3: "is not a whole number", 4: "coordinates out of range", 5: "not parking",
    6: "unsupported geometry", 7: "exceed capacity", 8: "not public", 9: "duplicate", 10: "no OSM id",
    11: "unsupported parking", 12: "no geometry", 13: "not a GeoJSON Feature",
}


async def test_import_creates_good_lots_and_explains_every_skip(ctx: AppContext) -> None:
    async with ctx.engine.begin() as conn:
        org = await ensure_organisation(conn=conn, name="Ville de Paris")
        report = await import_osm(conn, collection=json.loads(DATA.read_text()), organisation_id=org,
                                  timezone="Europe/Paris")
    assert [c["ref"] for c in report.created] == ["osm:way/1001", "osm:node/1002"]
    skips = {s["index"]: s["reason"] for s in report.skipped}
    assert set(skips) == set(EXPECTED_SKIPS)
    for index, fragment in EXPECTED_SKIPS.items():
        assert fragment in skips[index], (index, skips[index])
    assert any("opening_hours ignored" in w["warning"] for w in report.warnings)
    async with ctx.engine.connect() as conn:
        garage = (await conn.execute(text(
            "SELECT name, capacity, kind, amenities, height_limit_cm, fee, opening_hours, spots_in_service, timezone,"
            " ST_Y(location::geometry) AS lat FROM lots WHERE external_ref = 'osm:way/1001'"))).one()
        surface = (await conn.execute(text(
            "SELECT name, capacity, height_limit_cm, fee, opening_hours FROM lots WHERE external_ref = 'osm:node/1002'"
        ))).one()
    assert (garage.name, garage.capacity, garage.kind) == ("Garage Saint-Martin", 120, "multi-storey")
    assert garage.amenities == ["accessible", "covered", "ev_charging"] and garage.height_limit_cm == 210
    assert garage.fee is True and garage.opening_hours == "Mo-Sa 07:00-22:00; Su off"
    assert garage.spots_in_service == [0, 0, 110, 0, 6, 4] and garage.timezone == "Europe/Paris"
    assert 48.860 < garage.lat < 48.861
    assert (surface.name, surface.capacity, surface.height_limit_cm, surface.fee, surface.opening_hours) == \
        ("Parking node/1002", 15, 203, False, None)

    async with ctx.engine.begin() as conn:  # importing again creates nothing
        again = await import_osm(conn, collection=json.loads(DATA.read_text()), organisation_id=org)
    assert again.created == [] and sum("already imported" in s["reason"] for s in again.skipped) == 2


@pytest.mark.parametrize(("raw", "cm"), [("2.1", 210), ("2.1 m", 210), ("6'8\"", 203), ("7'", 213),
                                         ("none", None), ("default", None)])
def test_maxheight(raw: str, cm: int | None) -> None:
    assert parse_maxheight(raw) == cm


def test_cli_import_reports_json(settings: Settings, ctx: AppContext) -> None:
    env = {**os.environ, "PARKGRID_DATABASE_URL": settings.database_url,
           "PARKGRID_SECRET_KEY": settings.secret_key.get_secret_value(), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "cli", "lots", "import", str(DATA), "--org", "Paris CLI",
                          "--timezone", "Europe/Paris", "--json"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["created"] == 2 and body["skipped"] == len(EXPECTED_SKIPS)
    bad_tz = subprocess.run([sys.executable, "-m", "cli", "lots", "import", str(DATA), "--org", "x",
                             "--timezone", "Nowhere/Land"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert bad_tz.returncode == 2 and "Nowhere/Land" in bad_tz.stderr
