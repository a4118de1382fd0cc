"""Device identity over MQTT, on real brokers: the project's own Mosquitto with the dynamic security plugin (started
here on a spare port from the configuration `parkgrid mqtt init` writes) and, as the negative control, the machine's
anonymous broker. The ingest consumer runs for real (controllers.mqtt_ingest.run_ingest deciding gate events with
controllers.gates.decide_mqtt) and writes the gate ledger in PostgreSQL, which the test reads."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest
from sqlalchemy import text

from controllers import mqtt_identity
from controllers.gates import decide_mqtt, gate_deps
from controllers.messages import GateEventIn
from controllers.mqtt_ingest import Ingestor, forget_session, run_ingest
from controllers.occupancy import counters_for
from core.accounts import create_device
from core.context import AppContext
from core.settings import Settings
from tests.conftest import ROOT, TEST_SECRET
from tests.factories import insert_lot
from tests.procs import free_port, wait_port


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[mqtt_identity.BrokerConfig]:
    config = mqtt_identity.init_broker(tmp_path / "mosquitto", port=free_port())
    proc = mqtt_identity.start_broker(config, quiet=True)
    try:
        wait_port(config.port)
        asyncio.run(mqtt_identity.ensure_ingest(config))
        yield config
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.poll() is None:
            proc.kill()


@contextlib.asynccontextmanager
async def ingesting(ctx: AppContext, mqtt_url: str) -> AsyncIterator[None]:
    gates = gate_deps(ctx)

    async def decide(lot_id: uuid.UUID, gate_id: uuid.UUID, body: GateEventIn, now: datetime) -> None:
        await decide_mqtt(deps=gates, lot_id=lot_id, gate_id=gate_id, body=body, now=now)

    ingestor = Ingestor(engine=ctx.engine, pg=await ctx.pg(), counters=counters_for(ctx), clock=ctx.clock,
                        gate_decider=decide)
    stop, ready = asyncio.Event(), asyncio.Event()
    client_id = f"test-ingest-{uuid.uuid4().hex[:8]}"
    task = asyncio.create_task(run_ingest(ingestor=ingestor, mqtt_url=mqtt_url, client_id=client_id, stop=stop,
                                          ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 15)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await forget_session(mqtt_url=mqtt_url, client_id=client_id)


async def two_lots(ctx: AppContext) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with ctx.engine.begin() as conn:
        for name in ("a", "b"):
            lot = await insert_lot(conn, spots={"regular": 3})
            gate = await conn.scalar(text("SELECT id FROM gates WHERE lot_id = :l AND direction = 'entry'"),
                                     {"l": lot})
            device_id, key = await create_device(conn=conn, lot_id=lot, name="gate")
            out[name] = {"lot": lot, "gate": gate, "device": device_id, "key": key}
    return out


def gate_event(ctx: AppContext, plate: str) -> bytes:
    return orjson.dumps({"event_id": f"ev-{uuid.uuid4().hex[:10]}", "sequence": 1,
                         "occurred_at": ctx.clock.now().isoformat(), "plate": plate, "plate_confidence": 0.99})


async def ledger(ctx: AppContext, lot: uuid.UUID) -> int:
    async with ctx.engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM controller_events WHERE lot_id = :l"), {"l": lot}))


async def wait_for_ledger(ctx: AppContext, lot: uuid.UUID, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while await ledger(ctx, lot) == 0:
        assert time.monotonic() < deadline, "the lot's own event was never decided"
        await asyncio.sleep(0.05)  # waiting on the consumer, not on domain time


def topic(lot: dict[str, Any]) -> str:
    return f"parkgrid/lots/{lot['lot']}/gates/{lot['gate']}/events"


async def publish_as(port: int, *, username: str | None, password: str | None,
                     messages: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client("127.0.0.1", port, username=username, password=password,
                              identifier=f"dev-{uuid.uuid4().hex[:8]}") as client:
        for t, payload in messages:
            await client.publish(t, payload, qos=1)


async def test_a_device_publishes_only_to_its_own_lot_and_anonymous_clients_not_at_all(
        ctx: AppContext, broker: mqtt_identity.BrokerConfig) -> None:
    w = await two_lots(ctx)
    for lot in w.values():
        await mqtt_identity.grant_device(admin_url=broker.admin_url, device_id=lot["device"], lot_id=lot["lot"],
                                         password=lot["key"])
    async with ingesting(ctx, broker.ingest_url):
        with pytest.raises(aiomqtt.MqttCodeError, match="Not authorized"):  # anonymous: refused at CONNECT
            await publish_as(broker.port, username=None, password=None,
                             messages=[(topic(w["b"]), gate_event(ctx, "ANON1"))])
        with pytest.raises(aiomqtt.MqttCodeError, match="Not authorized"):  # a device key on another device's name
            await publish_as(broker.port, username=str(w["b"]["device"]), password=w["a"]["key"], messages=[])
        # device A: lot B's gate (dropped by the broker), then its own lot's (decided): in this order
        await publish_as(broker.port, username=str(w["a"]["device"]), password=w["a"]["key"],
                         messages=[(topic(w["b"]), gate_event(ctx, "FORGED1")), (topic(w["a"]), gate_event(ctx, "OWN1"))])
        await wait_for_ledger(ctx, w["a"]["lot"])
        assert await ledger(ctx, w["b"]["lot"]) == 0  # lot B's gate never heard of it

        # revoked: the broker refuses the device's credentials from then on
        await mqtt_identity.revoke_device(admin_url=broker.admin_url, device_id=w["a"]["device"])
        with pytest.raises(aiomqtt.MqttCodeError, match="Not authorized"):
            await publish_as(broker.port, username=str(w["a"]["device"]), password=w["a"]["key"], messages=[])


async def test_negative_control_the_anonymous_broker_lets_both_through(ctx: AppContext, settings: Settings) -> None:
    """The machine's broker (allow_anonymous, no plugin): the same forged publication opens lot B's gate, and an
    anonymous client's event is decided too."""
    w = await two_lots(ctx)
    port = int(settings.mqtt_url.rsplit(":", 1)[1])
    async with ingesting(ctx, settings.mqtt_url):
        await publish_as(port, username=str(w["a"]["device"]), password=w["a"]["key"],
                         messages=[(topic(w["b"]), gate_event(ctx, "FORGED1"))])
        await wait_for_ledger(ctx, w["b"]["lot"])
        await publish_as(port, username=None, password=None, messages=[(topic(w["a"]), gate_event(ctx, "ANON1"))])
        await wait_for_ledger(ctx, w["a"]["lot"])


