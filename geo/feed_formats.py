"""The open data formats, each drawn from the same snapshot records (geo.feed_snapshot.FeedLot).

- GeoJSON (RFC 7946): a FeatureCollection of Points, properties as docs/api.md lists them.
- ParkAPI v1 `lots`, as OpenTripPlanner's ParkAPI updater reads it: `state` always present; a count it does not
  know is left out, never null (the updater reads a null `free` or `total` as 0).
- ParkAPI v3 combined (static + realtime) parking sites, as parkapi-sources' `CombinedParkingSiteInput` defines
  them; a lot whose capacity is unknown cannot be one (capacity is required) and is left out.
- DATEX II v3 Parking Publication Light (JSON encoding).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from geo.feed_snapshot import SOURCE_NONE, FeedLot

V1_LOT_TYPE = {"surface": "Parkplatz", "multi-storey": "Parkhaus", "underground": "Tiefgarage", "street": "Straße"}
V3_TYPE = {"surface": "OFF_STREET_PARKING_GROUND", "multi-storey": "CAR_PARK", "underground": "UNDERGROUND",
           "street": "ON_STREET"}
DATEX_TYPE = {"surface": "offStreetParkingGround", "multi-storey": "carPark", "underground": "carPark",
              "street": "onStreet"}


def iso(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with an offset, whole seconds."""
    return None if value is None else value.astimezone(UTC).replace(microsecond=0).isoformat()


# --- GeoJSON ----------------------------------------------------------------------------------------

def geojson_properties(lot: FeedLot) -> dict[str, Any]:
    props: dict[str, Any] = {
        "id": str(lot.id), "name": lot.name, "address": lot.address, "kind": lot.kind,
        "capacity": lot.capacity, "capacity_by_type": lot.capacity_by_type,
        "available": lot.available, "available_by_type": lot.available_by_type,
        "status": lot.status, "status_reason": lot.status_reason,
        "freshness": {"source": lot.source, "as_of": iso(lot.as_of), "stale": lot.stale},
        "opening_hours": lot.opening_hours, "fee": lot.fee, "bookable": lot.bookable,
        "external_ids": {"osm": lot.osm_ref} if lot.osm_ref else {},
        "park_ride": lot.park_ride, "height_limit_cm": lot.height_limit_cm, "amenities": list(lot.amenities),
        "updated_at": iso(lot.changed_at),
    }
    return props


def geojson_feature(lot: FeedLot) -> dict[str, Any]:
    return {"type": "Feature", "id": str(lot.id),
            "geometry": {"type": "Point", "coordinates": [round(lot.lng, 7), round(lot.lat, 7)]},
            "properties": geojson_properties(lot)}


