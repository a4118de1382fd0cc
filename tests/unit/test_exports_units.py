"""Exports' pure parts: the local-hour grid across DST, the metrics and the privacy threshold, the request model,
places, and the leak search the end-to-end tests rely on (shown able to find a plate in a compressed file)."""

from __future__ import annotations

import dataclasses
import io
import json
import uuid
from datetime import UTC, datetime

import geoparquet_validator as gpv
import h3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from jsonschema import Draft7Validator
from pydantic import ValidationError
from shapely.geometry import Point

from analytics.exports.metrics import METRIC_TYPES, metric_batch
from analytics.exports.places import LotRow, Place, build_places, cell_id
from analytics.exports.source import PlaceHours, hour_grid
from analytics.exports.spec import ExportRequest, check_request
from analytics.exports.writers import OCCUPANCY, GeoParquetWriter
from core.errors import ValidationFailed
from tests.exports_world import GEO_SCHEMA, geo_metadata_errors, leaks


def test_hour_grid_merges_the_repeated_hour_and_skips_the_missing_one() -> None:
    # Los Angeles: DST ends 2026-11-01 02:00 PDT (01:00 happens twice), starts 2026-03-08 02:00 PST (no 02:00)
    autumn = hour_grid("America/Los_Angeles", datetime(2026, 11, 1, 7, tzinfo=UTC), datetime(2026, 11, 2, 8, tzinfo=UTC))
    assert len(autumn) == 24 and str(autumn.dates[0]) == "2026-11-01" and autumn.hours[0] == 0
    assert autumn.seconds[1] == 7200.0 and autumn.hours[1] == 1 and list(autumn.hours).count(1) == 1
    assert autumn.seconds.sum() == 25 * 3600
    spring = hour_grid("America/Los_Angeles", datetime(2026, 3, 8, 8, tzinfo=UTC), datetime(2026, 3, 9, 7, tzinfo=UTC))
    assert list(spring.hours) == [h for h in range(24) if h != 2]
    # a half-hour zone: local hours still whole (every offset is a multiple of 15 minutes)
    india = hour_grid("Asia/Kolkata", datetime(2026, 1, 1, 0, 0, tzinfo=UTC), datetime(2026, 1, 1, 2, 0, tzinfo=UTC))
    assert list(zip(india.hours.tolist(), india.seconds.tolist(), strict=True)) == [(5, 1800.0), (6, 3600.0),
                                                                                   (7, 1800.0)]
    # where local hours start, in minutes past a UTC hour (None: it changes within the period)
    assert autumn.hour_phase == 0 and india.hour_phase == 30
    assert hour_grid("America/St_Johns", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)).hour_phase == 30
    # Lord Howe Island moves by half an hour when its DST ends (2026-04-05 02:00 +11 -> 01:30 +10:30)
    assert hour_grid("Australia/Lord_Howe", datetime(2026, 4, 4, tzinfo=UTC),
                     datetime(2026, 4, 5, tzinfo=UTC)).hour_phase is None


_GRID = hour_grid("America/Los_Angeles", datetime(2026, 1, 6, 18, tzinfo=UTC), datetime(2026, 1, 6, 19, tzinfo=UTC))


def _hour(sessions: int, *, started: int = 0, occupied: float = 0.0, dwell: float = 0.0,
          capacity: int = 20) -> PlaceHours:
    return PlaceHours(0, capacity, _GRID, np.array([sessions]), np.array([started]), np.array([occupied]),
                      np.array([dwell]))


def _rows(block: PlaceHours, min_sessions: int) -> tuple[list[dict[str, object]], int]:
    batch, hidden = metric_batch([block], min_sessions=min_sessions)
    return batch.to_pylist(), hidden


def test_the_threshold_publishes_at_min_sessions_and_suppresses_one_below() -> None:
    at, at_hidden = _rows(_hour(10, started=10, occupied=18000, dwell=10 * 1800), 10)
    assert at_hidden == 0 and [r["metric_type"] for r in at] == list(METRIC_TYPES)
    assert [r["value"] for r in at] == [25.0, 10, 0.5, 30.0] and not any(r["suppressed"] for r in at)
    assert {(str(r["date"]), r["hour"]) for r in at} == {("2026-01-06", 10)}
    below, below_hidden = _rows(_hour(9, started=9, occupied=16200, dwell=9 * 1800), 10)
    assert below_hidden == 4 and all(r["suppressed"] and r["value"] is None for r in below)
    empty, _ = _rows(_hour(0), 1)
    assert all(r["value"] is None and r["suppressed"] for r in empty)  # nothing parked is below any threshold


def test_occupancy_never_passes_100_percent_and_a_lot_without_spaces_has_no_rate() -> None:
    rows, _ = _rows(_hour(30, occupied=30 * 3600), 10)  # more cars than spaces (bad data)
    assert rows[0]["value"] == 100.0
    rows, _ = _rows(_hour(12, started=3, occupied=3600, capacity=0), 10)
    assert [r["value"] for r in rows][:3] == [None, 12, None] and not rows[0]["suppressed"]


