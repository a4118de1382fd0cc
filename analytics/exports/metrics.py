"""CDS Metrics aggregates of one place-hour, with the privacy threshold applied.

Definitions (CDS Metrics "Methodology", per place and local hour; docs/features/exports.md):
- total_sessions: sessions parked at any time during the hour;
- occupancy_percent: seconds occupied / (capacity x seconds of the hour in the period) x 100, at most 100;
- turnover: sessions that started in the hour per space (capacity);
- average_dwell_time: mean whole dwell time, in minutes, of the sessions present (open ones up to the export's time).
A place-hour with fewer than `min_sessions` sessions is suppressed: every value is empty (None), never a number and
never -1 (CDS reserves -1 for an offline source)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from analytics.exports.source import PlaceHour

METRIC_TYPES = ("occupancy_percent", "total_sessions", "turnover", "average_dwell_time")


class MetricRow(NamedTuple):
    place: int
    metric_type: str
    date: str
    hour: int
    value: float | int | None
    suppressed: bool


def metric_values(h: PlaceHour) -> tuple[float | None, int, float | None, float | None]:
    """(occupancy_percent, total_sessions, turnover, average_dwell_time) of one place-hour, unsuppressed."""
    capacity_s = h.capacity * h.seconds
    occupancy = round(min(100.0, 100.0 * h.occupied_s / capacity_s), 2) if capacity_s > 0 else None
    turnover = round(h.started / h.capacity, 4) if h.capacity > 0 else None
    dwell = round(h.dwell_s / h.sessions / 60.0, 1) if h.sessions else None
    return occupancy, h.sessions, turnover, dwell


def metric_rows(hours: Iterable[PlaceHour], *, min_sessions: int) -> tuple[list[MetricRow], int]:
    """Four CDS rows per place-hour, and how many of them were suppressed."""
    rows: list[MetricRow] = []
    append = rows.append
    suppressed = 0
    o, t, u, d = METRIC_TYPES
    for h in hours:
        p, date, hour = h.place, h.date, h.hour
        if h.sessions < min_sessions:
            append(MetricRow(p, o, date, hour, None, True))
            append(MetricRow(p, t, date, hour, None, True))
            append(MetricRow(p, u, date, hour, None, True))
            append(MetricRow(p, d, date, hour, None, True))
            suppressed += 4
            continue
        occupancy, total, turnover, dwell = metric_values(h)
        append(MetricRow(p, o, date, hour, occupancy, False))
        append(MetricRow(p, t, date, hour, total, False))
        append(MetricRow(p, u, date, hour, turnover, False))
        append(MetricRow(p, d, date, hour, dwell, False))
    return rows, suppressed
