"""Cloud side of the edge agent: what a lot's edge agent may copy to decide offline.

Plates never leave in clear: each plate is hashed with a key derived for this lot only (HMAC of the
server secret), so the server's own plate hashes and its secret stay in the cloud. QR tokens are
deterministic per reservation, so the edge gets their SHA-256 digests and matches tokens by digest.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from booking.access import qr_token
from core.errors import NotFound, ValidationFailed
from core.security import normalise_plate

HORIZON_BACK = timedelta(hours=24)
HORIZON_AHEAD = timedelta(hours=48)

_LOT = text("SELECT id, capacity, early_arrival_minutes, timezone FROM lots WHERE id = :lot_id")
_GATES = text("SELECT id, name, direction FROM gates WHERE lot_id = :lot_id ORDER BY name")
_RESERVATIONS = text("""
SELECT r.id, r.plate, r.vehicle_type, r.starts_at, r.ends_at, r.status, s.label AS spot
FROM reservations r JOIN spots s ON s.lot_id = r.lot_id AND s.id = r.spot_id
WHERE r.lot_id = :lot_id AND r.kind = 'reservation' AND r.status IN ('confirmed', 'active')
  AND r.ends_at > :from AND r.starts_at < :to
""")
# Passes carry only the server's plate hash; the plate comes from the holder's registered vehicle.
_PASSES = text("""
SELECT p.id, v.plate, p.spot_type, p.month
FROM monthly_passes p JOIN vehicles v ON v.plate_hash = p.plate_hash AND v.user_id = p.user_id
WHERE p.lot_id = :lot_id AND p.status = 'active' AND p.paid_at IS NOT NULL
      AND p.month >= date_trunc('month', CAST(:now AS timestamptz))::date - 31
""")
_ACTIVE_SESSIONS = text("SELECT count(*) FROM parking_sessions WHERE lot_id = :lot_id AND status = 'active'")


def edge_plate_key(secret: bytes, lot_id: uuid.UUID) -> bytes:
    """The key one lot's edge agent hashes plates with (useless for any other lot)."""
    return hmac.new(secret, b"parkgrid-edge-plate:" + str(lot_id).encode(), hashlib.sha256).digest()


def edge_plate_hash(key: bytes, plate: str) -> str:
    return hmac.new(key, normalise_plate(plate).encode(), hashlib.sha256).hexdigest()


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _hash_or_none(key: bytes, plate: str | None) -> str | None:
    if not plate:
        return None
    try:
        return edge_plate_hash(key, plate)
    except ValidationFailed:
        return None


async def edge_snapshot(*, conn: AsyncConnection, secret: bytes, lot_id: uuid.UUID, now: datetime) -> dict[str, Any]:
    """The lot's gates, confirmed/active reservations around now, passes and occupancy, plates hashed."""
    lot = (await conn.execute(_LOT, {"lot_id": lot_id})).first()
    if lot is None:
        raise NotFound(f"lot {lot_id} not found")
    key = edge_plate_key(secret, lot_id)
    gates = [{"id": str(g.id), "name": g.name, "direction": g.direction}
             for g in await conn.execute(_GATES, {"lot_id": lot_id})]
    reservations = []
    for r in await conn.execute(_RESERVATIONS, {"lot_id": lot_id, "from": now - HORIZON_BACK, "to": now + HORIZON_AHEAD}):
        reservations.append({
            "id": str(r.id), "plate_hash": _hash_or_none(key, r.plate), "vehicle_type": r.vehicle_type,
            "starts_at": r.starts_at.isoformat(), "ends_at": r.ends_at.isoformat(), "status": r.status, "spot": r.spot,
            "qr_digest": token_digest(qr_token(secret=secret, reservation_id=r.id, lot_id=lot_id, not_after=r.ends_at))})
    passes = [{"id": str(p.id), "plate_hash": _hash_or_none(key, p.plate), "spot_type": p.spot_type,
               "month": p.month.isoformat()} for p in await conn.execute(_PASSES, {"lot_id": lot_id, "now": now})]
    occupied = int(await conn.scalar(_ACTIVE_SESSIONS, {"lot_id": lot_id}) or 0)
    return {"lot_id": str(lot_id), "generated_at": now.isoformat(), "plate_key": key.hex(),
            "capacity": int(lot.capacity), "occupied": min(occupied, int(lot.capacity)),
            "early_arrival_minutes": int(lot.early_arrival_minutes), "gates": gates,
            "reservations": [r for r in reservations if r["plate_hash"] or r["qr_digest"]],
            "passes": [p for p in passes if p["plate_hash"]]}
