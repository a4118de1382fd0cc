"""A cloud process for the edge agent tests: the real ParkGrid app (real edge-snapshot route, real
PostgreSQL) plus, ONLY when this tree has no gates route yet, a TEST DOUBLE of
`POST /api/v1/gates/{gate_id}/events` implementing the contract's idempotency: the first decision per
event_id is kept in the real controller_events ledger, and an entry opens a parking_session once.

Run: python -m tests.integration.edge_cloud_double --port P   (PARKGRID_* settings from the environment)
`EDGE_DOUBLE_DELAY_MS` slows every gate call so a test can kill the agent mid-sync.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import datetime
from typing import Any

import uvicorn
from fastapi import FastAPI
from sqlalchemy import text

from api.app import create_app
from api.authz import GateDevice
from api.deps import CtxDep, NowDep
from core.settings import load_settings

_FIRST = text("SELECT decision FROM controller_events WHERE lot_id = :lot AND event_id = :eid")
_CLAIM = text("""
INSERT INTO controller_events (lot_id, event_id, device_id, sequence, source, cds_event_type, occurred_at, received_at,
                               payload, decision)
VALUES (:lot, :eid, :device, :seq, 'gate', :cds, :occurred, clock_timestamp(), CAST(:payload AS jsonb),
        CAST(:decision AS jsonb))
ON CONFLICT DO NOTHING RETURNING event_id
""")
_DIRECTION = text("SELECT direction FROM gates WHERE id = :gate")
_OPEN_SESSION = text("""
INSERT INTO parking_sessions (lot_id, kind, plate, entered_at, entry_gate_id)
VALUES (:lot, 'walk_in', :plate, :at, :gate) RETURNING id
""")
_CLOSE_SESSION = text("""
UPDATE parking_sessions SET status = 'completed', exited_at = greatest(:at, entered_at), exit_gate_id = :gate
WHERE lot_id = :lot AND id = (SELECT id FROM parking_sessions WHERE lot_id = :lot AND plate = :plate
                              AND status = 'active' ORDER BY entered_at LIMIT 1)
""")


def _has_gates_route(app: FastAPI) -> bool:
    return any(getattr(r, "path", "") == "/api/v1/gates/{gate_id}/events" for r in app.routes)


def add_gates_double(app: FastAPI, delay_s: float) -> None:
    @app.post("/api/v1/gates/{gate_id}/events")
    async def gate_event(gate_id: uuid.UUID, body: dict[str, Any], device: GateDevice, ctx: CtxDep,
                         now: NowDep) -> dict[str, Any]:
        if delay_s:
            await asyncio.sleep(delay_s)
        occurred = datetime.fromisoformat(str(body["occurred_at"]).replace("Z", "+00:00"))
        async with ctx.engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"{device.lot_id}:{body['event_id']}"})
            first = await conn.scalar(_FIRST, {"lot": device.lot_id, "eid": body["event_id"]})
            if first is not None:
                return first  # type: ignore[no-any-return]
            direction = await conn.scalar(_DIRECTION, {"gate": gate_id})
            plate = body.get("plate")
            session_id = None
            if direction == "entry":
                session_id = await conn.scalar(_OPEN_SESSION, {"lot": device.lot_id, "plate": plate,
                                                               "at": occurred, "gate": gate_id})
            else:
                await conn.execute(_CLOSE_SESSION, {"lot": device.lot_id, "plate": plate, "at": occurred,
                                                    "gate": gate_id})
            decision = {"decision": "open", "session_id": str(session_id) if session_id else None, "spot": None,
                        "fee": None, "message": "double"}
            await conn.execute(_CLAIM, {"lot": device.lot_id, "eid": body["event_id"], "device": device.device_id,
                                        "seq": body.get("sequence"), "cds": "enter_area" if direction == "entry" else "exit_area",
                                        "occurred": occurred, "payload": json.dumps(body),
                                        "decision": json.dumps(decision)})
        return decision


def main() -> None:
    port = int(sys.argv[sys.argv.index("--port") + 1])
    settings = load_settings()
    app = create_app(settings)
    if not _has_gates_route(app):
        add_gates_double(app, float(os.environ.get("EDGE_DOUBLE_DELAY_MS", "0")) / 1000)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
