"""Local gate decisions from the edge's copy of the lot, used only while the cloud is unreachable.

Same vocabulary as the cloud (`open|deny|pay|attendant`). Exits always open (never trap a car,
docs/design.md invariant 7): the fee is settled by the cloud when the event is synced.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

from controllers.edge.store import EdgeStore
from core.errors import ValidationFailed
from core.security import normalise_plate

MIN_PLATE_CONFIDENCE = 0.8


def decision(kind: str, message: str, *, spot: str | None = None) -> dict[str, Any]:
    return {"decision": kind, "session_id": None, "spot": spot, "fee": None, "message": message, "offline": True}


def local_plate_hash(plate_key: str, plate: str) -> str:
    return hmac.new(bytes.fromhex(plate_key), normalise_plate(plate).encode(), hashlib.sha256).hexdigest()


async def decide_locally(*, store: EdgeStore, meta: dict[str, Any], direction: str | None, event: dict[str, Any],
                         now: datetime) -> dict[str, Any]:
    """The decision for one gate event from the local copy (reservation, pass, walk-in capacity)."""
    if direction == "exit":
        return decision("open", "Goodbye (offline: any fee is settled when the lot reconnects)")
    early = int(meta.get("early_arrival_minutes", 15))
    qr = event.get("qr_token")
    if isinstance(qr, str) and qr:
        row = await store.reservation_by_qr(hashlib.sha256(qr.encode()).hexdigest(), now, early)
        if row is not None:
            return decision("open", "Welcome (reservation, offline)", spot=row[1])
        return decision("deny", "QR code not valid for this lot now")
    plate = event.get("plate")
    if not isinstance(plate, str) or not plate:
        return decision("attendant", "No plate read; please wait for an attendant")
    conf = event.get("plate_confidence")
    if isinstance(conf, int | float) and conf < MIN_PLATE_CONFIDENCE:
        return decision("attendant", "Plate not read clearly; please wait for an attendant")
    key = meta.get("plate_key")
    if not key:
        return decision("attendant", "Gate offline and not yet provisioned")
    try:
        h = local_plate_hash(key, plate)
    except ValidationFailed:
        return decision("attendant", "Plate not recognised; please wait for an attendant")
    row = await store.reservation_by_plate(h, now, early)
    if row is not None:
        return decision("open", "Welcome (reservation, offline)", spot=row[1])
    if await store.has_pass(h, now.strftime("%Y-%m-01")):
        return decision("open", "Welcome (monthly pass, offline)")
    occupied = int(meta.get("occupied", 0)) + await store.local_net_entries()
    if occupied >= int(meta.get("capacity", 0)):
        return decision("deny", "Full")
    return decision("open", "Welcome (offline)")
