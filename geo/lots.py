"""The lot registry: operators create, read, change and close lots and take spots in and out of service."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import h3
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import NotFound, ValidationFailed
from geo import queries
from geo.h3cells import cells
from geo.schemas import GateOut, LatLng, LevelIn, LevelOut, Lot, LotCreate, LotUpdate, Spot, SpotsAdd, SpotsStatus


async def create_lot(conn: AsyncConnection, *, organisation_id: uuid.UUID, data: LotCreate,
                     external_ref: str | None = None) -> Lot:
    """Insert a lot with its levels, spots (numbered densely from 0) and gates; H3 r7/r9 cells on write."""
    h = cells(data.location.lat, data.location.lng)
    lot_id = (await conn.execute(queries.INSERT_LOT, {
        "organisation_id": organisation_id, "name": data.name, "address": data.address,
        "lat": data.location.lat, "lng": data.location.lng, "h3_r7": h[7], "h3_r9": h[9],
        "timezone": data.timezone, "kind": data.kind, "amenities": list(data.amenities),
        "opening_hours": data.opening_hours, "height_limit_cm": data.height_limit_cm,
        "ev_overflow": data.ev_overflow, "booking_horizon_days": data.booking_horizon_days,
        "allocation_strategy": data.allocation_strategy, "fee": data.fee, "external_ref": external_ref,
    })).scalar_one()
    await _insert_levels(conn, lot_id=lot_id, levels=data.levels)
    for gate in data.gates:
        await conn.execute(queries.INSERT_GATE, {"lot_id": lot_id, "name": gate.name, "direction": gate.direction})
    return await get_lot(conn, lot_id=lot_id)


async def _insert_levels(conn: AsyncConnection, *, lot_id: uuid.UUID, levels: Sequence[LevelIn]) -> None:
    spots: dict[str, list[Any]] = {"idx": [], "level_ids": [], "labels": [], "types": [], "ranks": []}
    idx = 0
    for ordinal, level in enumerate(levels):
        level_id = (await conn.execute(queries.INSERT_LEVEL, {"lot_id": lot_id, "name": level.name,
                                                              "ordinal": ordinal})).scalar_one()
        for batch in level.spots:
            for _ in range(batch.count):
                _append_spot(spots, idx=idx, level_id=level_id, level_name=level.name, ordinal=ordinal,
                             spot_type=batch.type)
                idx += 1
    if spots["idx"]:
        await conn.execute(queries.INSERT_SPOTS, {"lot_id": lot_id, **spots})


def _append_spot(spots: dict[str, list[Any]], *, idx: int, level_id: uuid.UUID, level_name: str, ordinal: int,
                 spot_type: str) -> None:
    spots["idx"].append(idx)
    spots["level_ids"].append(level_id)
    spots["labels"].append(f"{level_name}-{idx + 1:04d}")
    spots["types"].append(spot_type)
    # rank = distance from the entrance: lower levels first, then lower numbers
    spots["ranks"].append(ordinal * 100_000 + idx)


async def get_lot(conn: AsyncConnection, *, lot_id: uuid.UUID) -> Lot:
    """The lot with its levels (capacity, in-service spots per type) and gates; NotFound if unknown."""
    row = (await conn.execute(queries.SELECT_LOT, {"lot_id": lot_id})).first()
    if row is None:
        raise NotFound(f"lot {lot_id} not found")
    levels = [LevelOut(id=r.id, name=r.name, ordinal=r.ordinal, capacity=r.capacity, in_service=r.in_service,
                       by_type=dict(r.by_type)) for r in await conn.execute(queries.SELECT_LEVELS, {"lot_id": lot_id})]
    gates = [GateOut(id=r.id, name=r.name, direction=r.direction)
             for r in await conn.execute(queries.SELECT_GATES, {"lot_id": lot_id})]
    return Lot(id=row.id, organisation_id=row.organisation_id, name=row.name, address=row.address,
               location=LatLng(lat=row.lat, lng=row.lng), timezone=row.timezone, kind=row.kind,
               amenities=list(row.amenities), opening_hours=row.opening_hours, height_limit_cm=row.height_limit_cm,
               status=row.status, ev_overflow=row.ev_overflow, booking_horizon_days=row.booking_horizon_days,
               allocation_strategy=row.allocation_strategy, fee=row.fee, external_ref=row.external_ref,
               capacity=row.capacity, h3_r7=h3.int_to_str(row.h3_r7), h3_r9=h3.int_to_str(row.h3_r9),
               levels=levels, gates=gates, created_at=row.created_at, updated_at=row.updated_at)


async def authorise_lot(conn: AsyncConnection, *, lot_id: uuid.UUID, organisation_id: uuid.UUID | None,
                        lock: bool = False) -> None:
    """NotFound unless the lot exists and belongs to `organisation_id` (None: an admin, any lot).

    With `lock`, the lot row stays locked until the transaction ends (serialises spot numbering).
    """
    stmt = queries.LOT_ORG_FOR_UPDATE if lock else queries.LOT_ORG
    owner = (await conn.execute(stmt, {"lot_id": lot_id})).scalar_one_or_none()
    if owner is None or (organisation_id is not None and owner != organisation_id):
        raise NotFound(f"lot {lot_id} not found")


async def update_lot(conn: AsyncConnection, *, lot_id: uuid.UUID, organisation_id: uuid.UUID | None,
                     changes: LotUpdate, now: datetime) -> Lot:
    """Apply the fields present in `changes`; a new location gets new H3 cells."""
    await authorise_lot(conn, lot_id=lot_id, organisation_id=organisation_id, lock=True)
    present = changes.model_fields_set
    lat = lng = h7 = h9 = None
    if changes.location is not None:
        lat, lng = changes.location.lat, changes.location.lng
        h = cells(lat, lng)
        h7, h9 = h[7], h[9]
    await conn.execute(queries.UPDATE_LOT, {
        "lot_id": lot_id, "now": now, "name": changes.name, "address": changes.address, "lat": lat, "lng": lng,
        "h3_r7": h7, "h3_r9": h9, "timezone": changes.timezone, "kind": changes.kind,
        "amenities": None if changes.amenities is None else list(changes.amenities),
        "set_opening_hours": "opening_hours" in present, "opening_hours": changes.opening_hours,
        "set_height_limit_cm": "height_limit_cm" in present, "height_limit_cm": changes.height_limit_cm,
        "set_fee": "fee" in present, "fee": changes.fee, "ev_overflow": changes.ev_overflow,
        "booking_horizon_days": changes.booking_horizon_days, "allocation_strategy": changes.allocation_strategy,
        "status": changes.status,
    })
    return await get_lot(conn, lot_id=lot_id)


async def set_lot_status(conn: AsyncConnection, *, lot_id: uuid.UUID, organisation_id: uuid.UUID | None,
                         status: str, now: datetime) -> Lot:
    """Close a lot (hidden from search, existing reservations untouched) or open it again."""
    return await update_lot(conn, lot_id=lot_id, organisation_id=organisation_id,
                            changes=LotUpdate.model_validate({"status": status}), now=now)


async def add_spots(conn: AsyncConnection, *, lot_id: uuid.UUID, organisation_id: uuid.UUID | None,
                    batch: SpotsAdd) -> Lot:
    """Add `count` spots of one type to a level, numbered after the lot's last spot."""
    await authorise_lot(conn, lot_id=lot_id, organisation_id=organisation_id, lock=True)
    level = (await conn.execute(queries.LEVEL_OF_LOT, {"lot_id": lot_id, "level_id": batch.level_id})).first()
    if level is None:
        raise ValidationFailed(f"level {batch.level_id} is not a level of this lot", loc=("body", "level_id"))
    first = int((await conn.execute(queries.NEXT_SPOT_IDX, {"lot_id": lot_id})).scalar_one())
    spots: dict[str, list[Any]] = {"idx": [], "level_ids": [], "labels": [], "types": [], "ranks": []}
    for idx in range(first, first + batch.count):
        _append_spot(spots, idx=idx, level_id=batch.level_id, level_name=level.name, ordinal=level.ordinal,
                     spot_type=batch.type)
    await conn.execute(queries.INSERT_SPOTS, {"lot_id": lot_id, **spots})
    return await get_lot(conn, lot_id=lot_id)


