"""MQTT end to end on the real Mosquitto: `parkgrid ingest` (a real process) into sensors, counters, displays;
the ingestor's micro-batches on their own (real PostgreSQL and Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import aiomqtt
import asyncpg
import pytest
from sqlalchemy import text

from controllers.mqtt_ingest import Ingestor, Route, forget_session, route
from controllers.occupancy import counters_for
from core.clock import ManualClock
from core.context import AppContext
from core.db import create_raw_pool
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
    client_id = f"test-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, "-m", "cli", "ingest", "--client-id", client_id],
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
        await forget_session(mqtt_url=settings.mqtt_url, client_id=client_id)


def _msg(event_id: str, state: str, at: datetime, confidence: float = 0.9) -> bytes:
    return json.dumps({"event_id": event_id, "state": state, "confidence": confidence,
                       "occurred_at": at.isoformat()}).encode()


async def test_micro_batch_keeps_order_and_survives_a_malformed_message(ctx: AppContext, clock: ManualClock) -> None:
    """Messages of several sensors in one micro-batch: the malformed one is rejected alone, the redelivery is a
    duplicate, and each sensor ends in the state of its last reading, batch boundaries or not."""
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 2})
    ingestor = Ingestor(engine=ctx.engine, pg=await ctx.pg(), counters=counters_for(ctx), clock=clock, max_batch=3)
    t0 = clock.now() - timedelta(minutes=1)
    sensors = f"parkgrid/lots/{lot}/sensors"
    for topic, payload in [
        (f"{sensors}/L0-001", _msg("a1", "occupied", t0)),
        (f"{sensors}/L0-002", _msg("b1", "occupied", t0)),
        (f"{sensors}/L0-001", b"{not json"),  # a full batch of three: flushed here, in the middle of the stream
        (f"{sensors}/L0-001", _msg("a2", "vacant", t0 + timedelta(seconds=10))),
        (f"{sensors}/L0-001", _msg("a1", "occupied", t0)),  # QoS 1 redelivery
        (f"{sensors}/L0-002", _msg("b2", "vacant", t0 + timedelta(seconds=10))),
        (f"{sensors}/L0-001", _msg("a3", "occupied", t0 + timedelta(seconds=20))),
    ]:
        await ingestor.handle(topic, payload)
    await ingestor.flush()
    assert ingestor.stats == {"accepted": 5, "duplicates": 1, "rejected": 1, "ignored": 0, "gate": 0, "dropped": 0,
                             "malformed": 0}
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT id, state FROM sensors WHERE lot_id = :l ORDER BY id"), {"l": lot})).all()
        cds = (await conn.execute(text("SELECT payload->>'sensor_id', cds_event_type FROM controller_events"
                                       " WHERE lot_id = :l ORDER BY occurred_at, event_id"), {"l": lot})).all()
    assert [tuple(r) for r in rows] == [("L0-001", "occupied"), ("L0-002", "vacant")]
    assert [tuple(r) for r in cds] == [("L0-001", "park_start"), ("L0-002", "park_start"), ("L0-001", "park_end"),
                                       ("L0-002", "park_end"), ("L0-001", "park_start")]
    groups = await counters_for(ctx).read(lot_id=lot)
    assert [(g.sensors, g.occupied, g.unknown) for g in groups] == [(2, 1, 0)]


async def test_a_failed_flush_keeps_every_lot_buffered_in_order(ctx: AppContext, clock: ManualClock) -> None:
    """PostgreSQL away during a flush: nothing acknowledged is lost, and the retry applies the readings in order."""
    async with ctx.engine.begin() as conn:
        lots = [await insert_lot(conn, spots={"regular": 1}) for _ in range(2)]
    gone = await create_raw_pool(ctx.settings)
    await gone.close()  # a pool that refuses every acquire, like a database that went away
    ingestor = Ingestor(engine=ctx.engine, pg=gone, counters=counters_for(ctx), clock=clock)
    t0 = clock.now() - timedelta(minutes=1)
    for lot in lots:
        await ingestor.handle(f"parkgrid/lots/{lot}/sensors/L0-001", _msg(f"{lot}-1", "occupied", t0))
        await ingestor.handle(f"parkgrid/lots/{lot}/sensors/L0-001",
                              _msg(f"{lot}-2", "vacant", t0 + timedelta(seconds=10)))
    with pytest.raises(asyncpg.InterfaceError):
        await ingestor.flush()
    assert {lot: len(events) for lot, events in ingestor.pending.items()} == {lot: 2 for lot in lots}
    ingestor.pg = await ctx.pg()
    await ingestor.flush()
    assert ingestor.stats["accepted"] == 4 and not any(ingestor.pending.values())
    async with ctx.engine.connect() as conn:
        states = (await conn.execute(text("SELECT state FROM sensors"))).scalars().all()
    assert states == ["vacant", "vacant"]


def _publish_in_thread(broker: tuple[str, int], topic: str, n: int) -> None:
    """n QoS 1 messages from a plain paho client in its own thread, each acknowledged by the broker."""
    import paho.mqtt.client as mqtt

    pub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    pub.max_inflight_messages_set(100)
    pub.connect(*broker)
    pub.loop_start()
    try:
        infos = [pub.publish(topic, f'{{"i": {i}}}', qos=1) for i in range(n)]
        for info in infos:
            info.wait_for_publish(timeout=30)
    finally:
        pub.disconnect()
        pub.loop_stop()


def _host_port(mqtt_url: str) -> tuple[str, int]:
    from urllib.parse import urlparse

    u = urlparse(mqtt_url)
    return u.hostname or "127.0.0.1", u.port or 1883


async def _received_after_a_busy_spell(client: aiomqtt.Client, broker: tuple[str, int], n: int) -> int:
    """Subscribe, then keep the event loop busy (nothing read) while n messages are published; count arrivals."""
    import threading

    topic = f"parkgrid-test/burst/{uuid.uuid4().hex}"
    got = 0
    async with client:
        await client.subscribe(topic, qos=1)
        publisher = threading.Thread(target=_publish_in_thread, args=(broker, topic, n))
        publisher.start()
        publisher.join()  # blocks the loop: the consumer reads nothing until every message was sent
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):  # arrivals are immediate; the timeout only ends the count
                async for _ in client.messages:
                    got += 1
                    if got == n:
                        break
    return got


async def test_a_burst_while_the_consumer_is_busy_is_not_dropped(settings: Settings) -> None:
    """MQTT 5 with a large Receive Maximum: the broker keeps the messages in flight instead of dropping them
    past its queue limit (1,000 by default) while `parkgrid ingest` is busy applying a batch."""
    from controllers.mqtt_ingest import _client

    client_id = f"test-burst-{uuid.uuid4().hex[:8]}"
    client = _client(settings.mqtt_url, client_id)
    try:
        assert await _received_after_a_busy_spell(client, _host_port(settings.mqtt_url), 3000) == 3000
    finally:
        await forget_session(mqtt_url=settings.mqtt_url, client_id=client_id)


async def test_negative_control_mqtt311_consumer_loses_a_burst(settings: Settings) -> None:
    """The same burst to an MQTT 3.1.1 consumer (20 in flight): Mosquitto drops what exceeds its queue."""
    host, port = _host_port(settings.mqtt_url)
    client = aiomqtt.Client(host, port, identifier=f"test-burst311-{uuid.uuid4().hex[:8]}", clean_session=True)
    assert await _received_after_a_busy_spell(client, (host, port), 3000) < 3000
