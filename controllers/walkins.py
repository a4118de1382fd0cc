"""Walk-ins: a spot booked at the entry gate through the same hold path as reservations, extended while the
car stays, and released when it leaves.

A walk-in is a `reservations` row of kind `walk_in`, status `active`, covering [entry, entry + the lot's
walk-in horizon). It takes the same Redis bits and the same exclusion constraint as every booking, so it can
never take a spot a confirmed reservation needs. The sweeper extends it (same spot) before its period ends;
when the spot is booked by someone else next, the session is flagged as an overstay risk instead. The exit
gate completes it together with its session (controllers.gates).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from booking import holds, repair
from booking.deps import BookingDeps, free_pricer
from booking.runtime import REDIS_DOWN
from booking.slots import widen
from controllers import queries_gates as q
from core.errors import PlateConflict
from core.logging import get_logger
from core.vocabulary import Window

log = get_logger("parkgrid.walkins")

async def admit_walk_in(*, deps: BookingDeps, lot_id: uuid.UUID, plate: str | None, vehicle_type: str,
                        horizon: timedelta, event_key: str, now: datetime) -> uuid.UUID:
    """Book a compatible spot for [now, now + horizon) as an active walk-in; SoldOut when none is free.

    `event_key` is its idempotency key: the gate looks for a walk-in its event already booked before calling
    this (it knows from its ledger when no earlier attempt can exist). Walk-ins are priced at the exit, so the
    hold itself is free. A plate that already holds an overlapping reservation (e.g. one starting later today)
    still gets in: the walk-in is booked without the plate key.
    """
    walk_deps = replace(deps, pricer=free_pricer)
    args = {"deps": walk_deps, "user_id": None, "lot_id": lot_id, "vehicle_type": vehicle_type, "starts_at": now,
            "ends_at": now + horizon, "now": now, "idempotency_key": event_key, "kind": "walk_in", "status": "active"}
    try:
        rid = await holds.hold(plate=plate, **args)  # type: ignore[arg-type]
    except PlateConflict:
        rid = await holds.hold(plate=None, **args)  # type: ignore[arg-type]
    await _keep_release_handle(deps, lot_id, rid, now + horizon)
    return rid


async def _keep_release_handle(deps: BookingDeps, lot_id: uuid.UUID, rid: uuid.UUID, until: datetime) -> None:
    if deps.slots is not None and deps.breaker.available():
        try:
            await deps.slots.keep_hold(lot_id=str(lot_id), hold_id=str(rid), until=until)
        except REDIS_DOWN as exc:
            deps.breaker.trip(exc)


async def _repair(deps: BookingDeps, lot_id: uuid.UUID, spot_idx: int, start: datetime, end: datetime) -> None:
    """Make one spot's bits exact from PostgreSQL (or mark the lot for a rebuild when Redis is away)."""
    s, e = widen(start, end, max_span=timedelta(days=400))
    await repair.repair_spot_or_mark(deps, lot_id, spot_idx, Window(s, e, s, e))


async def free_extension(*, deps: BookingDeps, lot_id: uuid.UUID, spot_idx: int, slot_end: datetime,
                         now: datetime) -> None:
    """After a walk-in completed at `now` (and its hold was released): make its spot's bits up to the end of its
    booked period exact, which frees the slots any extension added (the hold record knows only the original)."""
    if slot_end > now:
        await _repair(deps, lot_id, spot_idx, now, slot_end)


@dataclass(frozen=True)
class ExtensionReport:
    extended: int
    at_risk: int


async def extend_walk_ins(*, deps: BookingDeps, now: datetime, lead: timedelta = timedelta(minutes=30),
                          limit: int = 500) -> ExtensionReport:
    """Extend active walk-ins whose booked period ends within `lead` by the lot's horizon, on the same spot.

    PostgreSQL decides (the exclusion constraint refuses an extension into someone else's booking); the
    spot's Redis bits are then repaired from PostgreSQL. A walk-in that cannot be extended has its session
    flagged `overstay_risk_at` (listed under the lot's violations). Safe to run twice at once.
    """
    async with deps.engine.connect() as conn:
        rows = list(await conn.execute(q.WALK_INS_ENDING, {"until": now + lead, "limit": limit}))
    extended = at_risk = 0
    for row in rows:
        new_end = max(row.ends_at, now) + timedelta(minutes=row.walk_in_horizon_minutes)
        _, slot_end = widen(row.slot_start, new_end, max_span=timedelta(days=400))
        try:
            async with deps.engine.begin() as conn:
                done = await conn.scalar(q.EXTEND_WALK_IN, {"id": row.id, "ends_at": new_end, "slot_end": slot_end,
                                                            "now": now})
        except IntegrityError:
            done = None
            async with deps.engine.begin() as conn:
                flagged = await conn.scalar(q.FLAG_OVERSTAY_RISK, {"lot_id": row.lot_id, "reservation_id": row.id,
                                                                   "now": now})
            if flagged is not None:
                at_risk += 1
                log.warning("walk_in_overstay_risk", lot_id=str(row.lot_id), reservation_id=str(row.id),
                            ends_at=row.ends_at.isoformat())
            continue
        if done is not None:
            extended += 1
            await _repair(deps, row.lot_id, row.spot_idx, row.slot_end, slot_end)
    if extended or at_risk:
        log.info("walk_ins_extended", extended=extended, at_risk=at_risk)
    return ExtensionReport(extended=extended, at_risk=at_risk)
