"""Plates are personal data: shown masked to all but their owner and the lot's operator, purged after retention."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.logging import get_logger
from core.security import mask_plate

log = get_logger("parkgrid.privacy")
PURGE_BATCH = 5000

# Sessions ended (exited) before the cutoff.
_PURGE_SESSIONS = text("""
WITH doomed AS (
    SELECT lot_id, id FROM parking_sessions
    WHERE status = 'completed' AND exited_at < :cutoff AND (plate IS NOT NULL OR plate_hash IS NOT NULL)
    LIMIT :batch FOR UPDATE SKIP LOCKED
)
UPDATE parking_sessions s SET plate = NULL, plate_hash = NULL
FROM doomed WHERE s.lot_id = doomed.lot_id AND s.id = doomed.id
""")

# Reservations that reached a final status before the cutoff; each status has its own "ended at".
_PURGE_RESERVATIONS = text("""
WITH doomed AS (
    SELECT lot_id, id FROM reservations
    WHERE status IN ('completed', 'cancelled', 'expired', 'no_show')
      AND (plate IS NOT NULL OR plate_hash IS NOT NULL)
      AND CASE status
            WHEN 'completed' THEN coalesce(exited_at, ends_at)
            WHEN 'cancelled' THEN coalesce(cancelled_at, updated_at)
            WHEN 'expired' THEN coalesce(hold_expires_at, updated_at)
            ELSE ends_at
          END < :cutoff
    LIMIT :batch FOR UPDATE SKIP LOCKED
)
UPDATE reservations r SET plate = NULL, plate_hash = NULL
FROM doomed WHERE r.lot_id = doomed.lot_id AND r.id = doomed.id
""")


# EV charging sessions (controllers.charging) stopped before the cutoff: the plate hash their id tag gave them.
_PURGE_CHARGING = text("""
WITH doomed AS (
    SELECT lot_id, id FROM charging_sessions
    WHERE stopped_at < :cutoff AND plate_hash IS NOT NULL
    LIMIT :batch FOR UPDATE SKIP LOCKED
)
UPDATE charging_sessions c SET plate_hash = NULL
FROM doomed WHERE c.lot_id = doomed.lot_id AND c.id = doomed.id
""")


@dataclass(frozen=True)
class PurgeResult:
    cutoff: datetime
    sessions: int
    reservations: int
    charging: int = 0


async def purge_plates_batch(*, conn: AsyncConnection, now: datetime, retention_days: int,
                             batch: int = PURGE_BATCH) -> PurgeResult:
    """Null plate and plate hash on up to `batch` finished sessions and reservations older than retention."""
    cutoff = now - timedelta(days=retention_days)
    sessions = (await conn.execute(_PURGE_SESSIONS, {"cutoff": cutoff, "batch": batch})).rowcount
    reservations = (await conn.execute(_PURGE_RESERVATIONS, {"cutoff": cutoff, "batch": batch})).rowcount
    charging = (await conn.execute(_PURGE_CHARGING, {"cutoff": cutoff, "batch": batch})).rowcount
    return PurgeResult(cutoff=cutoff, sessions=sessions, reservations=reservations, charging=charging)


async def purge_expired_plates(*, engine: AsyncEngine, now: datetime, retention_days: int,
                               batch: int = PURGE_BATCH) -> PurgeResult:
    """Purge every plate past retention, one short transaction per batch; logs the counts. Idempotent."""
    sessions = reservations = charging = 0
    cutoff = now - timedelta(days=retention_days)
    while True:
        async with engine.begin() as conn:
            step = await purge_plates_batch(conn=conn, now=now, retention_days=retention_days, batch=batch)
        sessions += step.sessions
        reservations += step.reservations
        charging += step.charging
        if step.sessions < batch and step.reservations < batch and step.charging < batch:
            break
    log.info("plates_purged", cutoff=cutoff.isoformat(), sessions=sessions, reservations=reservations,
             charging_sessions=charging, retention_days=retention_days)
    return PurgeResult(cutoff=cutoff, sessions=sessions, reservations=reservations, charging=charging)


def plate_for_viewer(*, plate: str | None, owner_user_id: uuid.UUID | None, lot_organisation_id: uuid.UUID | None,
                     viewer_user_id: uuid.UUID | None, viewer_role: str | None,
                     viewer_organisation_id: uuid.UUID | None) -> str | None:
    """The plate in full for its owner, the lot's operators and admins; masked ('*****CD') for anyone else."""
    if plate is None:
        return None
    if viewer_role == "admin":
        return plate
    if viewer_user_id is not None and owner_user_id is not None and viewer_user_id == owner_user_id:
        return plate
    if (viewer_role == "operator" and viewer_organisation_id is not None
            and viewer_organisation_id == lot_organisation_id):
        return plate
    return mask_plate(plate)
