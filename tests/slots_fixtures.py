"""Fixtures for slot-layer tests: a real Redis, a unique key prefix per test, cleaned up after.

The Redis is shared with other people: never FLUSHDB; delete only this test's keys.
Import the fixtures by name in a test module (`from tests.slots_fixtures import slot_store`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import date

import pytest
import redis.asyncio as aioredis

from booking.slots import SLOTS_PER_DAY, SPOT_TYPES, SpotInfo
from booking.slotstore import SlotStore
from core.keys import Keys

REDIS_URL = os.environ.get("PARKGRID_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def new_client(url: str = REDIS_URL) -> aioredis.Redis:
    """A separate client (own connection pool) to the test Redis."""
    return aioredis.Redis.from_url(url, decode_responses=False)


async def delete_prefix(client: aioredis.Redis, prefix: str) -> None:
    """Delete every key under `prefix:` (SCAN, never FLUSHDB)."""
    batch: list[bytes] = []
    async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            await client.delete(*batch)
            batch.clear()
    if batch:
        await client.delete(*batch)


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = new_client()
    yield client
    await client.aclose()


@pytest.fixture
def key_prefix() -> str:
    return "t" + uuid.uuid4().hex


@pytest.fixture
async def slot_store(redis_client: aioredis.Redis, key_prefix: str) -> AsyncIterator[SlotStore]:
    store = SlotStore(redis_client, Keys(key_prefix))
    yield store
    await delete_prefix(redis_client, key_prefix)


def make_spots(types: list[str], *, levels: int = 1) -> list[SpotInfo]:
    """Spots 0..n-1 with the given types, rank = index, levels assigned round robin."""
    return [SpotInfo(idx=i, type=t, level=i % levels, rank=i) for i, t in enumerate(types)]


async def spot_bits(store: SlotStore, lot_id: str, day: date, spot: int) -> list[int]:
    """Slots (0..95) set for one spot on one day, read bit by bit (independent of the Lua code)."""
    key = store.keys.bitmap(lot_id, day)
    async with store.redis.pipeline(transaction=False) as pipe:
        for t in range(SLOTS_PER_DAY):
            pipe.getbit(key, spot * SLOTS_PER_DAY + t)
        bits = await pipe.execute()
    return [t for t, b in enumerate(bits) if b]


async def recount(store: SlotStore, lot_id: str, day: date, spots: list[SpotInfo]) -> dict[str, list[int]]:
    """Booked slots per type recounted from the bitmap."""
    raw = await store.redis.get(store.keys.bitmap(lot_id, day)) or b""
    bits = int.from_bytes(raw.ljust(len(spots) * 12, b"\0"), "big")
    total = len(spots) * SLOTS_PER_DAY
    out = {t: [0] * SLOTS_PER_DAY for t in SPOT_TYPES}
    for s in spots:
        for t in range(SLOTS_PER_DAY):
            if bits >> (total - 1 - (s.idx * SLOTS_PER_DAY + t)) & 1:
                out[s.type][t] += 1
    return out


async def counters(store: SlotStore, lot_id: str, day: date) -> dict[str, list[int]]:
    """Booked counters per type as stored in Redis."""
    raw = await store.redis.get(store.keys.booked_counters(lot_id, day)) or b""
    raw = raw.ljust(len(SPOT_TYPES) * SLOTS_PER_DAY * 2, b"\0")
    return {
        t: [int.from_bytes(raw[(ti * SLOTS_PER_DAY + s) * 2 : (ti * SLOTS_PER_DAY + s) * 2 + 2], "big")
            for s in range(SLOTS_PER_DAY)]
        for ti, t in enumerate(SPOT_TYPES)
    }
