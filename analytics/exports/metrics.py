"""CDS Metrics aggregates of place-hours, with the privacy threshold applied, as Arrow record batches.

Definitions (CDS Metrics "Methodology", per place and local hour; docs/features/exports.md):
- total_sessions: sessions parked at any time during the hour;
- occupancy_percent: seconds occupied / (capacity x seconds of the hour in the period) x 100, at most 100;
- turnover: sessions that started in the hour per space (capacity);
- average_dwell_time: mean whole dwell time, in minutes, of the sessions present (open ones up to the export's time).
A place-hour with fewer than `min_sessions` sessions is suppressed: all four values are empty (null), never a number
and never -1 (CDS reserves -1 for an offline source). Rows come four per place-hour, in the order above."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from analytics.exports.source import PlaceHours

METRIC_TYPES = ("occupancy_percent", "total_sessions", "turnover", "average_dwell_time")
_METRIC_NAMES = pa.array(METRIC_TYPES, type=pa.string())

OCCUPANCY_BATCH = pa.schema([
    pa.field("place", pa.int32()), pa.field("metric_type", pa.string()), pa.field("date", pa.date32()),
    pa.field("hour", pa.int8()), pa.field("value", pa.float64()), pa.field("suppressed", pa.bool_()),
])


def metric_values(h: PlaceHours) -> np.ndarray[Any, Any]:
    """(hours, 4) array of occupancy_percent, total_sessions, turnover, average_dwell_time (NaN: undefined)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        capacity_s = h.capacity * h.grid.seconds
        occupancy = np.where(capacity_s > 0, np.minimum(100.0, np.round(100.0 * h.occupied_s / capacity_s, 2)), np.nan)
        turnover = np.round(h.started / h.capacity, 4) if h.capacity > 0 else np.full(len(h.grid), np.nan)
        dwell = np.where(h.sessions > 0, np.round(h.dwell_s / h.sessions / 60.0, 1), np.nan)
    return np.stack([occupancy, h.sessions.astype(np.float64), turnover, dwell], axis=1)


def metric_batch(blocks: Sequence[PlaceHours], *, min_sessions: int) -> tuple[pa.RecordBatch, int]:
    """The CDS rows of `blocks` (four per place-hour) and how many of them are suppressed."""
    if not blocks:
        return pa.RecordBatch.from_pylist([], schema=OCCUPANCY_BATCH), 0
    values = np.concatenate([metric_values(b).reshape(-1) for b in blocks])
    hidden = np.repeat(np.concatenate([b.sessions < min_sessions for b in blocks]), 4)
    n = len(values)
    batch = pa.RecordBatch.from_arrays([
        pa.array(np.concatenate([np.full(len(b.grid) * 4, b.place, np.int32) for b in blocks])),
        _METRIC_NAMES.take(pa.array(np.tile(np.arange(4, dtype=np.int8), n // 4))),
        pa.array(np.repeat(np.concatenate([b.grid.dates for b in blocks]), 4)),
        pa.array(np.repeat(np.concatenate([b.grid.hours for b in blocks]), 4)),
        pa.array(values, mask=hidden | np.isnan(values)),
        pa.array(hidden),
    ], schema=OCCUPANCY_BATCH)
    return batch, int(hidden.sum())
