"""Forecasts in the database: train the global model nightly, refresh every lot's 7 days ahead every 15 minutes,
and read them back (`read_forecast` for one lot; `ForecastCache` for search and quotes, in process)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import orjson
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from analytics import model as m
from analytics import queries as q
from core.clock import Clock
from core.context import AppContext

#: history read for training: 3 weeks of lags behind 5 weeks of samples
TRAIN_DAYS = 56
#: history read to predict: 3 weeks of lags and a day
PREDICT_DAYS = 22
#: what the 15-minute refresh rewrites: the next 2 days (the nightly training writes all 7)
REFRESH_STEPS = 2 * m.DAY


async def load_series(engine: AsyncEngine, *, t0: datetime, t1: datetime,
                      lot_ids: Sequence[uuid.UUID] | None = None) -> dict[uuid.UUID, m.Series]:
    """Every lot's occupancy share per 15-minute bucket in [t0, t1) (all spot types together)."""
    t0, t1 = m.aligned(t0), m.aligned(t1)
    n = int((t1 - t0) / m.STEP)
    params = {"t0": t0, "t1": t1, "lots": list(lot_ids) if lot_ids is not None else None}
    async with engine.connect() as conn:
        rows = (await conn.execute(q.LOT_SERIES, params)).all()
        caps = {r.lot_id: int(r.capacity) for r in await conn.execute(q.LOT_CAPACITIES, params)}
    out: dict[uuid.UUID, m.Series] = {}
    values: dict[uuid.UUID, np.ndarray] = {}
    for r in rows:
        arr = values.get(r.lot_id)
        if arr is None:
            arr = values[r.lot_id] = np.full(n, np.nan, dtype=np.float32)
        if r.capacity > 0:
            arr[int((r.bucket - t0) / m.STEP)] = min(float(r.occupied) / int(r.capacity), 1.0)
    for lot, cap in caps.items():
        out[lot] = m.Series(t0, values.get(lot, np.full(n, np.nan, dtype=np.float32)), cap)
    return out


@dataclass(frozen=True)
class TrainReport:
    lots: int
    rows: int
    seconds: float
    trained_at: datetime | None
    forecasts: int

    def as_json(self) -> dict[str, Any]:
        return {"model": m.MODEL_NAME if self.trained_at else "baseline", "lots": self.lots, "rows": self.rows,
                "train_seconds": round(self.seconds, 2),
                "trained_at": self.trained_at.isoformat() if self.trained_at else None, "forecasts": self.forecasts}


async def train(*, engine: AsyncEngine, now: datetime, lot_ids: Sequence[uuid.UUID] | None = None) -> TrainReport:
    """Fit the global model on the last TRAIN_DAYS of history and write fresh forecasts. With `lot_ids`, the model
    is fitted on those lots only and used for their forecasts without replacing the stored global model."""
    end = m.aligned(now)
    series = await load_series(engine, t0=end - timedelta(days=TRAIN_DAYS), t1=end, lot_ids=lot_ids)
    started = time.perf_counter()
    fitted = await asyncio.to_thread(m.train, series, now=now)
    seconds = time.perf_counter() - started
    if fitted is not None and lot_ids is None:
        async with engine.begin() as conn:
            await conn.execute(q.SAVE_MODEL, {"name": m.MODEL_NAME, "trained_at": now, "body": fitted.to_bytes(),
                                              "metrics": json.dumps({"rows": fitted.rows, "seconds": seconds})})
    written = await refresh(engine=engine, now=now, lot_ids=lot_ids, fitted=fitted)
    return TrainReport(len(series), fitted.rows if fitted else 0, seconds, fitted.trained_at if fitted else None,
                       written)


async def stored_model(engine: AsyncEngine) -> m.Model | None:
    async with engine.connect() as conn:
        row = (await conn.execute(q.LOAD_MODEL, {"name": m.MODEL_NAME})).first()
    return m.Model.from_bytes(bytes(row.body)) if row is not None else None


