"""Bay sensor ingestion: one domain function for HTTP batches and MQTT, exactly once per event_id.

Each event is validated on its own (one bad event never sinks a batch), claimed by event_id in
PostgreSQL, applied through the debounce/confidence rules under a row lock on its sensor, recorded
raw in sensor_events and, when a bay changes state, as a CDS controller event. A batch is a handful
of set-based statements on the raw asyncpg pool (ADR 0007), whatever its size. Live counters in
Redis move after the commit, in one Lua call; PostgreSQL stays the truth they are rebuilt from.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from controllers import sensor_queries as q
from controllers.debounce import (
    APPLIED,
    DEFAULT_RULES,
    UNSEEN,
    Reading,
    SensorRules,
    SensorState,
    apply_reading,
    cds_events,
)
from controllers.messages import SensorEventIn, first_error
from controllers.occupancy import Delta, OccupancyCounters, contribution, group_of

MAX_BATCH = 5000
_STATES = ("occupied", "vacant")


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, str | None]] = field(default_factory=list)
    ignored: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected,
                "ignored": self.ignored}


def parse_event(raw: Any, *, sensor_id: str | None = None) -> Reading:
    """One event through controllers.messages.SensorEventIn, the model of every lane (HTTP batch items, MQTT
    messages), or ValueError naming the field (MQTT passes the topic's sensor id, which the body must match)."""
    try:
        event = SensorEventIn.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(first_error(exc)) from None
    if sensor_id is not None and event.sensor_id != sensor_id:
        raise ValueError("sensor_id differs from the topic's")
    return Reading(event_id=event.event_id, sensor_id=event.sensor_id, state=event.state,
                   confidence=float(event.confidence), occurred_at=event.occurred_at_utc)


def ledger_id(value: str) -> str:
    """A controller_events id of at most 100 characters (long ids are hashed, deterministically)."""
    return value if len(value) <= 100 else "sensor:h:" + hashlib.sha256(value.encode()).hexdigest()


def _event_id_of(raw: Any) -> str | None:
    if isinstance(raw, dict) and isinstance(raw.get("event_id"), str):
        return str(raw["event_id"])[:100]
    return None


def _validated(events: list[Any], *, now: datetime, rules: SensorRules, sensor_id: str | None,
               result: BatchResult) -> list[Reading]:
    """The batch's well-formed readings, first of each event_id; rejects and in-batch duplicates go to `result`."""
    readings: list[Reading] = []
    seen_ids: set[str] = set()
    latest = now + rules.max_future
    for raw in events:
        try:
            reading = parse_event(raw, sensor_id=sensor_id)
        except ValueError as exc:
            result.rejected.append({"event_id": _event_id_of(raw), "reason": str(exc)})
            continue
        if reading.occurred_at > latest:
            result.rejected.append({"event_id": reading.event_id, "reason": "occurred_at is in the future"})
            continue
        if reading.event_id in seen_ids:
            result.duplicates += 1
            continue
        seen_ids.add(reading.event_id)
        readings.append(reading)
    return readings


async def _lock_sensors(conn: asyncpg.Connection, *, lot_id: uuid.UUID,
                        sensor_ids: list[str]) -> tuple[dict[str, asyncpg.Record], set[str]]:
    """The batch's sensor rows, locked; sensors never seen before are registered first (returned as new)."""
    rows = {r["id"]: r for r in await conn.fetch(q.LOCK_SENSORS, lot_id, sensor_ids)}
    missing = [sid for sid in sensor_ids if sid not in rows]
    if not missing:
        return rows, set()
    registered = {r["id"] for r in await conn.fetch(q.REGISTER_SENSORS, lot_id, missing)}
    # ours, and any another batch registered meanwhile (locked once it commits)
    rows.update((r["id"], r) for r in await conn.fetch(q.LOCK_SENSORS, lot_id, missing))
    return rows, registered


UNKNOWN_SENSOR = ("unknown sensor: no spot of this lot is mapped to it (name the sensor by its spot's label or id, "
                  "or map it with PUT /api/v1/lots/{lot_id}/sensors/{sensor_id})")


async def _reject_unknown(conn: asyncpg.Connection, lot_id: uuid.UUID, fresh: list[Reading],
                          rows: dict[str, asyncpg.Record], result: BatchResult) -> list[Reading]:
    """Readings of sensors mapped to a spot; the others are rejected with the reason and their ids given back."""
    unknown = [r for r in fresh if r.sensor_id not in rows or rows[r.sensor_id]["spot_id"] is None]
    if not unknown:
        return fresh
    for r in unknown:
        result.rejected.append({"event_id": r.event_id, "reason": UNKNOWN_SENSOR})
    await conn.execute(q.UNCLAIM_EVENT_IDS, lot_id, [r.event_id for r in unknown])
    return [r for r in fresh if r.sensor_id in rows and rows[r.sensor_id]["spot_id"] is not None]


@dataclass
class _Applied:
    """What a batch's fresh readings did to their sensors (decided under the sensors' row locks)."""

    states: dict[str, SensorState]
    accepted: list[bool]
    changes: list[tuple[Reading, str]]  # (reading, CDS event type) for the controller-events ledger


def _apply(fresh: list[Reading], states: dict[str, SensorState], *, registered: set[str], rules: SensorRules,
           now: datetime, result: BatchResult) -> _Applied:
    """Run each reading, oldest first, through its sensor's rules; ignored readings go to `result` with a reason."""
    states = dict(states)
    accepted: list[bool] = []
    changes: list[tuple[Reading, str]] = []
    for r in fresh:
        old = states[r.sensor_id]
        new, outcome = apply_reading(old, r, rules=rules, now=now)
        states[r.sensor_id] = new
        accepted.append(outcome in APPLIED)
        if outcome in APPLIED:
            result.accepted += 1
        else:
            result.ignored.append({"event_id": r.event_id, "reason": outcome})
        if outcome == "changed":
            first = r.sensor_id in registered and old.last_seen_at is None
            changes += [(r, cds) for cds in cds_events(old.state, new.state)
                        if not (first and cds == "comms_restored")]
    return _Applied(states=states, accepted=accepted, changes=changes)


def _deltas(rows: dict[str, asyncpg.Record], before: dict[str, SensorState], after: dict[str, SensorState],
            registered: set[str]) -> dict[str, Delta]:
    """Counter deltas per level and spot type; a new sensor adds itself, a known one moves its contribution."""
    deltas: dict[str, Delta] = defaultdict(Delta)
    for sid, new in after.items():
        row = rows[sid]
        if row["level_id"] is None:
            continue  # a sensor mapped to no spot counts towards nothing
        o0, u0 = (0, 0) if sid in registered else contribution(before[sid].state)
        o1, u1 = contribution(new.state)
        deltas[group_of(row["level_id"], row["spot_type"])].add(
            occupied=o1 - o0, unknown=u1 - u0, sensors=1 if sid in registered else 0, seen=new.last_seen_at)
    return dict(deltas)


async def ingest_sensor_events(*, pg: asyncpg.Pool, counters: OccupancyCounters | None, lot_id: uuid.UUID,
                               events: list[Any], now: datetime, device_id: uuid.UUID | None = None,
                               rules: SensorRules = DEFAULT_RULES, sensor_id: str | None = None) -> BatchResult:
    """Validate, deduplicate and apply a batch of sensor events for one lot; counters follow after commit."""
    result = BatchResult()
    readings = _validated(events, now=now, rules=rules, sensor_id=sensor_id, result=result)
    if not readings:
        return result

    async with pg.acquire() as conn, conn.transaction():
        claimed = {r[0] for r in await conn.fetch(q.CLAIM_EVENT_IDS, lot_id, now,
                                                  sorted(r.event_id for r in readings))}
        result.duplicates += len(readings) - len(claimed)
        fresh = sorted((r for r in readings if r.event_id in claimed), key=lambda r: (r.occurred_at, r.event_id))
        if not fresh:
            return result
        rows, registered = await _lock_sensors(conn, lot_id=lot_id, sensor_ids=sorted({r.sensor_id for r in fresh}))
        fresh = await _reject_unknown(conn, lot_id, fresh, rows, result)
        if not fresh:
            return result
        rows = {sid: row for sid, row in rows.items() if row["spot_id"] is not None}
        before: dict[str, SensorState] = {
            sid: UNSEEN if sid in registered else SensorState(state=row["state"], state_since=row["state_since"],
                                                              last_seen_at=row["last_seen_at"],
                                                              confidence=row["confidence"])
            for sid, row in rows.items()}
        done = _apply(fresh, before, registered=registered, rules=rules, now=now, result=result)
        after = done.states.values()
        await conn.execute(q.UPDATE_SENSORS, lot_id, list(done.states), [s.state for s in after],
                           [s.state_since for s in after], [s.last_seen_at for s in after],
                           [s.confidence for s in after])
        await conn.execute(q.INSERT_SENSOR_EVENTS, lot_id, now, [r.event_id for r in fresh],
                           [r.sensor_id for r in fresh], [r.state for r in fresh], [r.confidence for r in fresh],
                           [r.occurred_at for r in fresh], done.accepted)
        if done.changes:
            spots = {sid: str(row["spot_id"]) if row["spot_id"] else None for sid, row in rows.items()}
            await conn.execute(q.INSERT_CONTROLLER_EVENTS, lot_id, now, device_id,
                               [ledger_id(f"sensor:{r.event_id}:{cds}") for r, cds in done.changes],
                               [cds for _, cds in done.changes], [r.occurred_at for r, _ in done.changes],
                               [r.sensor_id for r, _ in done.changes], [spots[r.sensor_id] for r, _ in done.changes])
    if counters is not None:
        await counters.apply(lot_id=lot_id, deltas=_deltas(rows, before, done.states, registered))
    return result


async def mark_stale_sensors(*, pg: asyncpg.Pool, counters: OccupancyCounters | None, now: datetime,
                             lot_id: uuid.UUID | None = None) -> int:
    """Sensors silent past their heartbeat become unknown (a comms_lost event each); returns how many."""
    by_lot: dict[uuid.UUID, list[asyncpg.Record]] = defaultdict(list)
    async with pg.acquire() as conn, conn.transaction():
        for r in await conn.fetch(q.MARK_STALE, now, lot_id):
            by_lot[r["lot_id"]].append(r)
        stamp = now.strftime("%Y%m%dT%H%M%S")
        for lot, items in by_lot.items():
            await conn.execute(q.INSERT_CONTROLLER_EVENTS, lot, now, None,
                               [ledger_id(f"sensor:{r['id']}:comms_lost:{stamp}") for r in items],
                               ["comms_lost"] * len(items), [now] * len(items), [r["id"] for r in items],
                               [str(r["spot_id"]) if r["spot_id"] else None for r in items])
    if counters is not None:
        for lot, items in by_lot.items():
            deltas: dict[str, Delta] = defaultdict(Delta)
            for r in items:
                if r["level_id"] is None:
                    continue
                o0, _ = contribution(r["old_state"])
                deltas[group_of(r["level_id"], r["spot_type"])].add(occupied=-o0, unknown=1)
            await counters.apply(lot_id=lot, deltas=dict(deltas))
    return sum(len(items) for items in by_lot.values())


async def prune_event_ids(*, engine: AsyncEngine, now: datetime, keep: timedelta = timedelta(days=7)) -> int:
    """Forget event ids older than `keep` (a device never replays a week-old event)."""
    async with engine.begin() as conn:
        res = await conn.execute(q.PRUNE_EVENT_IDS, {"before": now - keep})
    return int(res.rowcount or 0)  # type: ignore[attr-defined]