async def set_spots_status(conn: AsyncConnection, *, lot_id: uuid.UUID, organisation_id: uuid.UUID | None,
                           change: SpotsStatus) -> int:
    """Put spots in or out of service; returns how many changed. Unknown spot ids: 422, nothing changes.

    Reservations already on a spot taken out of service stay; the booking engine reassigns them.
    """
    await authorise_lot(conn, lot_id=lot_id, organisation_id=organisation_id, lock=True)
    ids = sorted(set(change.spot_ids))
    known = int((await conn.execute(queries.COUNT_SPOTS, {"lot_id": lot_id, "spot_ids": ids})).scalar_one())
    if known != len(ids):
        raise ValidationFailed(f"{len(ids) - known} spot id(s) are not spots of this lot", loc=("body", "spot_ids"))
    result = await conn.execute(queries.SET_SPOT_STATUS, {"lot_id": lot_id, "spot_ids": ids,
                                                          "status": change.status})
    return int(result.rowcount)  # type: ignore[attr-defined]


async def list_spots(conn: AsyncConnection, *, lot_id: uuid.UUID, organisation_id: uuid.UUID | None,
                     status: str | None = None, level_id: uuid.UUID | None = None, after_idx: int = -1,
                     limit: int = 100) -> list[Spot]:
    """Spots of a lot in number order, after spot number `after_idx` (keyset pagination)."""
    await authorise_lot(conn, lot_id=lot_id, organisation_id=organisation_id)
    rows = await conn.execute(queries.LIST_SPOTS, {"lot_id": lot_id, "status": status, "level_id": level_id,
                                                   "after_idx": after_idx, "limit": limit})
    return [Spot(id=r.id, idx=r.idx, label=r.label, level_id=r.level_id, type=r.type, status=r.status,
                 features=list(r.features)) for r in rows]


async def list_lots(conn: AsyncConnection, *, organisation_id: uuid.UUID | None, after_id: uuid.UUID | None = None,
                    limit: int = 50) -> list[Lot]:
    """Lots of an organisation (all lots for None) in id order, after `after_id`."""
    rows = await conn.execute(queries.LIST_LOTS, {"organisation_id": organisation_id, "limit": limit,
                                                  "after_id": after_id or uuid.UUID(int=0)})
    return [await get_lot(conn, lot_id=r.id) for r in rows]
