"""A planner's own occupancy history as CSV (`lot_id, at, occupied, capacity`), checked row by row."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import TextIO

import numpy as np

from analytics.model import STEP, Series

COLUMNS = ("lot_id", "at", "occupied", "capacity")
#: gaps up to this many buckets are filled with the last value (hourly rows fill their quarter hours)
FILL_GAP = 3


class HistoryError(ValueError):
    """A CSV the forecaster refuses, naming the row (1 = the header) and the column."""

    def __init__(self, message: str, *, row: int | None = None, column: str | None = None) -> None:
        where = ", ".join(p for p in (f"row {row}" if row else "", f"column {column}" if column else "") if p)
        super().__init__(f"{where}: {message}" if where else message)
        self.row, self.column = row, column


def _utc(raw: str, row: int) -> datetime:
    try:
        at = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise HistoryError(f"not an ISO 8601 time: {raw!r}", row=row, column="at") from None
    if at.tzinfo is None:
        raise HistoryError(f"{raw!r} has no timezone; write UTC times, e.g. 2026-12-01T08:00:00Z", row=row,
                           column="at")
    if at.utcoffset() != timedelta(0):
        raise HistoryError(f"{raw!r} is not UTC (offset {at.utcoffset()}); write UTC times, e.g. ...Z", row=row,
                           column="at")
    at = at.astimezone(UTC)
    if at.second or at.microsecond or at.minute % 15:
        raise HistoryError(f"{raw!r} is not on a 15-minute boundary", row=row, column="at")
    return at


def _number(raw: str, row: int, column: str, *, integer: bool = False) -> float:
    try:
        value = int(raw) if integer else float(raw)
    except (TypeError, ValueError):
        kind = "an integer" if integer else "a number"
        raise HistoryError(f"{raw!r} is not {kind}", row=row, column=column) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise HistoryError(f"{raw!r} is not a finite number", row=row, column=column)
    return float(value)


def read_history(stream: TextIO) -> dict[str, Series]:
    """Each lot's occupancy share per 15-minute bucket; HistoryError on the first bad row."""
    reader = csv.DictReader(stream)
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise HistoryError(f"missing column(s) {', '.join(missing)} (need {', '.join(COLUMNS)})", row=1,
                           column=missing[0])
    reader.fieldnames = header
    points: dict[str, dict[datetime, tuple[float, int]]] = defaultdict(dict)
    seen_row: dict[tuple[str, datetime], int] = {}
    for n, raw in enumerate(reader, start=2):
        lot = (raw.get("lot_id") or "").strip()
        if not lot:
            raise HistoryError("lot_id is empty", row=n, column="lot_id")
        at = _utc(raw.get("at") or "", n)
        occupied = _number(raw.get("occupied") or "", n, "occupied")
        capacity = _number(raw.get("capacity") or "", n, "capacity", integer=True)
        if capacity <= 0:
            raise HistoryError(f"capacity must be at least 1 (got {raw.get('capacity')})", row=n, column="capacity")
        if occupied < 0:
            raise HistoryError(f"occupied must be >= 0 (got {raw.get('occupied')})", row=n, column="occupied")
        if occupied > capacity:
            raise HistoryError(f"occupied {raw.get('occupied')} is above capacity {raw.get('capacity')}", row=n,
                               column="occupied")
        first = seen_row.get((lot, at))
        if first is not None:
            raise HistoryError(f"duplicate timestamp {at.isoformat()} for lot {lot} (first on row {first})", row=n,
                               column="at")
        seen_row[(lot, at)] = n
        points[lot][at] = (occupied, int(capacity))
    if not points:
        raise HistoryError("no rows after the header", row=2)
    out = {}
    for lot, by_time in points.items():
        start, end = min(by_time), max(by_time)
        n_steps = int((end - start) / STEP) + 1
        values = np.full(n_steps, np.nan, dtype=np.float32)
        for at, (occ, cap) in by_time.items():
            values[int((at - start) / STEP)] = occ / cap
        _fill_short_gaps(values)
        capacity = by_time[end][1]
        out[lot] = Series(start, values, capacity)
    return out


def _fill_short_gaps(values: np.ndarray) -> None:
    last, gap = np.nan, 0
    for i, v in enumerate(values):
        if np.isnan(v):
            gap += 1
            if gap <= FILL_GAP and not np.isnan(last):
                values[i] = last
        else:
            last, gap = v, 0


def history_csv(series: dict[str, Series]) -> str:
    """Series back to the CSV form (used to hand the simulator's city to `forecast backtest --history`)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for lot, s in series.items():
        for i, v in enumerate(s.values):
            if not np.isnan(v):
                at = (s.start + STEP * i).isoformat().replace("+00:00", "Z")
                writer.writerow((lot, at, round(float(v) * s.capacity, 3), s.capacity))
    return out.getvalue()
