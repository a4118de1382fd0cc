"""Read OpenStreetMap car parks (`amenity=parking`) from a Geofabrik `.osm.pbf` extract (pyosmium), an Overpass
JSON answer (`out geom;` or `out center;`) or a GeoJSON FeatureCollection (Overpass turbo's export).

Everything is read before anything is written: a truncated or non-OSM file raises `OsmFileError` and the import
writes nothing. Each car park comes out as an `OsmParking` (its OSM ref, tags and geometry) or as a skip with the
reason (an open way, a multipolygon that could not be assembled, a relation that is not a multipolygon).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import osmium
import shapely
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import polygonize, unary_union

PBF_SUFFIXES = (".pbf", ".osm", ".o5m", ".bz2", ".gz", ".opl")
ProgressFn = Callable[[str, int, int | None], None]  # (phase, done, total or None)


class OsmFileError(ValueError):
    """The file is not an OpenStreetMap extract this importer reads, or it is damaged (truncated)."""


@dataclass(frozen=True)
class OsmParking:
    index: int  # position in the input (for reports)
    ref: str  # "node/1", "way/2", "relation/3"
    tags: dict[str, str]
    geometry: BaseGeometry | None  # Point, Polygon or MultiPolygon (lon/lat)


@dataclass(frozen=True)
class OsmSkip:
    index: int
    ref: str | None
    reason: str


Item = OsmParking | OsmSkip


def read_osm(path: Path, *, progress: ProgressFn | None = None) -> list[Item]:
    """Every `amenity=parking` object of the file (or skip); raises OsmFileError for a file it cannot read."""
    name = path.name.lower()
    if name.endswith((".json", ".geojson")):
        return read_json(_load_json(path), progress=progress)
    if name.endswith(PBF_SUFFIXES):
        return read_pbf(path, progress=progress)
    head = path.read_bytes()[:64].lstrip()
    if head.startswith((b"{", b"[")):
        return read_json(_load_json(path), progress=progress)
    raise OsmFileError(f"{path.name}: not an OpenStreetMap file (expected .osm.pbf, Overpass JSON or GeoJSON)")


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise OsmFileError(f"{path.name}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise OsmFileError(f"{path.name}: not valid JSON (truncated?): {exc}") from None


# --- .osm.pbf -----------------------------------------------------------------------------------------

def read_pbf(path: Path, *, progress: ProgressFn | None = None) -> list[Item]:
    """Nodes, closed ways and multipolygons tagged amenity=parking, areas assembled by libosmium."""
    wkb = osmium.geom.WKBFactory()
    items: list[Item] = []
    areas: set[str] = set()
    multipolygons: dict[str, tuple[int, dict[str, str]]] = {}
    closed_ways: set[str] = set()
    processor = osmium.FileProcessor(str(path)).with_areas().with_filter(osmium.filter.TagFilter(("amenity", "parking")))
    try:
        for n, obj in enumerate(processor):
            if progress is not None and n % 1000 == 0:
                progress("read", n, None)
            tags = {t.k: t.v for t in obj.tags}
            if isinstance(obj, osmium.osm.Area):
                ref = f"{'way' if obj.from_way() else 'relation'}/{obj.orig_id()}"
                areas.add(ref)
                try:
                    geom = shapely.from_wkb(bytes.fromhex(wkb.create_multipolygon(obj)))
                except (RuntimeError, shapely.errors.GEOSException) as exc:
                    items.append(OsmSkip(len(items), ref, f"outline could not be built: {exc}"))
                    continue
                if isinstance(geom, MultiPolygon) and len(geom.geoms) == 1:
                    geom = geom.geoms[0]
                items.append(OsmParking(len(items), ref, tags, geom))
            elif isinstance(obj, osmium.osm.Node):
                items.append(OsmParking(len(items), f"node/{obj.id}", tags, Point(obj.location.lon, obj.location.lat)))
            elif isinstance(obj, osmium.osm.Way):
                if obj.is_closed():
                    closed_ways.add(f"way/{obj.id}")  # its area comes separately
                else:
                    items.append(OsmSkip(len(items), f"way/{obj.id}", "an open way, not an area (not closed)"))
            elif isinstance(obj, osmium.osm.Relation):
                ref = f"relation/{obj.id}"
                if tags.get("type") == "multipolygon":
                    multipolygons[ref] = (len(items), tags)
                else:
                    items.append(OsmSkip(len(items), ref, f"relation type={tags.get('type')!r}, not a multipolygon"))
    except RuntimeError as exc:
        raise OsmFileError(f"{path.name}: cannot be read as OpenStreetMap data (truncated or not OSM?): {exc}") \
            from None
    for ref in sorted(set(multipolygons) - areas):
        items.append(OsmSkip(len(items), ref, "multipolygon could not be assembled (members missing from the extract?)"))
    for ref in sorted(closed_ways - areas):
        items.append(OsmSkip(len(items), ref, "closed way whose outline could not be assembled"))
    if progress is not None:
        progress("read", len(items), len(items))
    return items


# --- Overpass JSON and GeoJSON ------------------------------------------------------------------------

def read_json(doc: Any, *, progress: ProgressFn | None = None) -> list[Item]:
    """An Overpass answer (`{"elements": [...]}`) or a GeoJSON FeatureCollection."""
    if isinstance(doc, dict) and isinstance(doc.get("elements"), list):
        items = list(_overpass(doc["elements"]))
    elif isinstance(doc, dict) and doc.get("type") == "FeatureCollection" and isinstance(doc.get("features"), list):
        items = list(_geojson(doc["features"]))
    else:
        raise OsmFileError("not OpenStreetMap JSON: expected an Overpass answer (elements) or a GeoJSON "
                           "FeatureCollection")
    if progress is not None:
        progress("read", len(items), len(items))
    return items


def _str_tags(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): str(v) for k, v in raw.items() if v is not None}


def _ring(points: Any) -> list[tuple[float, float]]:
    return [(float(p["lon"]), float(p["lat"])) for p in points]


def _overpass(elements: list[Any]) -> Iterator[Item]:
    for i, el in enumerate(elements):
        if not isinstance(el, dict) or el.get("type") not in {"node", "way", "relation"} or "id" not in el:
            yield OsmSkip(i, None, "not an OSM element (type node/way/relation with an id)")
            continue
        ref = f"{el['type']}/{el['id']}"
        tags = _str_tags(el.get("tags"))
        try:
            geom = _overpass_geometry(el, tags)
        except (KeyError, TypeError, ValueError) as exc:
            yield OsmSkip(i, ref, f"malformed geometry: {exc}")
            continue
        if isinstance(geom, str):
            yield OsmSkip(i, ref, geom)
        else:
            yield OsmParking(i, ref, tags, geom)


def _overpass_geometry(el: dict[str, Any], tags: dict[str, str]) -> BaseGeometry | str | None:
    """The element's geometry, a skip reason, or None (no geometry in the answer)."""
    if el["type"] == "node":
        return Point(float(el["lon"]), float(el["lat"])) if "lat" in el and "lon" in el else None
    if el["type"] == "way":
        if isinstance(el.get("geometry"), list) and len(el["geometry"]) >= 4:
            ring = _ring(el["geometry"])
            if ring[0] != ring[-1]:
                return "an open way, not an area (not closed)"
            return Polygon(ring)
        if isinstance(el.get("center"), dict):
            return Point(float(el["center"]["lon"]), float(el["center"]["lat"]))
        return None
    if tags.get("type") != "multipolygon":
        return f"relation type={tags.get('type')!r}, not a multipolygon"
    outers = [LineString(_ring(m["geometry"])) for m in el.get("members") or []
              if isinstance(m, dict) and m.get("role") in {"outer", ""} and isinstance(m.get("geometry"), list)
              and len(m["geometry"]) >= 2]
    if outers:
        inners = [Polygon(_ring(m["geometry"])) for m in el.get("members") or []
                  if isinstance(m, dict) and m.get("role") == "inner" and isinstance(m.get("geometry"), list)
                  and len(m["geometry"]) >= 4]
        polygons = list(polygonize(unary_union(outers)))
        if not polygons:
            return "multipolygon could not be assembled (outer ways do not close)"
        area = unary_union(polygons)
        if inners:
            area = area.difference(unary_union(inners))
        return area
    if isinstance(el.get("center"), dict):
        return Point(float(el["center"]["lon"]), float(el["center"]["lat"]))
    return None