async def refresh(*, engine: AsyncEngine, now: datetime, lot_ids: Sequence[uuid.UUID] | None = None,
                  fitted: m.Model | None = None, steps: int = m.HORIZON_STEPS) -> int:
    """Forecast every lot `steps` buckets ahead (7 days by default) from its latest observations with the stored
    model (a lot without enough history gets the stated baseline), replacing its stored forecast up to there
    (and everything before now); returns the rows written. The 15-minute refresh rewrites the next 2 days
    (REFRESH_STEPS); the nightly training all 7."""
    end = m.aligned(now)
    model = fitted or await stored_model(engine)
    series = await load_series(engine, t0=end - timedelta(days=PREDICT_DAYS), t1=end, lot_ids=lot_ids)
    first = end  # the bucket now is in: not closed yet, so forecast
    city = m.city_profile(series.values(), [first + m.STEP * k for k in range(steps)])

    def predict() -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        made = m.forecast_many(series, model=model, origin_end=end, first=first, steps=steps, city=city)
        for lot, f in made.items():
            rows.extend((lot, "all", a, float(p), float(lo), float(hi), f.model, f.trained_at, now)
                        for a, p, lo, hi in zip(f.at, f.occupancy, f.low, f.high, strict=True))
        return rows

    rows = await asyncio.to_thread(predict)
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        pg = raw.driver_connection
        assert pg is not None
        async with pg.transaction():
            await pg.execute("SET LOCAL statement_timeout = 0")
            await pg.execute(q.REPLACE_FORECASTS_BEFORE, first + m.STEP * steps,
                             list(lot_ids) if lot_ids is not None else None)
            await pg.copy_records_to_table("forecasts", records=rows, timeout=1800, columns=q.FORECAST_COLUMNS)
    return len(rows)


# -- reading -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LotForecast:
    """A lot's stored forecast for [from, to): the model that made it and its 15-minute points."""

    lot_id: uuid.UUID
    model: str | None
    trained_at: datetime | None
    points: list[dict[str, Any]]
    likely_full_at: datetime | None

    def as_json(self, vehicle_type: str | None) -> dict[str, Any]:
        return {"lot_id": str(self.lot_id), "vehicle_type": vehicle_type,
                "model": {"name": self.model, "trained_at": self.trained_at.isoformat() if self.trained_at else None},
                "points": self.points,
                "likely_full_at": self.likely_full_at.isoformat().replace("+00:00", "Z") if self.likely_full_at else None}


async def read_forecast(conn: AsyncConnection, *, lot_id: uuid.UUID, starts_at: datetime,
                        ends_at: datetime) -> LotForecast | None:
    """A lot's stored forecast in [starts_at, ends_at) (whole buckets); None when the lot does not exist. A lot
    without a forecast yet answers no points (model None)."""
    if (await conn.execute(q.LOT_EXISTS, {"lot_id": lot_id})).first() is None:
        return None
    rows = (await conn.execute(q.READ_FORECAST, {"lot_id": lot_id, "t0": m.aligned(starts_at),
                                                  "t1": ends_at})).all()
    points = [{"at": r.at.isoformat().replace("+00:00", "Z"), "occupancy": round(float(r.occupancy), 4),
               "low": round(float(r.low), 4), "high": round(float(r.high), 4)} for r in rows]
    full = m.likely_full_at([r.at for r in rows], np.array([r.occupancy for r in rows], dtype=np.float32))
    return LotForecast(lot_id, rows[0].model if rows else None, rows[0].trained_at if rows else None, points, full)


