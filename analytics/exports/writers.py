"""Streamed file writers: CSV, GeoJSON and GeoParquet 1.1. Rows arrive in batches and leave for the file at once
(GeoParquet: one row group per batch), so memory stays flat whatever the export's size.

A row is a tuple whose first item is its place's rank; the place's columns (curb place, H3 cell, shape) are
joined on the way out. Two tables: CDS Metrics aggregates (occupancy) and CDS Metrics sessions (sessions)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, BinaryIO, Protocol

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from analytics.exports.places import CURB_PLACE_TYPE, Place, bounds

GEOPARQUET_VERSION = "1.1.0"
_GEOMETRY_TYPES = {0: "Point", 3: "Polygon"}  # shapely type ids of lot points and cell polygons


@dataclass(frozen=True)
class Table:
    """Column names and types of the rows of one export kind (the place's columns are joined by the writer)."""

    name: str
    # (column, arrow type, where from): "row:N" (item N of the row tuple), "place:ATTR", or "const:VALUE"
    columns: tuple[tuple[str, pa.DataType, str], ...]

    @property
    def names(self) -> list[str]:
        return [c[0] for c in self.columns]


OCCUPANCY = Table("occupancy", (
    ("curb_place_type", pa.string(), "const:" + CURB_PLACE_TYPE),
    ("curb_place_id", pa.string(), "place:curb_place_id"),
    ("metric_type", pa.string(), "row:1"),
    ("date", pa.date32(), "row:2"),
    ("hour", pa.int8(), "row:3"),
    ("value", pa.float64(), "row:4"),
    ("suppressed", pa.bool_(), "row:5"),
    ("place_type", pa.string(), "place:place_type"),
    ("h3_cell", pa.string(), "place:h3_cell"),
))

SESSIONS = Table("sessions", (
    ("session_id", pa.string(), "row:1"),
    ("session_type", pa.string(), "const:parking"),
    ("curb_place_type", pa.string(), "const:" + CURB_PLACE_TYPE),
    ("curb_place_id", pa.string(), "place:curb_place_id"),
    ("place_type", pa.string(), "place:place_type"),
    ("h3_cell", pa.string(), "place:h3_cell"),
    ("vehicle_type", pa.string(), "row:2"),
    ("event_time_start", pa.timestamp("s", tz="UTC"), "row:3"),
    ("event_time_end", pa.timestamp("s", tz="UTC"), "row:4"),
    ("duration_minutes", pa.int32(), "row:5"),
))


class ExportWriter(Protocol):
    def write(self, rows: Sequence[tuple[Any, ...]]) -> None: ...

    def close(self) -> None: ...


def _csv_value(v: Any) -> Any:
    if v is True:
        return "true"
    if v is False:
        return "false"
    return v


def _getters(table: Table, places: Sequence[Place]) -> list[Callable[[tuple[Any, ...]], Any]]:
    """One function per column: row -> value (place columns looked up by the row's rank)."""
    out: list[Callable[[tuple[Any, ...]], Any]] = []
    for _, _, src in table.columns:
        kind, _, arg = src.partition(":")
        if kind == "row":
            out.append(itemgetter(int(arg)))
        elif kind == "place":
            out.append(_place_getter([getattr(p, arg) for p in places]))
        else:
            out.append(_const_getter(arg))
    return out


def _place_getter(values: list[Any]) -> Callable[[tuple[Any, ...]], Any]:
    def get(r: tuple[Any, ...]) -> Any:
        return values[r[0]]
    return get


def _const_getter(value: str) -> Callable[[tuple[Any, ...]], Any]:
    def get(r: tuple[Any, ...]) -> Any:
        return value
    return get


class CsvWriter:
    """CSV with a header row; empty cells for missing values; booleans as true/false."""

    def __init__(self, out: BinaryIO, table: Table, places: Sequence[Place]) -> None:
        self._text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=False)
        self._csv = csv.writer(self._text, lineterminator="\n")
        self._csv.writerow(table.names)
        self._row = self._compile(table, places)

    @staticmethod
    def _compile(table: Table, places: Sequence[Place]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
        getters = _getters(table, places)
        bools = {i for i, (_, t, _) in enumerate(table.columns) if t == pa.bool_()}

        def row(r: tuple[Any, ...]) -> tuple[Any, ...]:
            return tuple(_csv_value(g(r)) if i in bools else g(r) for i, g in enumerate(getters))

        if table is OCCUPANCY:  # the hot table, spelled out (a third of the time of the generic path)
            ids = [p.curb_place_id for p in places]
            kinds = [p.place_type for p in places]
            cells = [p.h3_cell for p in places]
            tf = {True: "true", False: "false"}

            def row(r: tuple[Any, ...]) -> tuple[Any, ...]:
                p = r[0]
                return (CURB_PLACE_TYPE, ids[p], r[1], r[2], r[3], r[4], tf[r[5]], kinds[p], cells[p])

        return row

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self._csv.writerows(map(self._row, rows))

    def close(self) -> None:
        self._text.flush()
        self._text.detach()


class GeoJsonWriter:
    """A GeoJSON FeatureCollection (RFC 7946), one Feature per row with its place's shape, written as it goes."""

    def __init__(self, out: BinaryIO, table: Table, places: Sequence[Place]) -> None:
        self._out = out
        self._names = table.names
        self._getters = _getters(table, places)
        self._geometry = [orjson.dumps(shapely.geometry.mapping(p.geometry)) for p in places]
        box = bounds(places)
        head = b'{"type":"FeatureCollection",' + (b'"bbox":' + orjson.dumps(list(box)) + b"," if box else b"")
        out.write(head + b'"features":[\n')
        self._first = True

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        names, getters, geometry = self._names, self._getters, self._geometry
        parts = []
        for r in rows:
            props = orjson.dumps(dict(zip(names, (g(r) for g in getters), strict=True)))
            parts.append(b'{"type":"Feature","geometry":' + geometry[r[0]] + b',"properties":' + props + b"}")
        if parts:
            self._out.write((b"" if self._first else b",\n") + b",\n".join(parts))
            self._first = False

    def close(self) -> None:
        self._out.write(b"\n]}\n")


class GeoParquetWriter:
    """GeoParquet 1.1: WKB `geometry` (lng/lat, OGC:CRS84 by default), a `bbox` covering column, a row group per
    `row_group_rows` rows; the `geo` metadata (with the file's bbox and geometry types) goes into the footer when the
    file closes."""

    row_group_rows = 65_536

    def __init__(self, out: BinaryIO, table: Table, places: Sequence[Place]) -> None:
        self._table = table
        self._places = places
        geoms = [p.geometry for p in places]
        self._wkb = pa.array(shapely.to_wkb(geoms, output_dimension=2, flavor="iso") if geoms else [],
                             type=pa.binary())
        b = shapely.bounds(geoms) if geoms else np.empty((0, 4))
        self._bbox = pa.StructArray.from_arrays(
            [pa.array(b[:, i], type=pa.float64()) for i in range(4)], names=["xmin", "ymin", "xmax", "ymax"])
        self._place_cols = {attr: pa.array([getattr(p, attr) for p in places], type=pa.string())
                            for attr in ("curb_place_id", "place_type", "h3_cell")}
        self._used = np.zeros(len(places), dtype=bool)
        fields = [pa.field(n, t) for n, t, _ in table.columns]
        fields += [pa.field("geometry", pa.binary()), pa.field("bbox", self._bbox.type)]
        self.schema = pa.schema(fields)
        self._writer = pq.ParquetWriter(out, self.schema, compression="zstd", write_statistics=True)
        self._pending: list[tuple[Any, ...]] = []

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self._pending.extend(rows)
        if len(self._pending) >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        rows, self._pending = self._pending, []
        if not rows:
            return
        cols = list(zip(*rows, strict=True))
        idx = np.fromiter(cols[0], dtype=np.int64, count=len(rows))
        self._used[idx] = True
        take = pa.array(idx)
        arrays: list[pa.Array] = []
        for _name, typ, src in self._table.columns:
            kind, _, arg = src.partition(":")
            if kind == "row":
                values = cols[int(arg)]
                if typ in (pa.date32(),) or pa.types.is_timestamp(typ):
                    arrays.append(pa.array(values, type=pa.string()).cast(typ))
                else:
                    arrays.append(pa.array(values, type=typ))
            elif kind == "place":
                arrays.append(self._place_cols[arg].take(take))
            else:
                arrays.append(pa.array(np.full(len(rows), arg, dtype=object), type=typ))
        arrays += [self._wkb.take(take), self._bbox.take(take)]
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema), row_group_size=len(rows))

    def geo_metadata(self) -> dict[str, Any]:
        used = [p for p, u in zip(self._places, self._used, strict=True) if u]
        column: dict[str, Any] = {
            "encoding": "WKB",
            "geometry_types": sorted({_GEOMETRY_TYPES[shapely.get_type_id(p.geometry)] for p in used}),
            "covering": {"bbox": {"xmin": ["bbox", "xmin"], "ymin": ["bbox", "ymin"],
                                  "xmax": ["bbox", "xmax"], "ymax": ["bbox", "ymax"]}},
        }
        box = bounds(used)
        if box is not None:
            column["bbox"] = list(box)
        return {"version": GEOPARQUET_VERSION, "primary_column": "geometry", "columns": {"geometry": column},
                "creator": {"library": "pyarrow", "version": pa.__version__}}

    def close(self) -> None:
        self._flush()
        self._writer.add_key_value_metadata({"geo": orjson.dumps(self.geo_metadata()).decode()})
        self._writer.close()


def open_writer(fmt: str, out: BinaryIO, table: Table, places: Sequence[Place]) -> ExportWriter:
    """A writer of `fmt` (csv, geojson, parquet) over `out`."""
    if fmt == "csv":
        return CsvWriter(out, table, places)
    if fmt == "geojson":
        return GeoJsonWriter(out, table, places)
    if fmt == "parquet":
        return GeoParquetWriter(out, table, places)
    raise ValueError(f"unknown format {fmt!r}")
