"""Planner exports end to end on a real Celery worker and broker: POST, follow, download by the signed link, and
read every file back with its own library (csv, geojson-pydantic, pyarrow, geopandas, geoparquet-validator)."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import geopandas as gpd
import geoparquet_validator as gpv
import h3
import httpx
import pyarrow.parquet as pq
import pytest
from geojson_pydantic import FeatureCollection

from api.app import create_app
from core.context import AppContext, build_context
from core.settings import Settings
from tests.conftest import ROOT, TEST_SECRET, make_settings
from tests.exports_world import (
    BUSY_DATE,
    BUSY_HOUR,
    BUSY_HOUR_UTC,
    DAY_FROM,
    DAY_TO,
    LAT_A,
    LAT_B,
    LNG_A,
    LNG_B,
    build_export_world,
    geo_metadata_errors,
    leaks,
    rows_by_key,
)
from tests.factories import UserFactory


@pytest.fixture
def settings(db_url: str, redis_prefix: str, tmp_path: Path) -> Settings:
    return make_settings(database_url=db_url, redis_prefix=redis_prefix, celery_queue=f"q{redis_prefix}",
                         export_dir=str(tmp_path / "exports"))


@pytest.fixture
async def wall_ctx(settings: Settings) -> AsyncIterator[AppContext]:
    # the worker runs on the wall clock; the API must agree with it about link expiry
    context = build_context(settings)
    try:
        yield context
    finally:
        await context.aclose()


@pytest.fixture
def worker(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "PARKGRID_DATABASE_URL": settings.database_url, "PARKGRID_REDIS_URL": settings.redis_url,
           "PARKGRID_REDIS_PREFIX": settings.redis_prefix, "PARKGRID_BROKER_URL": settings.broker_url,
           "PARKGRID_CELERY_QUEUE": settings.celery_queue, "PARKGRID_SECRET_KEY": TEST_SECRET,
           "PARKGRID_EXPORT_DIR": settings.export_dir, "PARKGRID_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "cli", "worker", "--concurrency", "1", "--loglevel", "warning"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    yield proc
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    assert b"Traceback" not in out, out.decode(errors="replace")[-3000:]


async def _wait_done(http: httpx.AsyncClient, export_id: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        body = (await http.get(f"/api/v1/exports/{export_id}", headers=headers)).json()
        if body["status"] in ("done", "failed"):
            return body  # type: ignore[no-any-return]
        await asyncio.sleep(0.2)  # waiting on another process, not on domain time
    raise AssertionError(f"export {export_id} did not finish: {body}")


async def _download(http: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    url = urlsplit(body["download_url"])
    return await http.get(f"{url.path}?{url.query}")  # no bearer: the link is signed


def _occupancy_rows(fmt: str, data: bytes) -> list[dict[str, Any]]:
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(data.decode())))
    if fmt == "geojson":
        fc = FeatureCollection.model_validate_json(data)  # the GeoJSON model of the reference project
        return [dict(f.properties or {}) for f in fc.features]
    table = pq.read_table(io.BytesIO(data))
    return [{**r, "date": r["date"].isoformat()} for r in table.drop_columns(["geometry", "bbox"]).to_pylist()]


def _is_suppressed(fmt: str, row: dict[str, Any]) -> bool:
    if fmt == "csv":
        assert row["suppressed"] in ("true", "false")
        if row["suppressed"] == "true":
            assert row["value"] == ""  # empty: never a number, never -1
        return bool(row["suppressed"] == "true")
    if row["suppressed"]:
        assert row["value"] is None
    return bool(row["suppressed"])


def _value(fmt: str, row: dict[str, Any]) -> float:
    return float(row["value"])


async def test_exports_run_on_the_real_worker_and_read_back_in_every_format(
        settings: Settings, wall_ctx: AppContext, worker: subprocess.Popen[bytes], tmp_path: Path) -> None:
    users = UserFactory(wall_ctx)
    planner = await users.create("planner")
    op_a, op_b = await users.create("operator"), await users.create("operator")
    assert op_a.organisation_id and op_b.organisation_id
    world = await build_export_world(wall_ctx, org_a=op_a.organisation_id, org_b=op_b.organisation_id)
    app = create_app(settings, context=wall_ctx)
    files: dict[str, bytes] = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        started: dict[str, str] = {}
        for fmt in ("csv", "geojson", "parquet"):
            for kind in ("occupancy", "sessions"):
                res = await http.post("/api/v1/exports", headers=planner.headers, json={
                    "kind": kind, "from": DAY_FROM, "to": DAY_TO, "group_by": "lot", "format": fmt})
                assert res.status_code == 202, res.text
                assert res.json()["status"] == "queued" and res.headers["location"].endswith(res.json()["id"])
                started[f"{kind}.{fmt}"] = res.json()["id"]
        res = await http.post("/api/v1/exports", headers=planner.headers, json={
            "kind": "occupancy", "from": DAY_FROM, "to": DAY_TO, "group_by": "h3", "h3_res": 6, "format": "parquet"})
        started["occupancy.h3.parquet"] = res.json()["id"]
        res = await http.post("/api/v1/exports", headers=op_b.headers, json={
            "kind": "occupancy", "from": DAY_FROM, "to": DAY_TO, "group_by": "lot", "format": "csv", "min_sessions": 9})
        started["operator_b.csv"] = res.json()["id"]

        for name, export_id in started.items():
            headers = op_b.headers if name.startswith("operator_b") else planner.headers
            body = await _wait_done(http, export_id, headers)
            assert body["status"] == "done", body
            assert body["progress"] == 1 and body["expires_at"] and body["download_expires_at"] <= body["expires_at"]
            res = await _download(http, body)
            assert res.status_code == 200, res.text
            fmt = name.rsplit(".", 1)[1]
            assert res.headers["content-type"].startswith(
                {"csv": "text/csv", "geojson": "application/geo+json", "parquet": "application/vnd.apache.parquet"}[fmt])
            files[name] = res.content
            body["_fmt"] = fmt
            started[name] = body  # type: ignore[assignment]

        # the link is signed: a changed signature or another export's id is refused
        body = started["occupancy.csv"]  # type: ignore[assignment]
        url = urlsplit(body["download_url"])  # type: ignore[index]
        tampered = url.query.replace("signature=", "signature=0")
        assert (await http.get(f"{url.path}?{tampered}")).status_code == 403
        other = started["sessions.csv"]["id"]  # type: ignore[index]
        assert (await http.get(f"/api/v1/exports/{other}/download?{url.query}")).status_code == 403

    a, b = str(world.lot_a), str(world.lot_b)
    busy = (BUSY_DATE, BUSY_HOUR)
    # --- occupancy, by lot, in all three formats: the same rows -----------------------------------------------
    for fmt in ("csv", "geojson", "parquet"):
        rows = _occupancy_rows(fmt, files[f"occupancy.{fmt}"])
        assert len(rows) == 2 * 24 * 4, fmt  # two lots x 24 local hours x 4 metrics
        assert {r["curb_place_type"] for r in rows} == {"area"}
        keyed = rows_by_key(rows)
        # lot A: 10 sessions in the hour (the threshold): published
        got = {m: keyed[(a, m, *busy)] for m in ("occupancy_percent", "total_sessions", "turnover", "average_dwell_time")}
        assert not any(_is_suppressed(fmt, r) for r in got.values()), fmt
        # + the car still parked since 18:00 UTC: 11 sessions, 10 x 30 min + 60 min occupied of 20 x 60 min
        assert _value(fmt, got["total_sessions"]) == 11
        assert _value(fmt, got["occupancy_percent"]) == pytest.approx(100 * (10 * 1800 + 3600) / (20 * 3600))
        assert _value(fmt, got["turnover"]) == pytest.approx(11 / 20)
        # lot B: 9 sessions (one below): every metric suppressed
        assert all(_is_suppressed(fmt, keyed[(b, m, *busy)]) for m in ("occupancy_percent", "total_sessions",
                                                                        "turnover", "average_dwell_time")), fmt
        published = [r for r in rows if not _is_suppressed(fmt, r)]
        assert {(r["curb_place_id"], r["date"], int(r["hour"])) for r in published} == {(a, *busy)}, fmt
        assert all(str(r["value"]) != "-1" for r in rows)
    body = started["occupancy.csv"]  # type: ignore[assignment]
    assert body["rows"] == 192 and body["suppressed"] == 188  # type: ignore[index]

    # --- GeoParquet: geopandas reads it, the validator passes core and covering -----------------------------------
    for name in ("occupancy.parquet", "sessions.parquet", "occupancy.h3.parquet"):
        path = tmp_path / f"{name}.parquet"
        path.write_bytes(files[name])
        assert geo_metadata_errors(files[name]) == [], name  # the official GeoParquet 1.1.0 JSON schema
        report = gpv.check(str(path))
        assert report["version"] == "1.1.0", report
        assert gpv.failed(report) == [], report
        assert any(o["id"] == "/conf/covering/keys" and o["status"] == "pass" for o in report["outcomes"])
        gdf = gpd.read_parquet(path)
        assert gdf.crs is not None and gdf.crs.to_string() == "OGC:CRS84"
        if name == "occupancy.parquet":
            points = {(round(g.x, 4), round(g.y, 4)) for g in gdf.geometry}
            assert points == {(round(LNG_A, 4), round(LAT_A, 4)), (round(LNG_B, 4), round(LAT_B, 4))}
    # grouped by H3 r6: both lots in one cell, so 19 + 1 sessions in the busy hour: published, as a hexagon
    cell = h3.latlng_to_cell(LAT_A, LNG_A, 6)
    assert h3.latlng_to_cell(LAT_B, LNG_B, 6) == cell
    h3_gdf = gpd.read_parquet(tmp_path / "occupancy.h3.parquet.parquet")
    assert set(h3_gdf["h3_cell"]) == {cell} and set(h3_gdf.geometry.geom_type) == {"Polygon"}
    busy_cell = h3_gdf[(h3_gdf["hour"] == 10) & (h3_gdf["metric_type"] == "total_sessions")]
    assert list(busy_cell["value"]) == [20] and not busy_cell["suppressed"].any()
    assert all(h3_gdf.geometry.iloc[0].contains(__import__("shapely").Point(lng, lat))
               for lat, lng in ((LAT_A, LNG_A), (LAT_B, LNG_B)))

    # --- sessions: lot A's 10 completed sessions, rounded; lot B's 9 suppressed; the parked car not listed ------
    for fmt in ("csv", "geojson", "parquet"):
        data = files[f"sessions.{fmt}"]
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(data.decode())))
        elif fmt == "geojson":
            rows = [dict(f.properties or {}) for f in FeatureCollection.model_validate_json(data).features]
        else:
            rows = pq.read_table(io.BytesIO(data)).drop_columns(["geometry", "bbox"]).to_pylist()
            for r in rows:
                r["event_time_start"] = r["event_time_start"].strftime("%Y-%m-%dT%H:%M:%SZ")
        assert len(rows) == 10 and {r["curb_place_id"] for r in rows} == {a}, fmt
        starts = sorted(r["event_time_start"] for r in rows)
        assert all(s[14:16] in ("00", "15", "30", "45") and s.endswith(":00Z") for s in starts)
        assert starts[0] == "2026-01-06T18:00:00Z" and starts[-1] == "2026-01-06T18:15:00Z"
        assert {int(r["duration_minutes"]) for r in rows} <= {30, 45, 15}
        assert {r["vehicle_type"] for r in rows} == {"ev", "regular"}
        assert len({r["session_id"] for r in rows}) == 10
    body = started["sessions.csv"]  # type: ignore[assignment]
    assert body["rows"] == 10 and body["suppressed"] == 9  # type: ignore[index]
    ids_csv = {r["session_id"] for r in csv.DictReader(io.StringIO(files["sessions.csv"].decode()))}
    ids_json = {f.properties["session_id"] for f in FeatureCollection.model_validate_json(
        files["sessions.geojson"]).features if f.properties}
    assert not ids_csv & ids_json  # fresh ids per export: nothing to join two exports on

    # --- an operator's export covers only the operator's lots ----------------------------------------------------
    rows = list(csv.DictReader(io.StringIO(files["operator_b.csv"].decode())))
    assert {r["curb_place_id"] for r in rows} == {b}
    assert [r["value"] for r in rows if r["metric_type"] == "total_sessions" and r["hour"] == "10"] == ["9"]

    # --- no plate, user, reservation, session or payment id anywhere in any file ----------------------------------
    for name, data in files.items():
        fmt = name.rsplit(".", 1)[1]
        assert leaks(data, fmt, world.plates + world.secrets) == [], name
    assert len(world.plates) == 20 and BUSY_HOUR_UTC.year == 2026
