"""The MQTT consumer does not remember "no such lot" for good: a lot created after a message named it is found once
LOT_UNKNOWN_TTL has passed on the injected clock (real PostgreSQL and Redis)."""

from __future__ import annotations

import json
import uuid

from controllers.mqtt_ingest import LOT_UNKNOWN_TTL, Ingestor
from controllers.occupancy import counters_for
from core.clock import ManualClock
from core.context import AppContext
from tests.factories import insert_lot


def _reading(n: int, now: ManualClock) -> bytes:
    return json.dumps({"event_id": f"e{n}", "state": "occupied" if n % 2 else "vacant", "confidence": 0.99,
                       "occurred_at": now.now().isoformat()}).encode()


async def test_a_lot_created_after_a_message_named_it_is_found(ctx: AppContext, clock: ManualClock) -> None:
    lot = uuid.uuid4()
    ingestor = Ingestor(engine=ctx.engine, pg=await ctx.pg(), counters=counters_for(ctx), clock=clock)
    topic = f"parkgrid/lots/{lot}/sensors/L0-001"
    await ingestor.handle(topic, _reading(1, clock))
    assert ingestor.stats["dropped"] == 1  # no such lot (yet)
    async with ctx.engine.begin() as conn:
        await insert_lot(conn, id=lot, spots={"regular": 2})

    # negative control: within LOT_UNKNOWN_TTL the consumer still answers from what it remembers
    clock.advance(seconds=LOT_UNKNOWN_TTL.total_seconds() / 2)
    await ingestor.handle(topic, _reading(2, clock))
    assert ingestor.stats["dropped"] == 2

    clock.advance(seconds=LOT_UNKNOWN_TTL.total_seconds())
    await ingestor.handle(topic, _reading(3, clock))
    await ingestor.flush()
    assert ingestor.stats["dropped"] == 2 and ingestor.stats["accepted"] == 1
