"""Time windows and bounding boxes from query input, checked once and reported by field."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.errors import ValidationFailed
from core.vocabulary import Window, widen_to_slots

DEFAULT_WINDOW = timedelta(hours=1)
DEFAULT_HORIZON_DAYS = max(1, math.ceil(DEFAULT_WINDOW / timedelta(days=1)))  # what the default window needs
MAX_HORIZON_DAYS = 365  # the largest booking horizon a lot may have


__all__ = ["Window", "resolve_window"]


def resolve_window(*, starts_at: datetime | None, ends_at: datetime | None, now: datetime,
                   max_window_days: int) -> Window:
    """Default [now, now + 1 h); refuse naive times, an end not after the start, windows in the past,
    longer than `max_window_days` or beyond any lot's booking horizon (422 naming the field)."""
    if starts_at is None and ends_at is None:  # the default window (most searches): nothing to check
        end = now + DEFAULT_WINDOW
        return Window(now, end, *widen_to_slots(now, end), horizon_days=DEFAULT_HORIZON_DAYS)
    for name, value in (("starts_at", starts_at), ("ends_at", ends_at)):
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise ValidationFailed(f"{name} must carry a timezone offset", loc=("query", name))
    start = (starts_at or now).astimezone(now.tzinfo)
    end = (ends_at or start + DEFAULT_WINDOW).astimezone(now.tzinfo)
    if end <= start:
        raise ValidationFailed("ends_at must be after starts_at", loc=("query", "ends_at"))
    if end <= now:
        raise ValidationFailed("the window has already ended", loc=("query", "ends_at"))
    if end - start > timedelta(days=max_window_days):
        raise ValidationFailed(f"a window lasts at most {max_window_days} days", loc=("query", "ends_at"))
    horizon = max(1, math.ceil((end - now) / timedelta(days=1)))
    if horizon > MAX_HORIZON_DAYS:
        raise ValidationFailed(f"ends_at is beyond every lot's booking horizon ({MAX_HORIZON_DAYS} days)",
                               loc=("query", "ends_at"))
    slot_start, slot_end = widen_to_slots(start, end)
    return Window(starts_at=start, ends_at=end, slot_start=slot_start, slot_end=slot_end, horizon_days=horizon)


@dataclass(frozen=True)
class BBox:
    """min/max longitude and latitude (RFC 7946 order); west > east crosses the antimeridian."""

    west: float
    south: float
    east: float
    north: float

    @property
    def crosses_antimeridian(self) -> bool:
        return self.west > self.east

    def lng_ranges(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Two longitude ranges (the same one twice unless the box crosses the antimeridian)."""
        if self.crosses_antimeridian:
            return (self.west, 180.0), (-180.0, self.east)
        return (self.west, self.east), (self.west, self.east)

    def centre(self) -> tuple[float, float]:
        """(lat, lng) of the box's middle, across the antimeridian when it crosses it."""
        lat = (self.south + self.north) / 2
        east = self.east + 360 if self.crosses_antimeridian else self.east
        lng = (self.west + east) / 2
        return lat, (lng + 180) % 360 - 180

    def params(self) -> dict[str, float]:
        (w1, e1), (w2, e2) = self.lng_ranges()
        return {"s": self.south, "n": self.north, "w1": w1, "e1": e1, "w2": w2, "e2": e2}


def parse_bbox(raw: str, *, field: str = "bbox") -> BBox:
    """`minLng,minLat,maxLng,maxLat` in degrees; 422 on anything else."""
    loc = ("query", field)
    parts = raw.split(",")
    if len(parts) != 4:
        raise ValidationFailed("bbox is minLng,minLat,maxLng,maxLat", loc=loc)
    try:
        west, south, east, north = (float(p) for p in parts)
    except ValueError:
        raise ValidationFailed("bbox values must be numbers", loc=loc) from None
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise ValidationFailed("bbox values must be finite", loc=loc)
    if not (-180 <= west <= 180 and -180 <= east <= 180):
        raise ValidationFailed("bbox longitudes must be within [-180, 180]", loc=loc)
    if not (-90 <= south <= 90 and -90 <= north <= 90):
        raise ValidationFailed("bbox latitudes must be within [-90, 90]", loc=loc)
    if south >= north:
        raise ValidationFailed("bbox minLat must be below maxLat", loc=loc)
    if west == east:
        raise ValidationFailed("bbox minLng and maxLng must differ", loc=loc)
    return BBox(west=west, south=south, east=east, north=north)