class ForecastCache:
    """Every lot's stored forecast for the next 2 days, in process: search and quotes read it without SQL per
    request.

    `refresh_if_due` asks PostgreSQL at most once per `check_every` whether a newer forecast was written (one
    max() over an index) and, when one was, reloads every lot's next 2 days (one query). Between checks,
    `occupancy` and `search_item` are list lookups: a search page asks for 20 lots."""

    def __init__(self, *, engine: AsyncEngine | None, clock: Clock, check_every: timedelta = timedelta(seconds=60),
                 window: timedelta = timedelta(days=2)) -> None:
        self.engine, self.clock, self.check_every, self.window = engine, clock, check_every, window
        self.version: datetime | None = None
        self.start: datetime | None = None
        self._start_s = 0.0
        #: lot -> (occupancy per bucket, index of the next bucket forecast full from each bucket, or -1)
        self.lots: dict[uuid.UUID, tuple[list[float], list[int]]] = {}
        self._items: dict[int, dict[uuid.UUID, ShownForecast | None]] = {}
        self._next_check = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh_if_due(self) -> None:
        mono = time.monotonic()
        if mono < self._next_check or self.engine is None:
            return
        async with self._lock:
            if mono < self._next_check:
                return
            self._next_check = mono + self.check_every.total_seconds()
            async with self.engine.connect() as conn:
                version = await conn.scalar(q.FORECASTS_VERSION)
                start = m.aligned(self.clock.now())
                if version is None or (version == self.version and start == self.start):
                    return
                rows = (await conn.execute(q.ALL_FORECASTS, {"t0": start, "t1": start + self.window})).all()
            self.load(rows, start=start, version=version)

    def load(self, rows: Sequence[Any], *, start: datetime, version: datetime | None) -> None:
        """Replace the cache with `rows` (lot_id, at, occupancy) from `start` on."""
        n = int(self.window / m.STEP)
        arrays: dict[uuid.UUID, np.ndarray] = {}
        for r in rows:
            arr = arrays.get(r.lot_id)
            if arr is None:
                arr = arrays[r.lot_id] = np.full(n, np.nan, dtype=np.float64)
            i = int((r.at - start) / m.STEP)
            if 0 <= i < n:
                arr[i] = r.occupancy
        lots = {}
        for lot, arr in arrays.items():
            nxt = np.full(n + 1, -1, dtype=np.int64)
            for i in range(n - 1, -1, -1):  # the next full bucket at or after each bucket
                nxt[i] = i if arr[i] >= m.LIKELY_FULL else nxt[i + 1]
            lots[lot] = ([float(v) for v in arr], [int(v) for v in nxt[:n]])
        self.lots, self.start, self.version, self._items = lots, start, version, {}
        self._start_s = start.timestamp()

    def _index(self, at: datetime) -> int:
        return int((at.timestamp() - self._start_s) // 900)

    def occupancy(self, lot_id: uuid.UUID, starts_at: datetime, ends_at: datetime) -> float | None:
        """The highest forecast share over [starts_at, ends_at) (None when the lot has no forecast for it)."""
        found = self.lots.get(lot_id)
        if found is None:
            return None
        occ = found[0]
        i, j = max(self._index(starts_at), 0), min(self._index(ends_at - timedelta(microseconds=1)) + 1, len(occ))
        known = [v for v in occ[i:j] if v == v]
        return max(known) if known else None

    def search_item(self, lot_id: uuid.UUID, starts_at: datetime) -> ShownForecast | None:
        """A search item's `forecast`: the share forecast at the window's start and the first bucket from then on
        forecast full (within the cached 2 days); None without a forecast for that time."""
        return self.page([lot_id], starts_at)[0]

    def page(self, lot_ids: Sequence[uuid.UUID], starts_at: datetime) -> list[ShownForecast | None]:
        """search_item for each lot of a search page (one window): made once per lot and bucket, JSON included."""
        i = self._index(starts_at)
        memo = self._items.get(i)
        if memo is None:
            if len(self._items) > 16:  # a few buckets at a time: searches ask about the next hours mostly
                self._items.clear()
            memo = self._items[i] = {}
        out: list[ShownForecast | None] = []
        for lot in lot_ids:
            if lot in memo:
                out.append(memo[lot])
            else:
                out.append(memo.setdefault(lot, self._item(lot, i)))
        return out

    def _item(self, lot_id: uuid.UUID, i: int) -> ShownForecast | None:
        found = self.lots.get(lot_id)
        if found is None or self.start is None:
            return None
        occ, nxt = found
        if not 0 <= i < len(occ) or occ[i] != occ[i]:
            return None
        full = nxt[i]
        item = ShownForecast(occupancy_at_start=round(occ[i], 3), likely_full_at=(
            self.start + m.STEP * full).isoformat().replace("+00:00", "Z") if full >= 0 else None)
        item.json = orjson.dumps(item)
        return item


class ShownForecast(dict[str, Any]):
    """A search item's forecast, and `json`, the same as JSON bytes written once (search splices them in)."""

    __slots__ = ("json",)
    json: bytes


def forecast_cache(ctx: AppContext) -> ForecastCache:
    """The process's ForecastCache (one per context)."""
    return ctx.shared("forecast_cache", lambda: ForecastCache(engine=ctx.engine, clock=ctx.clock))
