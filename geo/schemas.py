"""Lot registry shapes: what operators send and what the registry returns (pydantic, no HTTP here)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.vocabulary import SPOT_TYPES, SpotType, VehicleType
from geo.hours import parse_opening_hours

__all__ = ["SPOT_TYPES", "SpotType", "VehicleType"]

AMENITIES = ("covered", "ev_charging", "accessible", "cctv", "staffed", "bike_parking")
Amenity = Literal["covered", "ev_charging", "accessible", "cctv", "staffed", "bike_parking"]
LotKind = Literal["surface", "multi-storey", "underground", "street"]
AllocationStrategy = Literal["nearest_entrance", "spread_levels", "best_fit"]
MAX_SPOTS_PER_LOT = 20_000


def check_timezone(value: str) -> str:
    """An IANA zone name (e.g. Europe/Paris); raises ValueError otherwise."""
    if value not in _zones():
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
    return value


_ZONES: set[str] = set()


def _zones() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones())
    return _ZONES


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LatLng(Strict):
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lng: float = Field(ge=-180, le=180, allow_inf_nan=False)


class SpotCount(Strict):
    type: SpotType
    count: int = Field(ge=1, le=MAX_SPOTS_PER_LOT)


class LevelIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    spots: list[SpotCount] = Field(default_factory=list, max_length=len(SPOT_TYPES))


class GateIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    direction: Literal["entry", "exit"]


class _LotSettings(Strict):
    @field_validator("timezone", check_fields=False)
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)

    @field_validator("opening_hours", check_fields=False)
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parse_opening_hours(value)  # raises ValueError with a reason
        return value.strip()

    @field_validator("amenities", check_fields=False)
    @classmethod
    def _dedupe(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else sorted(set(value))


class LotCreate(_LotSettings):
    name: str = Field(min_length=1, max_length=200)
    address: str = Field("", max_length=500)
    location: LatLng
    timezone: str = Field(max_length=64)
    levels: list[LevelIn] = Field(min_length=1, max_length=50)
    gates: list[GateIn] = Field(default_factory=list, max_length=50)
    kind: LotKind = "surface"
    amenities: list[Amenity] = Field(default_factory=list, max_length=len(AMENITIES))
    opening_hours: str | None = Field(None, max_length=255)
    height_limit_cm: int | None = Field(None, ge=100, le=1000)
    ev_overflow: bool = False
    booking_horizon_days: int = Field(30, ge=1, le=365)
    allocation_strategy: AllocationStrategy = "nearest_entrance"
    fee: bool | None = None
    organisation_id: uuid.UUID | None = Field(None, description="admins only: the owning organisation")

    @field_validator("levels")
    @classmethod
    def _level_names_unique(cls, value: list[LevelIn]) -> list[LevelIn]:
        names = [level.name for level in value]
        if len(set(names)) != len(names):
            raise ValueError("level names must be unique")
        if sum(s.count for level in value for s in level.spots) > MAX_SPOTS_PER_LOT:
            raise ValueError(f"a lot holds at most {MAX_SPOTS_PER_LOT} spots")
        for level in value:
            types = [s.type for s in level.spots]
            if len(set(types)) != len(types):
                raise ValueError(f"level {level.name!r} lists a spot type twice")
        return value


class LotUpdate(_LotSettings):
    """Fields an operator may change; absent fields stay as they are."""

    name: str | None = Field(None, min_length=1, max_length=200)
    address: str | None = Field(None, max_length=500)
    location: LatLng | None = None
    timezone: str | None = Field(None, max_length=64)
    kind: LotKind | None = None
    amenities: list[Amenity] | None = Field(None, max_length=len(AMENITIES))
    opening_hours: str | None = Field(None, max_length=255)
    height_limit_cm: int | None = Field(None, ge=100, le=1000)
    ev_overflow: bool | None = None
    booking_horizon_days: int | None = Field(None, ge=1, le=365)
    allocation_strategy: AllocationStrategy | None = None
    fee: bool | None = None
    status: Literal["open", "closed"] | None = None


class SpotsAdd(Strict):
    level_id: uuid.UUID
    type: SpotType
    count: int = Field(ge=1, le=5_000)


class SpotsStatus(Strict):
    spot_ids: list[uuid.UUID] = Field(min_length=1, max_length=5_000)
    status: Literal["in_service", "out_of_service"]


class LevelOut(BaseModel):
    id: uuid.UUID
    name: str
    ordinal: int
    capacity: int
    in_service: int = 0
    by_type: dict[str, int] = Field(default_factory=dict, description="in-service spots per type")


class GateOut(BaseModel):
    id: uuid.UUID
    name: str
    direction: str


class Lot(BaseModel):
    id: uuid.UUID
    organisation_id: uuid.UUID
    name: str
    address: str
    location: LatLng
    timezone: str
    kind: str
    amenities: list[str]
    opening_hours: str | None
    height_limit_cm: int | None
    status: str
    ev_overflow: bool
    booking_horizon_days: int
    allocation_strategy: str
    fee: bool | None
    external_ref: str | None
    capacity: int
    h3_r7: str
    h3_r9: str
    levels: list[LevelOut]
    gates: list[GateOut]
    created_at: datetime
    updated_at: datetime


class Spot(BaseModel):
    id: uuid.UUID
    idx: int
    label: str
    level_id: uuid.UUID
    type: str
    status: str
    features: list[str]
