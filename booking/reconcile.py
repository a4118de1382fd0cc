"""Redis is derivable from PostgreSQL: rebuild a lot's slot state, repair one spot, detect a lost Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from booking import queries as q
from booking.runtime import REDIS_DOWN, RedisBreaker
from booking.slotbuild import Occupancy
from booking.slots import SLOT_SECONDS, SpotInfo, abs_slot_floor
from booking.slotstore import RepairStats, SlotStore
from core.logging import get_logger
from core.vocabulary import Window

log = get_logger("parkgrid.reconcile")
DEFAULT_HORIZON_DAYS = 31

# q.LOT_OCCUPANCY_PACKED's records: int4 big-endian; timestamptz as int8 big-endian microseconds since 2000-01-01
_PACKED_ROW = np.dtype([("idx", ">i4"), ("start", ">i8"), ("end", ">i8")])
_PG_EPOCH_MICROS = 946_684_800_000_000
_SLOT_MICROS = SLOT_SECONDS * 1_000_000


@dataclass
class ReconcileReport:
    lots: int = 0
    bits_set: int = 0
    bits_cleared: int = 0
    seconds: float = 0.0
    redis_was_reset: bool = False
    repaired_lots: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {"lots": self.lots, "bits_set": self.bits_set, "bits_cleared": self.bits_cleared,
                "seconds": round(self.seconds, 3), "redis_was_reset": self.redis_was_reset,
                "repaired_lots": self.repaired_lots[:50]}


def _days(now: datetime, horizon_days: int) -> list[date]:
    start = (now - timedelta(days=1)).date()
    return [start + timedelta(days=i) for i in range(horizon_days + 2)]


@dataclass(frozen=True)
class LotTruth:
    """What PostgreSQL says about one lot's slot state."""

    allocation_strategy: str
    ev_overflow: bool
    spots: list[SpotInfo]
    occupancy: Occupancy


