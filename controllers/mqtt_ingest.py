"""`parkgrid ingest`: MQTT controller topics into the same domain functions as HTTP.

Sensor topics `parkgrid/lots/{lot_id}/sensors/{sensor_id}` (one event JSON each) are buffered for a
few milliseconds (or until `max_batch` messages of a lot) and applied per lot as micro-batches through
`ingest_sensor_events`, the function HTTP batches use: one transaction per batch, not per message,
exactly once by event_id (QoS 1 redeliveries are duplicates), one flush at a time so a sensor's
readings are applied in the order they arrived. Gate topics `parkgrid/lots/{lot_id}/gates/{gate_id}/events`
go to the gates domain function when it is importable, otherwise into mqtt_gate_inbox (never lost).
The session is persistent (MQTT 5, clean start off, expiring after a week away) so QoS 1 messages published
while we reconnect wait; a large Receive Maximum keeps a burst in flight to us instead of in the broker's
per-client queue, whose limit (max_queued_messages) drops messages. The paho client underneath reads and
acknowledges in bulk (controllers.mqtt_buffered).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import aiomqtt
import asyncpg
from cachetools import TTLCache
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from controllers import sensor_queries as q
from controllers.messages import GateEventIn, decode_json, first_error, parse_gate_event
from controllers.mqtt_buffered import buffered
from controllers.occupancy import OccupancyCounters
from controllers.sensors import ingest_sensor_events
from core.clock import Clock
from core.errors import DomainError
from core.ttlcache import ttl_cache

log = logging.getLogger(__name__)

SENSOR_TOPIC = "parkgrid/lots/+/sensors/+"
GATE_TOPIC = "parkgrid/lots/+/gates/+/events"


@dataclass(frozen=True)
class Route:
    kind: str  # "sensor" | "gate"
    lot_id: uuid.UUID
    subject: str  # sensor id or gate id


def route(topic: str) -> Route | None:
    """Which lot and sensor/gate a topic names; None for anything else."""
    parts = topic.split("/")
    try:
        if len(parts) == 5 and parts[:2] == ["parkgrid", "lots"] and parts[3] == "sensors" and parts[4]:
            return Route("sensor", uuid.UUID(parts[2]), parts[4])
        if len(parts) == 6 and parts[:2] == ["parkgrid", "lots"] and parts[3] == "gates" and parts[5] == "events":
            return Route("gate", uuid.UUID(parts[2]), str(uuid.UUID(parts[4])))
    except ValueError:
        return None
    return None


_UNROUTED: Any = object()
#: how long the consumer trusts that a lot exists, and that it does not
LOT_KNOWN_TTL = timedelta(minutes=5)
LOT_UNKNOWN_TTL = timedelta(seconds=5)
ROUTE_CACHE = 100_000

#: decides one gate event: (lot_id, gate_id, the validated event, now) -> None
GateDecider = Callable[[uuid.UUID, uuid.UUID, GateEventIn, datetime], Awaitable[Any]]


class Ingestor:
    """Buffers sensor messages per lot and applies them as micro-batches, one flush at a time, in arrival order."""

    def __init__(self, *, engine: AsyncEngine, pg: asyncpg.Pool, counters: OccupancyCounters | None, clock: Clock,
                 flush_every: float = 0.05, max_batch: int = 2000, gate_decider: GateDecider | None = None) -> None:
        self.engine = engine
        self.pg = pg
        self.gate_decider = gate_decider
        self.counters = counters
        self.clock = clock
        self.flush_every = flush_every
        self.max_batch = max_batch
        self.pending: dict[uuid.UUID, list[Any]] = defaultdict(list)
        # "this lot exists" and "no such lot", each for a while by the injected clock: a lot created after a
        # message named it is found within LOT_UNKNOWN_TTL (issue 15: never "no such lot" for good)
        self.lots_known: TTLCache[uuid.UUID, bool] = ttl_cache(clock=clock, ttl=LOT_KNOWN_TTL, maxsize=100_000)
        self.lots_unknown: TTLCache[uuid.UUID, bool] = ttl_cache(clock=clock, ttl=LOT_UNKNOWN_TTL, maxsize=10_000)
        self._routes: dict[str, Route | None] = {}  # topics repeat (one per sensor): parsed once
        self.stats = {"accepted": 0, "duplicates": 0, "rejected": 0, "ignored": 0, "gate": 0, "dropped": 0,
                      "malformed": 0}
        self._flushing = asyncio.Lock()  # one batch at a time: a sensor's readings are applied in arrival order

    async def _lot_exists(self, lot_id: uuid.UUID) -> bool:
        if lot_id in self.lots_known:
            return True
        if lot_id in self.lots_unknown:
            return False
        async with self.engine.connect() as conn:
            exists = (await conn.execute(q.LOT_EXISTS, {"lot_id": lot_id})).first() is not None
        (self.lots_known if exists else self.lots_unknown)[lot_id] = True
        return exists

    async def handle(self, topic: str, payload: bytes) -> None:
        r = self._routes.get(topic, _UNROUTED)
        if r is _UNROUTED:
            if len(self._routes) >= ROUTE_CACHE:
                self._routes.clear()
            r = self._routes[topic] = route(topic)
        if r is None or not (self.lots_known.get(r.lot_id) or await self._lot_exists(r.lot_id)):
            self.stats["dropped"] += 1
            return
        try:
            body = decode_json(payload)
        except ValueError:
            body = None
        if r.kind == "sensor":
            if isinstance(body, dict):
                body.setdefault("sensor_id", r.subject)
            self.pending[r.lot_id].append(body)
            if len(self.pending[r.lot_id]) >= self.max_batch:
                await self.flush()  # a full batch goes now, and holds the consumer back while PostgreSQL catches up
            return
        await self._gate(r, body)

    async def _gate(self, r: Route, body: Any) -> None:
        self.stats["gate"] += 1
        try:
            event = parse_gate_event(body)  # the HTTP route's model: what HTTP answers 422 to is refused here
        except ValidationError as exc:
            self.stats["malformed"] += 1
            log.warning("malformed gate event on lot %s gate %s: %s", r.lot_id, r.subject, first_error(exc))
            return
        if self.gate_decider is not None:
            try:
                await self.gate_decider(r.lot_id, uuid.UUID(r.subject), event, self.clock.now())
                return
            except (ValueError, DomainError) as exc:  # recorded below: never lost, looked at by an operator
                log.warning("gate event not decided: %s", exc)
        async with self.engine.begin() as conn:
            await conn.execute(q.RECORD_MQTT_GATE_EVENT, {"lot_id": r.lot_id, "event_id": event.event_id,
                                                          "gate_id": r.subject,
                                                          "payload": event.model_dump_json(exclude_unset=True),
                                                          "now": self.clock.now()})

    async def flush(self) -> None:
        """Apply what is buffered, lot by lot; on failure the unapplied messages stay buffered, in order."""
        async with self._flushing:
            batches, self.pending = self.pending, defaultdict(list)
            lots = list(batches)
            for i, lot_id in enumerate(lots):
                try:
                    res = await ingest_sensor_events(pg=self.pg, counters=self.counters, lot_id=lot_id,
                                                     events=batches[lot_id], now=self.clock.now())
                except BaseException:
                    for later in lots[i:]:  # retried on the next flush (exactly once by event_id)
                        self.pending[later][:0] = batches[later]
                    raise
                self.stats["accepted"] += res.accepted
                self.stats["duplicates"] += res.duplicates
                self.stats["rejected"] += len(res.rejected)
                self.stats["ignored"] += len(res.ignored)


#: How long the broker keeps our session (subscriptions and QoS 1 messages) while `parkgrid ingest` is away.
SESSION_EXPIRY_SECONDS = 7 * 24 * 3600
#: MQTT 5 Receive Maximum: QoS 1 messages the broker may have in flight to us. Mosquitto queues at most
#: max_queued_messages (1000 by default) beyond those in flight and drops the rest, so with MQTT 3.1.1's
#: 20 in flight a burst faster than we apply it was lost; in flight, a message waits in the socket, not in the queue.
RECEIVE_MAXIMUM = 65535


def _broker(mqtt_url: str, client_id: str) -> dict[str, Any]:
    """aiomqtt.Client's arguments for the broker at `mqtt_url`, speaking MQTT 5 as `client_id`."""
    u = urlparse(mqtt_url)
    return {"hostname": u.hostname or "127.0.0.1", "port": u.port or 1883, "username": u.username,
            "password": u.password, "identifier": client_id, "protocol": aiomqtt.ProtocolVersion.V5}