def _geojson(features: list[Any]) -> Iterator[Item]:
    for i, feature in enumerate(features):
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            yield OsmSkip(i, None, "not a GeoJSON Feature")
            continue
        props = feature.get("properties") or {}
        if not isinstance(props, dict):
            yield OsmSkip(i, None, "properties is not an object")
            continue
        tags = _str_tags(props["tags"] if isinstance(props.get("tags"), dict) else props)
        raw = feature.get("id") or props.get("@id") or props.get("id")
        if props.get("type") in {"node", "way", "relation"} and props.get("id") is not None:
            raw = f"{props['type']}/{props['id']}"
        if not raw:
            yield OsmSkip(i, None, "no OSM id (feature id or @id)")
            continue
        ref = str(raw)
        geometry = feature.get("geometry")
        if not geometry:
            yield OsmParking(i, ref, tags, None)
            continue
        if not isinstance(geometry, dict) or geometry.get("type") not in {"Point", "Polygon", "MultiPolygon"}:
            kind = geometry.get("type") if isinstance(geometry, dict) else type(geometry).__name__
            yield OsmSkip(i, ref, f"unsupported geometry {kind!r}")
            continue
        try:
            yield OsmParking(i, ref, tags, shape(geometry))
        except (ValueError, TypeError, AttributeError, IndexError, KeyError):
            yield OsmSkip(i, ref, "malformed geometry")
