"""Live occupancy counters per lot, level and spot type in Redis, derivable from PostgreSQL.

One hash per lot under the lot's hash tag holds, per group "<level_id>|<spot_type>": capacity (c),
mapped sensors (n), occupied (o), unknown (u) and the newest reading (t, epoch ms). Deltas go through
one Lua script that clamps every value to [0, capacity]; a missing hash is rebuilt from PostgreSQL.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine

from controllers import sensor_queries as q
from core.keys import Keys

log = logging.getLogger(__name__)

OCCUPANCY = "occ"  # per lot: hash of live counters
OCC_DRIFT = "occdr"  # per lot: number of clamped counter updates
READY = "_ready"


def occupancy_key(prefix: str, lot_id: uuid.UUID) -> str:
    return f"{Keys(prefix).lot_tag(str(lot_id))}:{OCCUPANCY}"


def drift_key(prefix: str, lot_id: uuid.UUID) -> str:
    return f"{Keys(prefix).lot_tag(str(lot_id))}:{OCC_DRIFT}"


def group_of(level_id: uuid.UUID | str, spot_type: str) -> str:
    return f"{level_id}|{spot_type}"


@dataclass
class Delta:
    occupied: int = 0
    unknown: int = 0
    sensors: int = 0
    seen_ms: int = 0

    def add(self, *, occupied: int = 0, unknown: int = 0, sensors: int = 0, seen: datetime | None = None) -> None:
        self.occupied += occupied
        self.unknown += unknown
        self.sensors += sensors
        if seen is not None:
            self.seen_ms = max(self.seen_ms, int(seen.timestamp() * 1000))


def contribution(state: str) -> tuple[int, int]:
    """(occupied, unknown) that one sensor in `state` adds to its group."""
    return (1 if state == "occupied" else 0, 1 if state == "unknown" else 0)


@dataclass(frozen=True)
class GroupCount:
    level_id: str
    spot_type: str
    capacity: int
    sensors: int
    occupied: int
    unknown: int
    as_of: datetime | None


def _script(name: str) -> str:
    return resources.files("controllers").joinpath("lua", name).read_text()


class OccupancyCounters:
    """The live counters of every lot, for one Redis client and key prefix."""

    def __init__(self, *, redis: aioredis.Redis, prefix: str, engine: AsyncEngine) -> None:
        self.redis = redis
        self.prefix = prefix
        self.engine = engine
        self._apply = redis.register_script(_script("occupancy_apply.lua"))
        self._replace = redis.register_script(_script("occupancy_replace.lua"))
        self.dirty: set[uuid.UUID] = set()  # lots whose deltas were lost while Redis was away
        #: told which lot's counters changed (the operators' live stream: controllers.live)
        self.on_change: Callable[[uuid.UUID], None] | None = None

    async def apply(self, *, lot_id: uuid.UUID, deltas: dict[str, Delta]) -> int:
        """Apply deltas (already committed in PostgreSQL); rebuild when Redis lost the lot. Returns clamps."""
        if not deltas:
            return 0
        try:
            return await self._apply_deltas(lot_id=lot_id, deltas=deltas)
        finally:
            if self.on_change is not None:
                self.on_change(lot_id)

    async def _apply_deltas(self, *, lot_id: uuid.UUID, deltas: dict[str, Delta]) -> int:
        try:
            if lot_id in self.dirty:
                await self.rebuild(lot_id=lot_id)
                return 0
            argv: list[Any] = []
            for group, d in deltas.items():
                argv += [group, d.occupied, d.unknown, d.sensors, d.seen_ms]
            result = int(await self._apply(keys=[occupancy_key(self.prefix, lot_id), drift_key(self.prefix, lot_id)],
                                           args=argv))
            if result == -1:  # never built or lost: PostgreSQL already holds this batch
                await self.rebuild(lot_id=lot_id)
                return 0
            return result
        except (RedisError, OSError) as exc:
            log.warning("occupancy counters not updated for lot %s: %s", lot_id, exc)
            self.dirty.add(lot_id)
            return 0

    async def rebuild(self, *, lot_id: uuid.UUID) -> list[GroupCount]:
        """Replace the lot's counters with counts computed from PostgreSQL (sensors are the truth)."""
        groups = await counts_from_db(self.engine, lot_id=lot_id)
        mapping: dict[str | bytes, Any] = {READY: 1}
        for g in groups:
            stem = group_of(g.level_id, g.spot_type)
            mapping.update({f"{stem}|c": g.capacity, f"{stem}|n": g.sensors, f"{stem}|o": g.occupied,
                            f"{stem}|u": g.unknown,
                            f"{stem}|t": int(g.as_of.timestamp() * 1000) if g.as_of else 0})
        key = occupancy_key(self.prefix, lot_id)
        await self._replace(keys=[key], args=[part for item in mapping.items() for part in item])
        self.dirty.discard(lot_id)
        return groups

    async def read(self, *, lot_id: uuid.UUID) -> list[GroupCount]:
        """The lot's live counters (rebuilt first when missing); PostgreSQL when Redis is away."""
        try:
            raw = await self.redis.hgetall(occupancy_key(self.prefix, lot_id))
            if not raw or READY.encode() not in raw or lot_id in self.dirty:
                return await self.rebuild(lot_id=lot_id)
        except (RedisError, OSError) as exc:
            log.warning("occupancy counters unreadable for lot %s: %s", lot_id, exc)
            return await counts_from_db(self.engine, lot_id=lot_id)
        return parse_counters(raw)