async def test_parkgrid_devices_create_and_revoke_manage_the_mqtt_client(settings: Settings, ctx: AppContext,
                                                                         broker: mqtt_identity.BrokerConfig) -> None:
    """The CLI as an operator runs it: `devices create` prints MQTT credentials that work on the lot's topics only;
    `devices revoke` deletes the client."""
    lot = await _one_lot(ctx)
    env = {**os.environ, "PARKGRID_DATABASE_URL": settings.database_url, "PARKGRID_REDIS_URL": settings.redis_url,
           "PARKGRID_REDIS_PREFIX": settings.redis_prefix, "PARKGRID_SECRET_KEY": TEST_SECRET,
           "PARKGRID_MQTT_ADMIN_URL": broker.admin_url, "PARKGRID_LOG_LEVEL": "warning"}

    def cli(*args: str) -> dict[str, Any]:
        done = subprocess.run([sys.executable, "-m", "cli", *args, "--json"], cwd=ROOT, env=env, capture_output=True,
                              check=True, timeout=60)
        return orjson.loads(done.stdout)  # type: ignore[no-any-return]

    created = cli("devices", "create", "--lot", str(lot))
    assert created["mqtt"] == {"username": created["device_id"], "topics": f"parkgrid/lots/{lot}/#"}
    own = f"parkgrid/lots/{lot}/sensors/L0-001"
    await publish_as(broker.port, username=created["device_id"], password=created["key"], messages=[(own, b"{}")])
    cli("devices", "revoke", "--device", created["device_id"])
    with pytest.raises(aiomqtt.MqttCodeError, match="Not authorized"):
        await publish_as(broker.port, username=created["device_id"], password=created["key"], messages=[])


async def _one_lot(ctx: AppContext) -> uuid.UUID:
    async with ctx.engine.begin() as conn:
        return await insert_lot(conn, spots={"regular": 1})
