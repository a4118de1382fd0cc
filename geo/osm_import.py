"""Import OpenStreetMap `amenity=parking` features (a GeoJSON FeatureCollection) as lots, reporting skips."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from shapely.geometry import shape
from sqlalchemy.ext.asyncio import AsyncConnection

from geo import queries
from geo.hours import parse_opening_hours
from geo.lots import create_lot
from geo.schemas import LotCreate

KINDS = {"multi-storey": "multi-storey", "underground": "underground", "surface": "surface",
         "street_side": "street", "lane": "street", "on_kerb": "street", "half_on_kerb": "street"}
_METRES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m)?\s*$")
_FEET = re.compile(r"^\s*(\d+)\s*'\s*(?:(\d+)\s*\")?\s*$")


@dataclass
class ImportReport:
    created: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {index, ref, reason}
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"created": len(self.created), "skipped": len(self.skipped), "lots": self.created,
                "skipped_features": self.skipped, "warnings": self.warnings}


class Skip(Exception):
    pass


def _tags(feature: dict[str, Any]) -> dict[str, str]:
    props = feature.get("properties") or {}
    if not isinstance(props, dict):
        raise Skip("properties is not an object")
    tags: dict[str, Any] = props["tags"] if isinstance(props.get("tags"), dict) else props
    return {str(k): str(v) for k, v in tags.items() if v is not None}


def _ref(feature: dict[str, Any], tags: dict[str, str]) -> str:
    props = feature.get("properties") or {}
    raw = feature.get("id") or props.get("@id") or props.get("id") or tags.get("@id")
    if props.get("type") in {"node", "way", "relation"} and props.get("id") is not None:
        raw = f"{props['type']}/{props['id']}"
    if not raw:
        raise Skip("no OSM id (feature id or @id)")
    return f"osm:{raw}"


def _count(tags: dict[str, str], key: str, *, required: bool = False) -> int:
    raw = tags.get(key)
    if raw is None or raw.strip() in {"", "no"}:
        if required:
            raise Skip(f"no {key} tag")
        return 0
    if raw.strip() == "yes":
        if required:
            raise Skip(f"{key}=yes is not a number")
        return 0
    if not raw.strip().isdigit():
        raise Skip(f"{key}={raw!r} is not a whole number")
    return int(raw)


def parse_maxheight(raw: str) -> int | None:
    """Centimetres from "2.1", "2.1 m", "6'8\"", None for "none"/"default"/unparseable."""
    if m := _METRES.match(raw):
        return round(float(m.group(1)) * 100)
    if m := _FEET.match(raw):
        return round((int(m.group(1)) * 12 + int(m.group(2) or 0)) * 2.54)
    return None


def feature_to_lot(feature: Any, *, timezone: str, warnings: list[str]) -> tuple[str, LotCreate]:
    """(external ref, lot) for one feature; raises Skip with the reason when it cannot be a lot."""
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise Skip("not a GeoJSON Feature")
    tags = _tags(feature)
    ref = _ref(feature, tags)
    if tags.get("amenity") != "parking":
        raise Skip(f"amenity={tags.get('amenity')!r}, not parking")
    if tags.get("access") in {"private", "no"}:
        raise Skip(f"access={tags['access']} (not public)")
    geometry = feature.get("geometry")
    if not geometry:
        raise Skip("no geometry")
    if geometry.get("type") not in {"Point", "Polygon", "MultiPolygon"}:
        raise Skip(f"unsupported geometry {geometry.get('type')!r}")
    try:
        geom = shape(geometry)
    except (ValueError, TypeError, AttributeError, IndexError):
        raise Skip("malformed geometry") from None
    if geom.is_empty:
        raise Skip("empty geometry")
    point = geom if geometry["type"] == "Point" else geom.representative_point()
    lng, lat = point.x, point.y
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        raise Skip(f"coordinates out of range (lng {lng}, lat {lat})")
    capacity = _count(tags, "capacity", required=True)
    disabled, charging = _count(tags, "capacity:disabled"), _count(tags, "capacity:charging")
    if capacity < 1:
        raise Skip("capacity must be at least 1")
    if disabled + charging > capacity:
        raise Skip(f"capacity:disabled + capacity:charging ({disabled + charging}) exceed capacity ({capacity})")
    parking = tags.get("parking", "surface")
    kind = KINDS.get(parking)
    if kind is None:
        raise Skip(f"unsupported parking={parking!r}")
    spots = [{"type": t, "count": n} for t, n in (("regular", capacity - disabled - charging),
                                                   ("handicap", disabled), ("ev", charging)) if n > 0]
    amenities = set()
    if kind in {"multi-storey", "underground"} or tags.get("covered") == "yes":
        amenities.add("covered")
    if charging:
        amenities.add("ev_charging")
    if disabled:
        amenities.add("accessible")
    if tags.get("supervised") == "yes" or tags.get("surveillance") == "yes":
        amenities.add("cctv")
    height = None
    if "maxheight" in tags:
        height = parse_maxheight(tags["maxheight"])
        if height is None or not 100 <= height <= 1000:
            warnings.append(f"maxheight={tags['maxheight']!r} ignored")
            height = None
    hours = tags.get("opening_hours")
    if hours is not None:
        try:
            parse_opening_hours(hours)
        except ValueError as exc:
            warnings.append(f"opening_hours ignored: {exc}")
            hours = None
    fee = {"yes": True, "no": False}.get(tags.get("fee", ""))
    name = tags.get("name") or f"Parking {ref.removeprefix('osm:')}"
    address = " ".join(p for p in (tags.get("addr:housenumber"), tags.get("addr:street"), tags.get("addr:city")) if p)
    try:
        lot = LotCreate.model_validate({
            "name": name[:200], "address": address[:500], "location": {"lat": lat, "lng": lng}, "timezone": timezone,
            "levels": [{"name": "G", "spots": spots}], "kind": kind, "amenities": sorted(amenities),
            "opening_hours": hours, "height_limit_cm": height, "fee": fee})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Skip(f"invalid {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    return ref, lot


async def import_osm(conn: AsyncConnection, *, collection: Any, organisation_id: uuid.UUID,
                     timezone: str = "UTC", dry_run: bool = False) -> ImportReport:
    """Create a lot per usable feature; skip (with a reason) bad ones and OSM ids already imported."""
    report = ImportReport()
    if not isinstance(collection, dict) or collection.get("type") != "FeatureCollection" \
            or not isinstance(collection.get("features"), list):
        raise ValueError("not a GeoJSON FeatureCollection")
    planned: list[tuple[int, str, LotCreate]] = []
    seen: set[str] = set()
    for index, feature in enumerate(collection["features"]):
        warnings: list[str] = []
        try:
            ref, lot = feature_to_lot(feature, timezone=timezone, warnings=warnings)
            if ref in seen:
                raise Skip(f"duplicate of an earlier feature ({ref})")
        except Skip as exc:
            ref_hint = feature.get("id") if isinstance(feature, dict) else None
            report.skipped.append({"index": index, "ref": ref_hint, "reason": str(exc)})
            continue
        seen.add(ref)
        report.warnings += [{"index": index, "ref": ref, "warning": w} for w in warnings]
        planned.append((index, ref, lot))
    taken = {r.external_ref for r in await conn.execute(queries.EXTERNAL_REFS_TAKEN,
                                                        {"refs": [ref for _, ref, _ in planned]})}
    for index, ref, lot in planned:
        if ref in taken:
            report.skipped.append({"index": index, "ref": ref, "reason": "already imported"})
            continue
        lot_id = "(dry run)"
        if not dry_run:
            lot_id = str((await create_lot(conn, organisation_id=organisation_id, data=lot, external_ref=ref)).id)
        report.created.append({"ref": ref, "id": lot_id, "name": lot.name})
    report.skipped.sort(key=lambda s: s["index"])
    return report
