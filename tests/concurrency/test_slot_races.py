"""Races on the slot layer: many clients holding at once never double-assign a spot.

The negative control runs the same race against a non-atomic read-then-write implementation
and asserts that it DOES double-assign, so the positive test is known to be able to fail.
"""

# ruff: noqa: F811  (fixture parameters shadow the imported fixture functions)
from __future__ import annotations

import asyncio
import itertools
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from booking.slots import SLOTS_PER_DAY, abs_slot_ceil, abs_slot_floor
from booking.slotstore import SlotStore
from tests.slots_fixtures import (  # noqa: F401  (pytest fixtures)
    counters,
    key_prefix,
    make_spots,
    new_client,
    recount,
    redis_client,
    slot_store,
)

LOT = "7d0c4a4e-0000-4000-8000-0000000000aa"
DAY = date(2030, 1, 7)
T0 = datetime(2030, 1, 7, tzinfo=UTC)
N_CLIENTS = 8


@pytest.fixture
async def clients() -> AsyncIterator[list[aioredis.Redis]]:
    made = [new_client() for _ in range(N_CLIENTS)]
    yield made
    for c in made:
        await c.aclose()


def stores_over(clients: list[aioredis.Redis], template: SlotStore) -> list[SlotStore]:
    return [SlotStore(c, template.keys) for c in clients]


async def naive_hold(store: SlotStore, *, hold_id: str, n_spots: int, start: datetime, end: datetime) -> int | None:
    """Guard off: read the bits, yield to the event loop, then set them (not atomic)."""
    first, last = abs_slot_floor(start) % SLOTS_PER_DAY, abs_slot_ceil(end) % SLOTS_PER_DAY or SLOTS_PER_DAY
    key = store.keys.bitmap(LOT, DAY)
    for spot in range(n_spots):
        bits = [await store.redis.getbit(key, spot * SLOTS_PER_DAY + t) for t in range(first, last)]
        if any(bits):
            continue
        await asyncio.sleep(0)  # the gap between check and claim that Lua removes
        async with store.redis.pipeline(transaction=False) as pipe:
            for t in range(first, last):
                pipe.setbit(key, spot * SLOTS_PER_DAY + t, 1)
            await pipe.execute()
        return spot
    return None


async def test_200_concurrent_holds_for_20_spots_grant_exactly_20(
    slot_store: SlotStore, clients: list[aioredis.Redis]
) -> None:
    spots = make_spots(["regular"] * 20)
    await slot_store.load_lot(lot_id=LOT, spots=spots, strategy="nearest_entrance", ev_overflow=False)
    stores = stores_over(clients, slot_store)
    start, end = T0 + timedelta(hours=8), T0 + timedelta(hours=10)
    results = await asyncio.gather(*(
        stores[i % N_CLIENTS].hold(lot_id=LOT, hold_id=f"h{i}", vehicle_type="regular", starts_at=start, ends_at=end)
        for i in range(200)
    ))
    granted = [r for r in results if r is not None]
    assert len(granted) == 20
    assert sorted(granted) == list(range(20))
    assert (await counters(slot_store, LOT, DAY))["regular"][32:40] == [20] * 8
    assert await counters(slot_store, LOT, DAY) == await recount(slot_store, LOT, DAY, spots)


async def test_negative_control_non_atomic_hold_double_assigns(
    slot_store: SlotStore, clients: list[aioredis.Redis]
) -> None:
    stores = stores_over(clients, slot_store)
    start, end = T0 + timedelta(hours=8), T0 + timedelta(hours=10)
    results = await asyncio.gather(*(
        naive_hold(stores[i % N_CLIENTS], hold_id=f"h{i}", n_spots=20, start=start, end=end) for i in range(200)
    ))
    granted = [r for r in results if r is not None]
    # Without the atomic script the race happens: more grants than spots, spots handed out twice.
    assert len(granted) > 20
    assert len(granted) != len(set(granted))


async def test_random_concurrent_windows_never_overlap_on_a_spot(
    slot_store: SlotStore, clients: list[aioredis.Redis]
) -> None:
    rng = random.Random(7)
    spots = make_spots(["compact", "regular", "regular", "large", "ev"], levels=2)
    await slot_store.load_lot(lot_id=LOT, spots=spots, strategy="best_fit", ev_overflow=True)
    stores = stores_over(clients, slot_store)
    requests = []
    for i in range(300):
        first = rng.randrange(0, 95)
        last = rng.randint(first + 1, min(96, first + 16))
        requests.append((f"h{i}", rng.choice(["motorcycle", "compact", "regular", "ev"]), first, last))

    async def one(i: int, hid: str, vt: str, first: int, last: int) -> tuple[str, int | None, int, int]:
        spot = await stores[i % N_CLIENTS].hold(
            lot_id=LOT, hold_id=hid, vehicle_type=vt,
            starts_at=T0 + timedelta(minutes=15 * first), ends_at=T0 + timedelta(minutes=15 * last),
        )
        if spot is not None and rng.random() < 0.2:
            await stores[i % N_CLIENTS].release(lot_id=LOT, hold_id=hid)
            return hid, None, first, last
        return hid, spot, first, last

    results = await asyncio.gather(*(one(i, *req) for i, req in enumerate(requests)))
    by_spot: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for _hid, spot, first, last in results:
        if spot is not None:
            by_spot[spot].append((first, last))
    assert sum(len(v) for v in by_spot.values()) > 20  # the race had something to contend for
    for spot, windows in by_spot.items():
        windows.sort()
        for (_a1, b1), (a2, _b2) in itertools.pairwise(windows):
            assert b1 <= a2, f"spot {spot} double-booked: {windows}"
        # Replaying the surviving holds gives exactly the bitmap.
        bitmap = await slot_store.redis.get(slot_store.keys.bitmap(LOT, DAY)) or b""
        day_bits = int.from_bytes(bitmap[spot * 12 : spot * 12 + 12].ljust(12, b"\0"), "big")
        expected = 0
        for a, b in windows:
            expected |= ((1 << (b - a)) - 1) << (96 - b)
        assert day_bits == expected
    assert await counters(slot_store, LOT, DAY) == await recount(slot_store, LOT, DAY, spots)
