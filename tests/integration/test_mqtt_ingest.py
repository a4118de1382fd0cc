"""MQTT end to end on the real Mosquitto: `parkgrid ingest` (a real process) into sensors, counters, displays."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import aiomqtt
from sqlalchemy import text

from controllers.mqtt_ingest import Route, route
from controllers.occupancy import counters_for
from core.context import AppContext
from core.settings import Settings
from tests.conftest import ROOT, TEST_SECRET
from tests.factories import insert_lot


def test_topics_route_to_lot_and_sensor() -> None:
    lot = uuid.uuid4()
    gate = uuid.uuid4()
    assert route(f"parkgrid/lots/{lot}/sensors/L0-001") == Route("sensor", lot, "L0-001")
    assert route(f"parkgrid/lots/{lot}/gates/{gate}/events") == Route("gate", lot, str(gate))
    assert route("parkgrid/lots/not-a-uuid/sensors/x") is None
    assert route(f"parkgrid/lots/{lot}/other/x") is None


async def _wait(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)  # waiting on the ingest process, not on domain time
    raise AssertionError("condition not reached in time")


async def test_mqtt_sensor_and_gate_events_end_to_end(ctx: AppContext, settings: Settings) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 5})
        gate = await conn.scalar(text("SELECT id FROM gates WHERE lot_id = :l AND direction = 'entry'"), {"l": lot})
    env = {**os.environ, "PARKGRID_DATABASE_URL": settings.database_url, "PARKGRID_REDIS_URL": settings.redis_url,
           "PARKGRID_REDIS_PREFIX": settings.redis_prefix, "PARKGRID_SECRET_KEY": TEST_SECRET,
           "PARKGRID_MQTT_URL": settings.mqtt_url, "PARKGRID_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "cli", "ingest", "--client-id", f"test-{uuid.uuid4().hex[:8]}"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=30)
        assert b"subscribed" in line
        now = datetime.now(UTC).isoformat()
        async with aiomqtt.Client("127.0.0.1", 1883) as pub:
            for i in range(1, 4):
                msg = {"event_id": f"m{i}", "state": "occupied", "confidence": 0.9, "occurred_at": now}
                await pub.publish(f"parkgrid/lots/{lot}/sensors/L0-00{i}", json.dumps(msg), qos=1)
            await pub.publish(f"parkgrid/lots/{lot}/sensors/L0-004",
                              json.dumps({"event_id": "m4", "state": "vacant", "confidence": 0.9, "occurred_at": now}), qos=1)
            # a redelivery and a malformed message
            await pub.publish(f"parkgrid/lots/{lot}/sensors/L0-001",
                              json.dumps({"event_id": "m1", "state": "occupied", "confidence": 0.9, "occurred_at": now}), qos=1)
            await pub.publish(f"parkgrid/lots/{lot}/sensors/L0-005", b"{not json", qos=1)
            await pub.publish(f"parkgrid/lots/{lot}/gates/{gate}/events",
                              json.dumps({"event_id": "g1", "sequence": 1, "occurred_at": now, "plate": "AB12"}), qos=1)

        async def arrived() -> bool:
            async with ctx.engine.connect() as conn:
                n = await conn.scalar(text("SELECT count(*) FROM sensors WHERE lot_id = :l"), {"l": lot})
                g = await conn.scalar(text(  # decided by the gates domain, exactly like an HTTP gate event
                    "SELECT count(*) FROM controller_events WHERE lot_id = :l AND event_id = 'g1'"
                    " AND decision->>'decision' = 'open'"), {"l": lot})
            return n == 4 and g == 1

        await _wait(arrived)
        async with ctx.engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM sensor_events WHERE lot_id = :l"), {"l": lot}) == 4
            assert await conn.scalar(text("SELECT count(*) FROM sensors WHERE state = 'occupied'")) == 3
        groups = await counters_for(ctx).read(lot_id=lot)
        assert [(g.sensors, g.occupied, g.unknown) for g in groups] == [(4, 3, 0)]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        assert b"Traceback" not in err, err.decode(errors="replace")[-3000:]