def parse_counters(raw: dict[Any, Any]) -> list[GroupCount]:
    values: dict[str, dict[str, int]] = {}
    for field, value in raw.items():
        name = field.decode() if isinstance(field, bytes) else str(field)
        if name == READY:
            continue
        stem, _, kind = name.rpartition("|")
        values.setdefault(stem, {})[kind] = int(value)
    out = []
    for stem, v in values.items():
        level_id, _, spot_type = stem.partition("|")
        t = v.get("t", 0)
        out.append(GroupCount(level_id=level_id, spot_type=spot_type, capacity=v.get("c", 0), sensors=v.get("n", 0),
                              occupied=v.get("o", 0), unknown=v.get("u", 0),
                              as_of=datetime.fromtimestamp(t / 1000, tz=UTC) if t else None))
    return out


async def counts_from_db(engine: AsyncEngine, *, lot_id: uuid.UUID) -> list[GroupCount]:
    """Per level and type: capacity and sensor states, straight from PostgreSQL."""
    async with engine.connect() as conn:
        rows = (await conn.execute(q.OCCUPANCY_BY_GROUP, {"lot_id": lot_id})).all()
    out = []
    for r in rows:
        n = min(int(r.sensors), int(r.capacity))  # a sensor on an out-of-service spot never exceeds capacity
        o = min(int(r.occupied), n)
        out.append(GroupCount(level_id=str(r.level_id), spot_type=r.spot_type, capacity=int(r.capacity), sensors=n,
                              occupied=o, unknown=min(int(r.unknown), n - o), as_of=r.as_of))
    return out


def merge_deltas(items: Iterable[tuple[str, Delta]]) -> dict[str, Delta]:
    out: dict[str, Delta] = {}
    for group, d in items:
        acc = out.setdefault(group, Delta())
        acc.occupied += d.occupied
        acc.unknown += d.unknown
        acc.sensors += d.sensors
        acc.seen_ms = max(acc.seen_ms, d.seen_ms)
    return out


def counters_for(ctx: Any) -> OccupancyCounters:
    """The process's counters (one per AppContext, created on first use)."""
    found = ctx.extras.get("occupancy_counters")
    if found is None:
        found = OccupancyCounters(redis=ctx.redis, prefix=ctx.settings.redis_prefix, engine=ctx.engine)
        from controllers.live import live_publisher  # the live stream recomputes occupancy through these counters

        found.on_change = live_publisher(ctx).changed
        ctx.extras["occupancy_counters"] = found
    return found  # type: ignore[no-any-return]
