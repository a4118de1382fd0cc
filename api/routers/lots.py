"""Lots: operators create and run their own (another organisation's lot answers 404); anyone reads details."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from api.deps import ConnDep, CtxDep, NowDep, OperatorUser, Principal
from api.routers.discovery_params import EndsAt, StartsAt, VehicleTypeParam, window_from
from api.schemas.discovery import Freshness, LotDetail, LotWindowAvailability, lot_detail
from booking.availability import free_count
from booking.reconcile import forget_lot
from booking.runtime import breaker, slot_store
from booking.wiring import booking_deps
from controllers.chargers import charger_summary
from core.context import AppContext
from core.errors import ValidationFailed
from geo import lots
from geo.detail import lot_with_availability
from geo.schemas import Lot, LotCreate, LotUpdate, Spot, SpotsAdd, SpotsStatus

router = APIRouter(prefix="/lots", tags=["lots"])


def _scope(user: Principal) -> uuid.UUID | None:
    """The organisation an operator is confined to; None for an admin (every lot)."""
    return None if user.role == "admin" else user.organisation_id


class LotPage(BaseModel):
    items: list[Lot]
    next_cursor: str | None


class SpotPage(BaseModel):
    items: list[Spot]
    next_cursor: str | None


class SpotsChanged(BaseModel):
    changed: int


@router.post("", status_code=201, response_model=Lot, summary="Create a lot with levels, spots and gates")
async def create_lot(body: LotCreate, user: OperatorUser, conn: ConnDep) -> Lot:
    org = user.organisation_id
    if user.role == "admin":
        if body.organisation_id is None:
            raise ValidationFailed("admins must name the owning organisation", loc=("body", "organisation_id"))
        org = body.organisation_id
    elif body.organisation_id is not None and body.organisation_id != org:
        raise ValidationFailed("operators create lots for their own organisation", loc=("body", "organisation_id"))
    assert org is not None
    return await lots.create_lot(conn, organisation_id=org, data=body)


@router.get("", response_model=LotPage, summary="The caller's lots (all lots for an admin)")
async def list_lots(user: OperatorUser, conn: ConnDep, limit: Annotated[int, Query(ge=1, le=100)] = 50,
                    cursor: Annotated[uuid.UUID | None, Query(description="next_cursor of the previous page")]
                    = None) -> LotPage:
    items = await lots.list_lots(conn, organisation_id=_scope(user), after_id=cursor, limit=limit + 1)
    more = len(items) > limit
    return LotPage(items=items[:limit], next_cursor=str(items[limit - 1].id) if more else None)


async def _slots_changed(ctx: AppContext, lot_id: uuid.UUID) -> None:
    await forget_lot(slots=slot_store(ctx), breaker=breaker(ctx), lot_id=lot_id)


@router.get("/{lot_id}", response_model=LotDetail, summary="A lot with levels and availability by level and type")
async def get_lot(request: Request, lot_id: uuid.UUID, conn: ConnDep, now: NowDep, starts_at: StartsAt = None,
                  ends_at: EndsAt = None) -> LotDetail:
    window = window_from(request, starts_at, ends_at, now)
    view = await lot_with_availability(conn, lot_id=lot_id, window=window, now=now)
    return lot_detail(view, ev_chargers=(await charger_summary(conn=conn, lot_id=lot_id, now=now)).counts)


@router.get("/{lot_id}/availability", response_model=LotWindowAvailability,
            summary="Free compatible spots for one vehicle type and window (a count)")
async def lot_availability(request: Request, lot_id: uuid.UUID, conn: ConnDep, ctx: CtxDep, now: NowDep,
                           vehicle_type: VehicleTypeParam, starts_at: StartsAt = None,
                           ends_at: EndsAt = None,
                           discount_code: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
                           ) -> LotWindowAvailability:
    window = window_from(request, starts_at, ends_at, now)
    lot = await lots.get_lot(conn, lot_id=lot_id)
    if window.horizon_days > lot.booking_horizon_days:
        raise ValidationFailed(f"this lot takes bookings up to {lot.booking_horizon_days} days ahead",
                               loc=("query", "ends_at"))
    deps = booking_deps(ctx)
    booking_window = window
    count = await free_count(deps=deps, lot_id=lot_id, vehicle_type=vehicle_type, window=booking_window, now=now)
    try:
        priced = await deps.pricer(conn, lot_id, vehicle_type, booking_window, None, discount_code=discount_code)
    except ValidationFailed as exc:  # the code is a query parameter here
        if exc.loc[-1:] == ("discount_code",):
            raise ValidationFailed(exc.detail, loc=("query", "discount_code")) from None
        raise
    return LotWindowAvailability(lot_id=lot_id, vehicle_type=vehicle_type, starts_at=window.slot_start,
                                 ends_at=window.slot_end, available=count.available, quote=priced.quote,
                                 freshness=Freshness(source=count.source, as_of=count.as_of))


@router.patch("/{lot_id}", response_model=Lot, summary="Change a lot: name, place, hours, amenities, policies")
async def update_lot(lot_id: uuid.UUID, body: LotUpdate, user: OperatorUser, conn: ConnDep, ctx: CtxDep,
                     now: NowDep) -> Lot:
    lot = await lots.update_lot(conn, lot_id=lot_id, organisation_id=_scope(user), changes=body, now=now)
    await _slots_changed(ctx, lot_id)  # strategy or EV overflow may have changed
    return lot


@router.post("/{lot_id}/close", response_model=Lot, summary="Close a lot: hidden from search, bookings kept")
async def close_lot(lot_id: uuid.UUID, user: OperatorUser, conn: ConnDep, now: NowDep) -> Lot:
    return await lots.set_lot_status(conn, lot_id=lot_id, organisation_id=_scope(user), status="closed", now=now)


@router.post("/{lot_id}/open", response_model=Lot, summary="Open a closed lot again")
async def open_lot(lot_id: uuid.UUID, user: OperatorUser, conn: ConnDep, now: NowDep) -> Lot:
    return await lots.set_lot_status(conn, lot_id=lot_id, organisation_id=_scope(user), status="open", now=now)


@router.get("/{lot_id}/spots", response_model=SpotPage, summary="Spots of a lot in number order")
async def list_spots(lot_id: uuid.UUID, user: OperatorUser, conn: ConnDep,
                     status: Literal["in_service", "out_of_service"] | None = None, level_id: uuid.UUID | None = None,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 200,
                     cursor: Annotated[int | None, Query(ge=0, le=2**31 - 1, description="next_cursor of the previous page")]
                     = None) -> SpotPage:
    items = await lots.list_spots(conn, lot_id=lot_id, organisation_id=_scope(user), status=status,
                                  level_id=level_id, after_idx=-1 if cursor is None else cursor, limit=limit + 1)
    more = len(items) > limit
    return SpotPage(items=items[:limit], next_cursor=str(items[limit - 1].idx) if more else None)


@router.post("/{lot_id}/spots", status_code=201, response_model=Lot, summary="Add spots of one type to a level")
async def add_spots(lot_id: uuid.UUID, body: SpotsAdd, user: OperatorUser, conn: ConnDep, ctx: CtxDep) -> Lot:
    lot = await lots.add_spots(conn, lot_id=lot_id, organisation_id=_scope(user), batch=body)
    await _slots_changed(ctx, lot_id)
    return lot


@router.post("/{lot_id}/spots/status", response_model=SpotsChanged, summary="Put spots in or out of service")
async def set_spots_status(lot_id: uuid.UUID, body: SpotsStatus, user: OperatorUser, conn: ConnDep,
                           ctx: CtxDep) -> Any:
    changed = await lots.set_spots_status(conn, lot_id=lot_id, organisation_id=_scope(user), change=body)
    await _slots_changed(ctx, lot_id)
    return SpotsChanged(changed=changed)
