"""Import OpenStreetMap car parks as lots, and re-import them: matched by OSM id, updated, never duplicated.

A car park becomes a lot with spots by type from `capacity`, `capacity:disabled` and `capacity:charging`. One
without a usable `capacity` (most of them in real extracts) is imported as a listed lot without spots: capacity
unknown (null in every feed), not bookable, until its operator adds spots. Private car parks (`access=private`
or `no`) are skipped with the reason, and so is anything that cannot be a lot. The outline of a way or
multipolygon is kept (lots.osm_geometry); the lot's location is its centroid, or a point inside it when the
centroid falls outside (an L-shaped car park).

Re-importing compares each matched lot with what OSM says now and reports every change (field: from, to).
Capacity changes move spots in or out of service (highest numbers out first) or add spots; spots are never
deleted, so reservations on them stay valid.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from shapely import wkt
from shapely.geometry import Point
from sqlalchemy.ext.asyncio import AsyncConnection

from geo import open_queries as oq
from geo.h3cells import cells
from geo.hours import parse_opening_hours
from geo.lots import add_spots, create_lot
from geo.osm_read import Item, OsmParking, OsmSkip, ProgressFn
from geo.schemas import SPOT_TYPES, LotCreate, SpotsAdd

KINDS = {"surface": "surface", "multi-storey": "multi-storey", "underground": "underground", "rooftop": "multi-storey",
         "street_side": "street", "lane": "street", "on_kerb": "street", "half_on_kerb": "street",
         "street": "street", "layby": "street", "carports": "surface"}
PRIVATE_KINDS = {"garage_boxes", "sheds", "garages"}
NOT_PUBLIC = {"private", "no"}
_METRES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m)?\s*$")
_FEET = re.compile(r"^\s*(\d+)\s*'\s*(?:(\d+)\s*\")?\s*$")
OSM_SPOT_TYPES = ("regular", "handicap", "ev")  # the spot types OSM capacities describe


class Skip(Exception):
    pass


class NotPublic(Skip):
    """A car park OSM marks private: skipped, and a lot imported from it earlier stops being published."""

    def __init__(self, access: str) -> None:
        super().__init__(f"access={access} (not public)")
        self.access = access


@dataclass
class ImportReport:
    created: list[dict[str, Any]] = field(default_factory=list)
    updated: list[dict[str, Any]] = field(default_factory=list)  # {ref, id, name, changes: {field: {from, to}}}
    unchanged: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {index, ref, reason}
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        listed = sum(1 for c in self.created if c["capacity"] is None)
        return {"created": len(self.created), "listed_without_capacity": listed, "updated": len(self.updated),
                "unchanged": len(self.unchanged), "skipped": len(self.skipped), "lots": self.created,
                "changes": self.updated, "skipped_features": self.skipped, "warnings": self.warnings}


@dataclass(frozen=True)
class PlannedLot:
    index: int
    ref: str  # "osm:way/1"
    lot: LotCreate
    spots: dict[str, int]  # regular / handicap / ev from OSM capacities; empty when capacity is unknown
    outline_wkt: str | None
    access: str | None
    park_ride: bool | None


def parse_maxheight(raw: str) -> int | None:
    """Centimetres from "2.1", "2.1 m", "6'8\"", None for "none"/"default"/unparseable."""
    if m := _METRES.match(raw):
        return round(float(m.group(1)) * 100)
    if m := _FEET.match(raw):
        return round((int(m.group(1)) * 12 + int(m.group(2) or 0)) * 2.54)
    return None


def _whole(tags: dict[str, str], key: str, warnings: list[str]) -> int | None:
    """A non-negative whole number tag; None (with a warning) when absent or not a number."""
    raw = tags.get(key)
    if raw is None:
        return None
    value = raw.strip()
    if value.isdigit():
        return int(value)
    if value not in {"yes", "no", ""}:
        warnings.append(f"{key}={raw!r} is not a whole number: ignored")
    return None


def _park_ride(raw: str | None) -> bool | None:
    if raw is None:
        return None
    return raw.strip().lower() != "no"


def plan_lot(item: OsmParking, *, timezone: str, warnings: list[str]) -> PlannedLot:
    """The lot one car park becomes; raises Skip with the reason when it cannot be one."""
    tags = item.tags
    if tags.get("amenity") != "parking":
        raise Skip(f"amenity={tags.get('amenity')!r}, not parking")
    access = tags.get("access")
    if access in NOT_PUBLIC:
        raise NotPublic(access)
    parking = tags.get("parking", "surface")
    if parking in PRIVATE_KINDS:
        raise Skip(f"parking={parking} (private garages, not a public car park)")
    kind = KINDS.get(parking)
    if kind is None:
        raise Skip(f"unsupported parking={parking!r}")
    geom = item.geometry
    if geom is None:
        raise Skip("no geometry")
    if geom.is_empty:
        raise Skip("empty geometry")
    if geom.geom_type not in {"Point", "Polygon", "MultiPolygon"}:
        raise Skip(f"unsupported geometry {geom.geom_type!r}")
    point = geom if isinstance(geom, Point) else geom.centroid
    if not isinstance(geom, Point) and not geom.contains(point):
        point = geom.representative_point()
    lng, lat = point.x, point.y
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        raise Skip(f"coordinates out of range (lng {lng}, lat {lat})")
    capacity = _whole(tags, "capacity", warnings)
    if capacity == 0:
        warnings.append("capacity=0: imported without capacity")
        capacity = None
    spots: dict[str, int] = {}
    if capacity is not None:
        disabled = _whole(tags, "capacity:disabled", warnings) or 0
        charging = _whole(tags, "capacity:charging", warnings) or 0
        if disabled + charging > capacity:
            raise Skip(f"capacity:disabled + capacity:charging ({disabled + charging}) exceed capacity ({capacity})")
        spots = {t: n for t, n in (("regular", capacity - disabled - charging), ("handicap", disabled),
                                   ("ev", charging)) if n > 0}
    amenities = set()
    if kind in {"multi-storey", "underground"} or tags.get("covered") == "yes":
        amenities.add("covered")
    if spots.get("ev") or tags.get("capacity:charging", "no") not in {"no", "0"}:
        amenities.add("ev_charging")
    if spots.get("handicap"):
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
    name = tags.get("name") or f"Parking {item.ref}"
    address = " ".join(p for p in (tags.get("addr:housenumber"), tags.get("addr:street"), tags.get("addr:city")) if p)
    try:
        lot = LotCreate.model_validate({
            "name": name[:200], "address": address[:500], "location": {"lat": lat, "lng": lng}, "timezone": timezone,
            "levels": [{"name": "G", "spots": [{"type": t, "count": n} for t, n in spots.items()]}], "kind": kind,
            "amenities": sorted(amenities), "opening_hours": hours, "height_limit_cm": height, "fee": fee})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Skip(f"invalid {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    return PlannedLot(index=item.index, ref=f"osm:{item.ref}", lot=lot, spots=spots,
                      outline_wkt=None if isinstance(geom, Point) else geom.wkt, access=access,
                      park_ride=_park_ride(tags.get("park_ride")))


def plan(items: Sequence[Item], *, timezone: str, report: ImportReport,
         private: dict[str, str] | None = None) -> list[PlannedLot]:
    """The lots the items become, in input order; skips and warnings go to the report, and the refs of car parks
    now marked private (with their access) to `private`."""
    planned: list[PlannedLot] = []
    seen: set[str] = set()
    for item in items:
        if isinstance(item, OsmSkip):
            report.skipped.append({"index": item.index, "ref": item.ref, "reason": item.reason})
            continue
        warnings: list[str] = []
        try:
            p = plan_lot(item, timezone=timezone, warnings=warnings)
            if p.ref in seen:
                raise Skip(f"duplicate of an earlier feature ({p.ref})")
        except Skip as exc:
            report.skipped.append({"index": item.index, "ref": item.ref, "reason": str(exc)})
            if isinstance(exc, NotPublic) and private is not None:
                private[f"osm:{item.ref}"] = exc.access
            continue
        seen.add(p.ref)
        report.warnings += [{"index": item.index, "ref": p.ref, "warning": w} for w in warnings]
        planned.append(p)
    return planned


def _changes(row: Any, p: PlannedLot) -> dict[str, dict[str, Any]]:
    """What differs between a lot as stored and as OSM now describes it."""
    lot = p.lot
    current: dict[str, Any] = {
        "name": row.name, "address": row.address, "kind": row.kind, "opening_hours": row.opening_hours,
        "height_limit_cm": row.height_limit_cm, "fee": row.fee, "access": row.access, "park_ride": row.park_ride,
        "amenities": sorted(row.amenities), "outline": row.outline_wkt,
    }
    wanted: dict[str, Any] = {
        "name": lot.name, "address": lot.address, "kind": lot.kind, "opening_hours": lot.opening_hours,
        "height_limit_cm": lot.height_limit_cm, "fee": lot.fee, "access": p.access, "park_ride": p.park_ride,
        "amenities": sorted(lot.amenities), "outline": p.outline_wkt,
    }
    out = {k: {"from": current[k], "to": wanted[k]} for k in current if current[k] != wanted[k]}
    if "outline" in out and current["outline"] and wanted["outline"] \
            and wkt.loads(current["outline"]).equals_exact(wkt.loads(wanted["outline"]), 1e-7):
        del out["outline"]
    if abs(row.lat - lot.location.lat) > 1e-7 or abs(row.lng - lot.location.lng) > 1e-7:
        out["location"] = {"from": {"lat": row.lat, "lng": row.lng},
                           "to": {"lat": lot.location.lat, "lng": lot.location.lng}}
    have = dict(zip(SPOT_TYPES, row.spots_in_service, strict=True))
    for spot_type in OSM_SPOT_TYPES:
        if have[spot_type] != p.spots.get(spot_type, 0):
            out[f"spots.{spot_type}"] = {"from": have[spot_type], "to": p.spots.get(spot_type, 0)}
    return out


async def _apply_changes(conn: AsyncConnection, *, lot_id: uuid.UUID, p: PlannedLot,
                         changes: dict[str, dict[str, Any]], now: datetime) -> None:
    lot = p.lot
    h = cells(lot.location.lat, lot.location.lng)
    await conn.execute(oq.UPDATE_OSM_LOT, {
        "lot_id": lot_id, "name": lot.name, "address": lot.address, "lat": lot.location.lat, "lng": lot.location.lng,
        "h3_r7": h[7], "h3_r9": h[9], "kind": lot.kind, "amenities": list(lot.amenities),
        "opening_hours": lot.opening_hours, "height_limit_cm": lot.height_limit_cm, "fee": lot.fee, "now": now})
    await conn.execute(oq.SET_OSM_FIELDS, {"lot_id": lot_id, "wkt": p.outline_wkt, "access": p.access,
                                           "park_ride": p.park_ride, "now": now})
    for spot_type in OSM_SPOT_TYPES:
        change = changes.get(f"spots.{spot_type}")
        if change is None:
            continue
        delta = change["to"] - change["from"]
        if delta < 0:
            await conn.execute(oq.RETIRE_SPOTS, {"lot_id": lot_id, "type": spot_type, "n": -delta})
            continue
        restored = (await conn.execute(oq.RESTORE_SPOTS, {"lot_id": lot_id, "type": spot_type, "n": delta})).rowcount
        missing = delta - int(restored or 0)
        level = (await conn.execute(oq.FIRST_LEVEL, {"lot_id": lot_id})).one()
        while missing > 0:
            batch = min(missing, 5_000)
            await add_spots(conn, lot_id=lot_id, organisation_id=None,
                            batch=SpotsAdd(level_id=level.id, type=spot_type, count=batch))  # type: ignore[arg-type]
            missing -= batch


async def import_osm(conn: AsyncConnection, *, items: Sequence[Item], organisation_id: uuid.UUID, now: datetime,
                     timezone: str = "UTC", dry_run: bool = False, progress: ProgressFn | None = None) -> ImportReport:
    """Create or update a lot per usable car park (matched by OSM id); report skips, warnings and changes.

    Run it in one transaction: every check happens before the first write, and a failure part way writes nothing.
    """
    report = ImportReport()
    private: dict[str, str] = {}
    planned = plan(items, timezone=timezone, report=report, private=private)
    existing = {r.external_ref: r for r in await conn.execute(oq.OSM_LOTS_BY_REF,
                                                                {"refs": [p.ref for p in planned] + list(private)})}
    for ref, access in private.items():  # imported when public, private now: no longer published
        row = existing.get(ref)
        if row is None or row.access == access:
            continue
        if not dry_run:
            await conn.execute(oq.SET_ACCESS, {"lot_id": row.id, "access": access, "now": now})
        report.updated.append({"ref": ref, "id": str(row.id), "name": row.name,
                               "changes": {"access": {"from": row.access, "to": access}}})
    for done, p in enumerate(planned, start=1):
        row = existing.get(p.ref)
        if row is None:
            lot_id = "(dry run)"
            if not dry_run:
                created = await create_lot(conn, organisation_id=organisation_id, data=p.lot, external_ref=p.ref)
                lot_id = str(created.id)
                await conn.execute(oq.SET_OSM_FIELDS, {"lot_id": created.id, "wkt": p.outline_wkt,
                                                       "access": p.access, "park_ride": p.park_ride, "now": now})
            report.created.append({"ref": p.ref, "id": lot_id, "name": p.lot.name,
                                   "capacity": sum(p.spots.values()) or None})
        else:
            changes = _changes(row, p)
            if not changes:
                report.unchanged.append(p.ref)
            else:
                if not dry_run:
                    await _apply_changes(conn, lot_id=row.id, p=p, changes=changes, now=now)
                report.updated.append({"ref": p.ref, "id": str(row.id), "name": p.lot.name, "changes": changes})
        if progress is not None:
            progress("write", done, len(planned))
    report.skipped.sort(key=lambda s: s["index"])
    return report