def test_request_rules_name_the_field() -> None:
    base = {"kind": "occupancy", "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "group_by": "lot",
            "format": "csv"}
    req = check_request(ExportRequest.model_validate(base))
    assert req.resolution is None and req.min_sessions == 10
    assert ExportRequest.model_validate({**base, "group_by": "h3"}).resolution == 8
    with pytest.raises(ValidationFailed) as exc:
        check_request(ExportRequest.model_validate({**base, "to": base["from"]}))
    assert exc.value.loc == ("body", "from")
    with pytest.raises(ValidationFailed) as exc:
        check_request(ExportRequest.model_validate({**base, "to": "2027-01-03T00:00:00Z"}))
    assert exc.value.loc == ("body", "to")
    with pytest.raises(ValidationError) as verr:
        ExportRequest.model_validate({**base, "group_by": "h3", "h3_res": 11})
    assert verr.value.errors()[0]["loc"] == ("h3_res",)


def test_places_group_lots_by_cell_with_summed_capacity() -> None:
    a = LotRow(uuid.uuid4(), "America/Los_Angeles", 20, 37.7793, -122.4193)
    b = LotRow(uuid.uuid4(), "America/Los_Angeles", 30, 37.7815, -122.4160)
    lots = build_places([a, b], resolution=None)
    assert {p.curb_place_id for p in lots} == {str(a.id), str(b.id)}
    assert all(isinstance(p.geometry, Point) for p in lots)
    cells = build_places([a, b], resolution=6)
    cell = h3.latlng_to_cell(a.lat, a.lng, 6)
    assert len(cells) == 1 and cells[0].h3_cell == cell and cells[0].capacity == 50
    assert cells[0].curb_place_id == cell_id(cell) == str(uuid.uuid5(uuid.UUID("6f1c3f0e-2d8b-5b57-9c1e-7a0d51e0a8c4"),
                                                                      f"h3:{cell}"))
    assert cells[0].geometry.exterior.is_ccw and cells[0].geometry.contains(Point(a.lng, a.lat))


def test_the_leak_search_finds_a_plate_inside_a_compressed_parquet_file() -> None:
    # negative control of the end-to-end "no plate bytes" checks: Parquet pages are compressed, so searching the
    # raw bytes would find nothing even if a plate were there; the search reads the values instead
    buf = io.BytesIO()
    pq.write_table(pa.table({"plate": [f"7APX{i:03d}" for i in range(1000)]}), buf, compression="zstd",
                   write_statistics=False)
    data = buf.getvalue()
    assert b"7APX500" not in data
    assert leaks(data, "parquet", ["7APX500", "7BPX500"]) == ["7APX500"]
    assert leaks(b"a,b\n7APX001,1\n", "csv", ["7APX001"]) == ["7APX001"]


def _places() -> list[Place]:
    lots = [LotRow(uuid.uuid4(), "America/Los_Angeles", 20, 37.7793, -122.4193),
            LotRow(uuid.uuid4(), "America/Los_Angeles", 30, 37.7815, -122.4160)]
    return build_places(lots, resolution=9) + build_places(lots, resolution=None)[:1]


def test_streamed_geoparquet_is_valid_by_the_official_schema_and_validator() -> None:
    places = [dataclasses.replace(p, rank=i) for i, p in enumerate(_places())]  # two cells and a lot point
    buf = io.BytesIO()
    writer = GeoParquetWriter(buf, OCCUPANCY, places)
    writer.row_group_rows = 4  # a row group per place-hour, so the file has several
    for p in places:
        batch, _ = metric_batch([PlaceHours(p.rank, p.capacity, _GRID, np.array([12]), np.array([3]),
                                            np.array([3600.0]), np.array([12 * 1800.0]))], min_sessions=10)
        writer.write(batch)
    writer.close()
    data = buf.getvalue()
    assert geo_metadata_errors(data) == []
    report = gpv.check_bytes("occupancy.parquet", data)
    assert report["version"] == "1.1.0" and gpv.failed(report) == [], report
    meta = json.loads(pq.ParquetFile(io.BytesIO(data)).metadata.metadata[b"geo"])  # the footer's, as other readers
    assert meta == json.loads(pq.ParquetFile(io.BytesIO(data)).schema_arrow.metadata[b"geo"])  # and pyarrow's
    assert meta["columns"]["geometry"]["geometry_types"] == ["Point", "Polygon"]
    assert pq.ParquetFile(io.BytesIO(data)).num_row_groups == 3
    # negative controls: the schema and the validator do refuse a wrong file
    bad = dict(meta, version="1.1")
    assert list(Draft7Validator(GEO_SCHEMA).iter_errors(bad))
    table = pq.read_table(io.BytesIO(data))
    broken = io.BytesIO()
    wrong = dict(meta["columns"]["geometry"], geometry_types=["Point"])  # the file also holds polygons
    pq.write_table(table.replace_schema_metadata({b"geo": json.dumps(dict(meta, columns={"geometry": wrong}))}), broken)
    assert gpv.failed(gpv.check_bytes("broken.parquet", broken.getvalue()))