def _client(mqtt_url: str, client_id: str) -> aiomqtt.Client:
    """An MQTT 5 client with a persistent session (clean start off, expiring after SESSION_EXPIRY_SECONDS)."""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    return buffered(aiomqtt.Client(**_broker(mqtt_url, client_id), clean_start=False, properties=props,
                                   keepalive=30))


async def forget_session(*, mqtt_url: str, client_id: str) -> None:
    """Discard a client id's persistent session on the broker (benchmarks and tests that used a throwaway id):
    connecting with a clean start and no session expiry replaces it with one the broker drops as we leave, so
    connecting and disconnecting is all there is to do."""
    async with aiomqtt.Client(**_broker(mqtt_url, client_id), clean_start=True):
        pass


async def run_ingest(*, ingestor: Ingestor, mqtt_url: str, client_id: str = "parkgrid-ingest",
                     stop: asyncio.Event | None = None, ready: asyncio.Event | None = None) -> None:
    """Consume the controller topics until `stop` is set; reconnect with backoff when the broker drops.

    Messages are acknowledged (QoS 1 PUBACK) by aiomqtt on receipt; a crash between receipt and the
    batch commit loses at most the in-memory buffer of one flush interval (documented limitation).
    """
    stop = stop or asyncio.Event()
    backoff = 0.5
    while not stop.is_set():
        try:
            async with _client(mqtt_url, client_id) as client:
                await client.subscribe(SENSOR_TOPIC, qos=1)
                await client.subscribe(GATE_TOPIC, qos=1)
                backoff = 0.5
                if ready is not None:
                    ready.set()
                flusher = asyncio.create_task(_flush_loop(ingestor, stop))
                consumer = asyncio.create_task(_consume(client, ingestor))
                stopper = asyncio.create_task(stop.wait())
                try:
                    await asyncio.wait({consumer, stopper}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in (flusher, consumer, stopper):
                        task.cancel()
                    await asyncio.gather(flusher, stopper, return_exceptions=True)
                    await ingestor.flush()
                if consumer.done() and not consumer.cancelled() and consumer.exception() is not None:
                    raise consumer.exception()  # type: ignore[misc]
        except aiomqtt.MqttError as exc:
            log.warning("MQTT connection lost (%s); reconnecting in %.1fs", exc, backoff)
            await asyncio.sleep(backoff)  # waiting on the broker, not on domain time
            backoff = min(backoff * 2, 10.0)


async def _consume(client: aiomqtt.Client, ingestor: Ingestor) -> None:
    async for message in client.messages:
        await ingestor.handle(str(message.topic), bytes(message.payload))  # type: ignore[arg-type]


async def _flush_loop(ingestor: Ingestor, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(ingestor.flush_every)
        try:
            await ingestor.flush()
        except Exception:  # one failed flush (PostgreSQL blip) must not stop the consumer
            log.exception("sensor batch flush failed")