def geojson_collection(lots: Iterable[FeedLot]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": [geojson_feature(lot) for lot in lots]}


# --- ParkAPI v1 -------------------------------------------------------------------------------------

def _v1_state(lot: FeedLot) -> str:
    if lot.status in {"open", "full"}:
        return "open"
    if lot.status == "closed":
        return "closed"
    return "nodata"


def parkapi_v1_lot(lot: FeedLot) -> dict[str, Any]:
    item: dict[str, Any] = {"id": str(lot.id), "name": lot.name, "lot_type": V1_LOT_TYPE[lot.kind],
                            "address": lot.address, "coords": {"lat": round(lot.lat, 7), "lng": round(lot.lng, 7)},
                            "state": _v1_state(lot), "forecast": False}
    if lot.capacity is not None:
        item["total"] = lot.capacity
        item["total:disabled"] = lot.capacity_by_type.get("handicap", 0)
    if lot.available is not None:
        item["free"] = lot.available
        disabled = lot.available_by_type.get("handicap")
        if disabled is not None:
            item["free:disabled"] = disabled
    if lot.opening_hours:
        item["opening_hours"] = lot.opening_hours
    return item


def parkapi_v1(lots: Iterable[FeedLot], *, last_updated: datetime, now: datetime) -> dict[str, Any]:
    return {"last_updated": iso(last_updated), "last_downloaded": iso(now),
            "lots": [parkapi_v1_lot(lot) for lot in lots]}


# --- ParkAPI v3 -------------------------------------------------------------------------------------

def _v3_opening_status(lot: FeedLot) -> str:
    return {"open": "OPEN", "full": "OPEN", "closed": "CLOSED"}.get(lot.status, "UNKNOWN")


def parkapi_v3_site(lot: FeedLot) -> dict[str, Any] | None:
    """A combined parking site; None for a lot whose capacity is unknown (ParkAPI v3 requires one)."""
    if lot.capacity is None:
        return None
    live = lot.source != SOURCE_NONE
    site: dict[str, Any] = {
        "uid": str(lot.id), "name": lot.name, "purpose": "CAR", "type": V3_TYPE[lot.kind],
        "has_realtime_data": live, "static_data_updated_at": iso(lot.lot_updated_at),
        "lat": round(lot.lat, 7), "lon": round(lot.lng, 7), "capacity": lot.capacity,
        "is_covered": lot.kind in {"multi-storey", "underground"} or "covered" in lot.amenities,
    }
    if lot.address:
        site["address"] = lot.address
    if lot.height_limit_cm is not None:
        site["max_height"] = lot.height_limit_cm
    if lot.fee is not None:
        site["has_fee"] = lot.fee
    if lot.park_ride is not None:
        site["park_and_ride_type"] = ["YES" if lot.park_ride else "NO"]
    if lot.opening_hours:
        site["opening_hours"] = lot.opening_hours
    if lot.osm_ref:
        site["external_identifiers"] = [{"type": "OSM", "value": lot.osm_ref}]
    if lot.outline is not None:
        site["geojson"] = lot.outline
    restrictions = []
    for spot_type, audience in (("handicap", "DISABLED"), ("ev", "CHARGING")):
        if spot_type in lot.capacity_by_type:
            r: dict[str, Any] = {"type": audience, "capacity": lot.capacity_by_type[spot_type]}
            free = lot.available_by_type.get(spot_type)
            if free is not None:
                r["realtime_free_capacity"] = free
            restrictions.append(r)
    if restrictions:
        site["restrictions"] = restrictions
    if live:
        site["realtime_data_updated_at"] = iso(lot.as_of or lot.changed_at)
        site["realtime_opening_status"] = _v3_opening_status(lot)
        site["realtime_capacity"] = lot.capacity
        if lot.available is not None:
            site["realtime_free_capacity"] = lot.available
    return site


def parkapi_v3(lots: Iterable[FeedLot]) -> dict[str, Any]:
    return {"items": [site for lot in lots if (site := parkapi_v3_site(lot)) is not None]}


# --- DATEX II v3 Parking Publication Light ------------------------------------------------------------

def datex2_site(lot: FeedLot) -> dict[str, Any]:
    location: dict[str, Any] = {"coordinatesForDisplay": {"latitude": round(lot.lat, 7),
                                                          "longitude": round(lot.lng, 7)}}
    if lot.address:
        location["locationDescriptor"] = lot.address
    site: dict[str, Any] = {"_id": str(lot.id), "lastUpdate": iso(lot.changed_at),
                            "type": {"value": DATEX_TYPE[lot.kind]}, "name": lot.name,
                            "locationAndDimension": location}
    if lot.opening_hours:
        site["openingTimesDescription"] = [lot.opening_hours]
    if lot.status in {"open", "full"}:
        site["isOpenNow"] = True
    elif lot.status == "closed":
        site["isOpenNow"] = False
        site["temporaryClosed"] = lot.status_reason == "closed by the operator"
    if lot.fee is not None:
        site["freeParking"] = not lot.fee
    if lot.capacity is not None:
        site["numberOfSpaces"] = lot.capacity
    if lot.available is not None:
        site["availableSpaces"] = lot.available
    assigned = []
    if "handicap" in lot.capacity_by_type:
        a: dict[str, Any] = {"typeOfAssignment": {"value": "optimisedFor"}, "user": {"value": "disabled"}}
        if lot.available_by_type.get("handicap") is not None:
            a["availableSpaces"] = lot.available_by_type["handicap"]
        assigned.append(a)
    if "ev" in lot.capacity_by_type:
        a = {"typeOfAssignment": {"value": "optimisedFor"}, "fuelType": {"value": "battery"}}
        if lot.available_by_type.get("ev") is not None:
            a["availableSpaces"] = lot.available_by_type["ev"]
        assigned.append(a)
    if assigned:
        site["assignedFor"] = assigned
    if lot.status_reason:
        site["description"] = lot.status_reason
    return site


def datex2(lots: Iterable[FeedLot], *, now: datetime, country: str, publisher: str, lang: str) -> dict[str, Any]:
    return {"_modelBaseVersion": "3",
            "parkingPublicationLight": {
                "lang": lang, "publicationTime": iso(now),
                "publicationCreator": {"country": country.upper(), "nationalIdentifier": publisher},
                "name": f"{publisher} car parks",
                "parkingSite": [datex2_site(lot) for lot in lots]}}