async def read_lot(*, engine: AsyncEngine, lot_id: uuid.UUID, days: list[date]) -> LotTruth | None:
    """The lot's spots and what occupies them on `days` (None for an unknown lot or one without spots)."""
    horizon_start = datetime.combine(days[0], datetime.min.time(), tzinfo=UTC)
    horizon_end = datetime.combine(days[-1] + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    async with engine.connect() as conn:
        lot = (await conn.execute(q.LOT_FOR_BOOKING, {"lot_id": lot_id})).first()
        if lot is None:
            return None
        spot_rows = list(await conn.execute(q.LOT_SPOTS, {"lot_id": lot_id}))
        packed = await conn.scalar(q.LOT_OCCUPANCY_PACKED, {"lot_id": lot_id, "from_": horizon_start, "to_": horizon_end})
    if not spot_rows:
        return None
    occupancy = _occupancy(packed or b"", horizon_start, horizon_end)
    # A spot out of service is busy for the whole horizon: never offered, never counted free.
    out_of_service = np.array([idx for idx, *_, status in spot_rows if status != "in_service"], np.int64)
    occupancy += Occupancy(out_of_service, np.full_like(out_of_service, abs_slot_floor(horizon_start)),
                           np.full_like(out_of_service, abs_slot_floor(horizon_end)))
    return LotTruth(allocation_strategy=lot.allocation_strategy, ev_overflow=lot.ev_overflow,
                    spots=[SpotInfo(idx, type_, level, rank) for idx, type_, level, rank, _ in spot_rows],
                    occupancy=occupancy)


async def rebuild_lot(*, engine: AsyncEngine, slots: SlotStore, lot_id: uuid.UUID, now: datetime,
                      horizon_days: int = DEFAULT_HORIZON_DAYS) -> RepairStats:
    """Make a lot's Redis state (metadata, bitmaps, counters) exactly what PostgreSQL says."""
    days = _days(now, horizon_days)
    truth = await read_lot(engine=engine, lot_id=lot_id, days=days)
    if truth is None:
        return RepairStats()
    return await slots.rebuild_lot(lot_id=str(lot_id), spots=truth.spots, occupancy=truth.occupancy,
                                   strategy=truth.allocation_strategy, ev_overflow=truth.ev_overflow, days=days)


def _occupancy(packed: bytes, horizon_start: datetime, horizon_end: datetime) -> Occupancy:
    """Occupancy from q.LOT_OCCUPANCY_PACKED: starts floored and ends ceiled to slots, both clipped to the
    horizon first (so a far or infinite timestamp cannot overflow)."""
    rows = np.frombuffer(packed, _PACKED_ROW)
    lo, hi = (int(t.timestamp()) * 1_000_000 - _PG_EPOCH_MICROS for t in (horizon_start, horizon_end))
    start = np.clip(rows["start"], lo, hi) + _PG_EPOCH_MICROS
    end = np.clip(rows["end"], lo, hi) + _PG_EPOCH_MICROS
    return Occupancy(rows["idx"].astype(np.int64), start // _SLOT_MICROS, -(-end // _SLOT_MICROS))


async def repair_spot(*, engine: AsyncEngine, slots: SlotStore, lot_id: uuid.UUID, spot_idx: int,
                      window: Window) -> RepairStats:
    """Make one spot's bits on the window's days what PostgreSQL says."""
    first = window.slot_start.date()
    last = (window.slot_end - timedelta(microseconds=1)).date()
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    day_start = datetime.combine(first, datetime.min.time(), tzinfo=window.slot_start.tzinfo)
    day_end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=window.slot_start.tzinfo)
    async with engine.connect() as conn:
        rows = list(await conn.execute(q.SPOT_OCCUPANCY, {"lot_id": lot_id, "idx": spot_idx, "from_": day_start,
                                                          "to_": day_end}))
    stats = await slots.repair_spot(lot_id=str(lot_id), spot_idx=spot_idx, occupancy=[(r.s, r.e) for r in rows],
                                    days=days)
    log.info("spot_repaired", lot_id=str(lot_id), spot_idx=spot_idx, bits_set=stats.bits_set,
             bits_cleared=stats.bits_cleared)
    return stats


async def reconcile(*, engine: AsyncEngine, slots: SlotStore, now: datetime,
                    lot_ids: Iterable[uuid.UUID] | None = None,
                    horizon_days: int = DEFAULT_HORIZON_DAYS, concurrency: int = 4) -> ReconcileReport:
    """Rebuild the given lots (default: every lot), each once, and count what was repaired.

    Up to `concurrency` lots are in flight, so one lot's PostgreSQL read and Redis write overlap
    another's bitmap build. If any lot fails, the first failure (in `lot_ids` order) is raised
    after every other lot was rebuilt, and no totals are exported."""
    started = time.perf_counter()
    report = ReconcileReport()
    report.redis_was_reset = await slots.ensure_epoch()
    if lot_ids is None:
        async with engine.connect() as conn:
            lot_ids = [r.id for r in await conn.execute(q.LOTS_WITH_SPOTS)]
    lots = list(dict.fromkeys(lot_ids))
    gate = asyncio.Semaphore(concurrency)

    async def rebuild(lot_id: uuid.UUID) -> RepairStats:
        async with gate:
            return await rebuild_lot(engine=engine, slots=slots, lot_id=lot_id, now=now, horizon_days=horizon_days)

    # A lot that fails does not stop (or cancel half-way) the others; its error is raised once they are done.
    results = await asyncio.gather(*(rebuild(lot_id) for lot_id in lots), return_exceptions=True)
    repaired: list[tuple[uuid.UUID, int, int]] = []
    for lot_id, stats in zip(lots, results, strict=True):
        if isinstance(stats, BaseException):
            raise stats
        report.lots += 1
        report.bits_set += stats.bits_set
        report.bits_cleared += stats.bits_cleared
        if stats.bits_set or stats.bits_cleared:
            report.repaired_lots.append(str(lot_id))
            repaired.append((lot_id, stats.bits_set, stats.bits_cleared))
    if repaired:  # the lots' operators see each repair as an alert (controllers.dashboard)
        async with engine.begin() as conn:
            await conn.execute(q.INSERT_REDIS_REPAIRS, {"now": now, "lot_ids": [r[0] for r in repaired],
                                                        "bits_set": [r[1] for r in repaired],
                                                        "bits_cleared": [r[2] for r in repaired]})
    report.seconds = time.perf_counter() - started
    log.info("reconciled", **report.as_json())
    try:  # shared across processes, exported by the API's /metrics
        totals_key = slots.keys.reconcile_stats()
        async with slots.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(totals_key, "runs", 1)
            pipe.hincrby(totals_key, "lots", report.lots)
            pipe.hincrby(totals_key, "bits_set", report.bits_set)
            pipe.hincrby(totals_key, "bits_cleared", report.bits_cleared)
            pipe.hincrby(totals_key, "resets", int(report.redis_was_reset))
            await pipe.execute()
    except REDIS_DOWN:
        pass
    return report


async def reconcile_stats(slots: SlotStore) -> dict[str, int]:
    """Totals of every reconcile run so far (runs, lots, bits_set, bits_cleared, resets)."""
    raw = await slots.redis.hgetall(slots.keys.reconcile_stats())
    return {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}


async def reconcile_if_reset(*, engine: AsyncEngine, slots: SlotStore, now: datetime) -> ReconcileReport | None:
    """Rebuild everything only when Redis lost its state (the epoch key is gone)."""
    if await slots.redis.exists(slots.keys.epoch()):
        return None
    return await reconcile(engine=engine, slots=slots, now=now)


async def active_lot_ids(engine: AsyncEngine, *, now: datetime) -> list[uuid.UUID]:
    """Lots with any occupying reservation from now on: the ones worth a periodic reconcile."""
    async with engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT DISTINCT lot_id FROM reservations WHERE status IN ('held','confirmed','active')"
            " AND upper(period) > :now"), {"now": now})
        return [r.lot_id for r in rows]


async def forget_lot(*, slots: SlotStore, breaker: RedisBreaker, lot_id: uuid.UUID) -> None:
    """The lot's spots or policies changed: make the next Redis use rebuild it from PostgreSQL."""
    try:
        await slots.forget_lot(lot_id=str(lot_id))
    except REDIS_DOWN as exc:
        breaker.trip(exc)
        breaker.dirty_lots.add(lot_id)
