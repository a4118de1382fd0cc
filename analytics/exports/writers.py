"""Streamed file writers: CSV, GeoJSON and GeoParquet 1.1. Rows arrive as Arrow record batches and leave for the
file at once (GeoParquet: a row group per `row_group_rows`), so memory stays flat whatever the export's size.

A batch carries a `place` column (the place's rank); the place's columns (curb place id, place type, H3 cell,
shape) are joined on the way out. Two tables: CDS Metrics aggregates (occupancy) and CDS Metrics sessions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import shapely

from analytics.exports.places import CURB_PLACE_TYPE, Place, bounds

GEOPARQUET_VERSION = "1.1.0"
_GEOMETRY_TYPES = {0: "Point", 3: "Polygon"}  # shapely type ids of lot points and cell polygons


@dataclass(frozen=True)
class Table:
    """The columns of one export kind, in file order, with their file types and where each comes from:
    "row" (the batch's column of that name), "place:ATTR" (the row's place), or "const:VALUE"."""

    name: str
    columns: tuple[tuple[str, pa.DataType, str], ...]

    @property
    def names(self) -> list[str]:
        return [c[0] for c in self.columns]


OCCUPANCY = Table("occupancy", (
    ("curb_place_type", pa.string(), "const:" + CURB_PLACE_TYPE),
    ("curb_place_id", pa.string(), "place:curb_place_id"),
    ("metric_type", pa.string(), "row"),
    ("date", pa.date32(), "row"),
    ("hour", pa.int8(), "row"),
    ("value", pa.float64(), "row"),
    ("suppressed", pa.bool_(), "row"),
    ("place_type", pa.string(), "place:place_type"),
    ("h3_cell", pa.string(), "place:h3_cell"),
))

SESSIONS = Table("sessions", (
    ("session_id", pa.string(), "row"),
    ("session_type", pa.string(), "const:parking"),
    ("curb_place_type", pa.string(), "const:" + CURB_PLACE_TYPE),
    ("curb_place_id", pa.string(), "place:curb_place_id"),
    ("place_type", pa.string(), "place:place_type"),
    ("h3_cell", pa.string(), "place:h3_cell"),
    ("vehicle_type", pa.string(), "row"),
    ("event_time_start", pa.timestamp("s", tz="UTC"), "row"),  # RFC 3339 strings in CSV and GeoJSON
    ("event_time_end", pa.timestamp("s", tz="UTC"), "row"),
    ("duration_minutes", pa.int32(), "row"),
))


class ExportWriter(Protocol):
    def write(self, batch: pa.RecordBatch) -> None: ...

    def close(self) -> None: ...


class _Joiner:
    """Builds a file's columns from a batch: the batch's own, its places', constants."""

    def __init__(self, table: Table, places: Sequence[Place], *, typed: bool) -> None:
        self.table = table
        self.typed = typed  # cast row columns to the table's types (Parquet) or keep them (CSV, GeoJSON)
        self.place_cols = {attr: pa.array([getattr(p, attr) for p in places], type=pa.string())
                           for attr in ("curb_place_id", "place_type", "h3_cell")}
        self._consts: dict[str, pa.Array] = {}

    def _const(self, value: str, n: int) -> pa.Array:
        have = self._consts.get(value)
        if have is None or len(have) < n:
            have = self._consts[value] = pa.array(np.full(max(n, 65_536), value, dtype=object), type=pa.string())
        return have.slice(0, n)

    def columns(self, batch: pa.RecordBatch) -> list[pa.Array]:
        take = batch.column("place")
        out: list[pa.Array] = []
        for name, typ, src in self.table.columns:
            kind, _, arg = src.partition(":")
            if kind == "row":
                col = batch.column(name)
                out.append(col.cast(typ) if self.typed and col.type != typ else col)
            elif kind == "place":
                out.append(self.place_cols[arg].take(take))
            else:
                out.append(self._const(arg, batch.num_rows))
        return out


class CsvWriter:
    """CSV with a header row (Arrow's writer): empty cells for missing values, booleans as true/false. No value
    of ours needs quoting (ids, vocabulary words, numbers, dates), and Arrow refuses to write one that would."""

    def __init__(self, out: BinaryIO, table: Table, places: Sequence[Place]) -> None:
        self._join = _Joiner(table, places, typed=False)
        self._writer: pacsv.CSVWriter | None = None
        self._out = out

    def write(self, batch: pa.RecordBatch) -> None:
        cols = self._join.columns(batch)
        data = pa.RecordBatch.from_arrays(cols, names=self._join.table.names)
        if self._writer is None:
            self._writer = pacsv.CSVWriter(self._out, data.schema,
                                           write_options=pacsv.WriteOptions(quoting_style="none", quoting_header="none",
                                                                                      batch_size=65_536))
        self._writer.write_batch(data)

    def close(self) -> None:
        if self._writer is None:  # nothing written: the header alone
            self._out.write((",".join(self._join.table.names) + "\n").encode())
        else:
            self._writer.close()


