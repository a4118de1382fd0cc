"""What a planner asks for: the one model of an export request, used by the HTTP route, the CLI and the worker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from core.errors import ValidationFailed

Kind = Literal["occupancy", "sessions"]
Format = Literal["csv", "geojson", "parquet"]
GroupBy = Literal["lot", "h3"]

MAX_RANGE = timedelta(days=366)
DEFAULT_H3_RES = 8
DEFAULT_MIN_SESSIONS = 10

MEDIA_TYPES: dict[str, str] = {"csv": "text/csv", "geojson": "application/geo+json",
                               "parquet": "application/vnd.apache.parquet"}
EXTENSIONS: dict[str, str] = {"csv": "csv", "geojson": "geojson", "parquet": "parquet"}


class ExportRequest(BaseModel):
    """POST /api/v1/exports body (docs/api.md, Exports); `parkgrid exports run` builds the same model."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    kind: Kind
    from_: AwareDatetime = Field(alias="from", description="start of the period (inclusive), with an offset")
    to: AwareDatetime = Field(description="end of the period (exclusive), at most 366 days after `from`")
    group_by: GroupBy
    h3_res: int | None = Field(None, ge=6, le=10, description=f"H3 resolution with group_by=h3 (default {DEFAULT_H3_RES})")
    format: Format
    min_sessions: int = Field(DEFAULT_MIN_SESSIONS, ge=1, le=100_000,
                              description="places (per hour for occupancy) with fewer sessions are suppressed")
    lot_ids: list[uuid.UUID] | None = Field(None, min_length=1, max_length=10_000,
                                            description="only these lots (default: every lot the caller may export)")
    bbox: tuple[float, float, float, float] | None = Field(
        None, description="only lots inside [min_lng, min_lat, max_lng, max_lat]")

    @field_validator("bbox")
    @classmethod
    def _bbox(cls, value: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        if value is None:
            return value
        w, s, e, n = value
        if not (-180 <= w <= e <= 180 and -90 <= s <= n <= 90):
            raise ValueError("bbox must be [min_lng, min_lat, max_lng, max_lat] within -180..180 and -90..90")
        return value

    @property
    def start(self) -> datetime:
        return self.from_.astimezone(UTC)

    @property
    def end(self) -> datetime:
        return self.to.astimezone(UTC)

    @property
    def resolution(self) -> int | None:
        """The H3 resolution the export groups by (None when grouped by lot)."""
        return (self.h3_res or DEFAULT_H3_RES) if self.group_by == "h3" else None

    def as_params(self) -> dict[str, object]:
        """JSON stored with the job (timestamps in UTC)."""
        return self.model_dump(mode="json", by_alias=True) | {"from": self.start.isoformat(), "to": self.end.isoformat(),
                                                              "h3_res": self.resolution}


def check_request(req: ExportRequest, *, where: str = "body") -> ExportRequest:
    """Rules across fields (422 naming the field): `from` before `to`, at most 366 days, h3_res only with h3."""
    if req.start >= req.end:
        raise ValidationFailed("`from` must be before `to`", loc=(where, "from"))
    if req.end - req.start > MAX_RANGE:
        raise ValidationFailed(f"the period may span at most {MAX_RANGE.days} days", loc=(where, "to"))
    if req.h3_res is not None and req.group_by != "h3":
        raise ValidationFailed("h3_res applies only with group_by=h3", loc=(where, "h3_res"))
    return req
