"""The signed-in caller: profile and vehicles (plates shown unmasked to their owner only)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from api.deps import ConnDep, CtxDep, CurrentUser, NowDep
from api.ratelimit import WriteUser
from api.schemas.common import StrictBody
from core.accounts import Vehicle, add_vehicle, delete_vehicle, get_user, get_vehicle, list_vehicles
from core.errors import Unauthorized
from core.vocabulary import VehicleType

router = APIRouter(prefix="/api/v1/me", tags=["me"])



class MeOut(BaseModel):
    id: uuid.UUID
    email: str
    role: str
    organisation_id: uuid.UUID | None


class VehicleIn(StrictBody):
    plate: str = Field(min_length=1, max_length=20, description="normalised: upper case, no spaces or dashes")
    vehicle_type: Annotated[VehicleType, Field(strict=False)] = VehicleType.regular  # the enum from its JSON string
    handicap_permit: bool = False


class VehicleOut(BaseModel):
    id: uuid.UUID
    plate: str
    vehicle_type: VehicleType
    handicap_permit: bool
    created_at: datetime

    @classmethod
    def of(cls, v: Vehicle) -> VehicleOut:
        return cls(id=v.id, plate=v.plate, vehicle_type=v.vehicle_type,  # type: ignore[arg-type]
                   handicap_permit=v.handicap_permit, created_at=v.created_at)


class VehicleList(BaseModel):
    items: list[VehicleOut]
    next_cursor: str | None = None


VehicleId = Annotated[uuid.UUID, Path()]


@router.get("", response_model=MeOut, summary="Who am I")
async def me(user: CurrentUser, conn: ConnDep) -> MeOut:
    found = await get_user(conn=conn, user_id=user.user_id)
    if found is None:
        raise Unauthorized("account disabled or deleted")
    return MeOut(id=found.id, email=found.email, role=found.role, organisation_id=found.organisation_id)


@router.post("/vehicles", status_code=201, response_model=VehicleOut, summary="Register a vehicle",
             responses={409: {"description": "plate already registered to this account"}})
async def create_vehicle(body: VehicleIn, user: WriteUser, conn: ConnDep, ctx: CtxDep, now: NowDep) -> VehicleOut:
    vehicle = await add_vehicle(conn=conn, secret=ctx.settings.secret_bytes, user_id=user.user_id, plate=body.plate,
                                vehicle_type=body.vehicle_type, handicap_permit=body.handicap_permit, now=now)
    return VehicleOut.of(vehicle)


@router.get("/vehicles", response_model=VehicleList, summary="My vehicles")
async def my_vehicles(user: CurrentUser, conn: ConnDep) -> VehicleList:
    return VehicleList(items=[VehicleOut.of(v) for v in await list_vehicles(conn=conn, user_id=user.user_id)])


@router.get("/vehicles/{vehicle_id}", response_model=VehicleOut, summary="One of my vehicles")
async def my_vehicle(vehicle_id: VehicleId, user: CurrentUser, conn: ConnDep) -> VehicleOut:
    return VehicleOut.of(await get_vehicle(conn=conn, user_id=user.user_id, vehicle_id=vehicle_id))


@router.delete("/vehicles/{vehicle_id}", status_code=204, response_class=Response, summary="Remove a vehicle")
async def remove_vehicle(vehicle_id: VehicleId, user: WriteUser, conn: ConnDep) -> Response:
    await delete_vehicle(conn=conn, user_id=user.user_id, vehicle_id=vehicle_id)
    return Response(status_code=204)