class GeoJsonWriter:
    """A GeoJSON FeatureCollection (RFC 7946), one Feature per row with its place's shape, written as it goes."""

    def __init__(self, out: BinaryIO, table: Table, places: Sequence[Place],
                 present: Sequence[Place] | None = None) -> None:
        self._out = out
        self._join = _Joiner(table, places, typed=False)
        self._geometry = [orjson.dumps(shapely.geometry.mapping(p.geometry)) for p in places]
        box = bounds(places if present is None else present)
        head = b'{"type":"FeatureCollection",' + (b'"bbox":' + orjson.dumps(list(box)) + b"," if box else b"")
        out.write(head + b'"features":[\n')
        self._first = True

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        props = pa.RecordBatch.from_arrays(self._join.columns(batch), names=self._join.table.names).to_pylist()
        geometry = self._geometry
        parts = [b'{"type":"Feature","geometry":' + geometry[p] + b',"properties":' + orjson.dumps(row) + b"}"
                 for p, row in zip(batch.column("place").to_pylist(), props, strict=True)]
        self._out.write((b"" if self._first else b",\n") + b",\n".join(parts))
        self._first = False

    def close(self) -> None:
        self._out.write(b"\n]}\n")


class GeoParquetWriter:
    """GeoParquet 1.1: WKB `geometry` (lng/lat, OGC:CRS84 by default), a `bbox` covering column, a row group per
    `row_group_rows` rows; the `geo` metadata (with the file's bbox and geometry types) goes into the footer when
    the file closes."""

    row_group_rows = 65_536

    def __init__(self, out: BinaryIO, table: Table, places: Sequence[Place],
                 present: Sequence[Place] | None = None) -> None:
        self._join = _Joiner(table, places, typed=True)
        geoms = [p.geometry for p in places]
        self._wkb = pa.array(shapely.to_wkb(geoms, output_dimension=2, flavor="iso") if geoms else [],
                             type=pa.binary())
        b = shapely.bounds(geoms) if geoms else np.empty((0, 4))
        self._bbox = pa.StructArray.from_arrays(
            [pa.array(b[:, i], type=pa.float64()) for i in range(4)], names=["xmin", "ymin", "xmax", "ymax"])
        fields = [pa.field(n, t) for n, t, _ in table.columns]
        fields += [pa.field("geometry", pa.binary()), pa.field("bbox", self._bbox.type)]
        # the metadata is known before the first row: in the Arrow schema (pyarrow and geopandas read it there)
        # and in the file's key-value metadata (other readers and the validator read it there)
        self.geo = geo_metadata(places if present is None else present)
        self.schema = pa.schema(fields, metadata={"geo": orjson.dumps(self.geo).decode()})
        self._writer = pq.ParquetWriter(out, self.schema, compression="zstd", write_statistics=True)
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        take = batch.column("place")
        cols = [*self._join.columns(batch), self._wkb.take(take), self._bbox.take(take)]
        self._pending.append(pa.RecordBatch.from_arrays(cols, schema=self.schema))
        self._pending_rows += batch.num_rows
        if self._pending_rows >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.Table.from_batches(self._pending), row_group_size=self._pending_rows)
        self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        self._flush()
        self._writer.close()


def geo_metadata(places: Sequence[Place]) -> dict[str, Any]:
    """GeoParquet 1.1 `geo` metadata of a file holding these places' shapes (CRS omitted: OGC:CRS84)."""
    column: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": sorted({_GEOMETRY_TYPES[shapely.get_type_id(p.geometry)] for p in places}),
        "covering": {"bbox": {"xmin": ["bbox", "xmin"], "ymin": ["bbox", "ymin"],
                              "xmax": ["bbox", "xmax"], "ymax": ["bbox", "ymax"]}},
    }
    box = bounds(places)
    if box is not None:
        column["bbox"] = list(box)
    return {"version": GEOPARQUET_VERSION, "primary_column": "geometry", "columns": {"geometry": column},
            "creator": {"library": "pyarrow", "version": pa.__version__}}


def open_writer(fmt: str, out: BinaryIO, table: Table, places: Sequence[Place],
                present: Sequence[Place] | None = None) -> ExportWriter:
    """A writer of `fmt` (csv, geojson, parquet) over `out`; `present`: the places that will have rows (all of
    them by default), whose shapes make the file's extent."""
    if fmt == "csv":
        return CsvWriter(out, table, places)
    if fmt == "geojson":
        return GeoJsonWriter(out, table, places, present)
    if fmt == "parquet":
        return GeoParquetWriter(out, table, places, present)
    raise ValueError(f"unknown format {fmt!r}")
