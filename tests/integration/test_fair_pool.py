"""The hot paths' raw pool hands out connections in the order they were asked for (core.db.FairPool).

asyncpg's own pool queues waiters on an asyncio.Queue: a coroutine that asks at the moment a connection is being
handed back takes it ahead of the waiter that was woken for it, and that waiter goes to the back of the queue.
Under load a few holds lost that race over and over (their 99th percentile was ~9x the median). The negative
control shows the barging on a plain asyncpg pool.
"""

import asyncio

import asyncpg
from sqlalchemy import make_url

from core.db import create_raw_pool
from core.settings import Settings


async def _order_of_service(pool: asyncpg.Pool, yields: int) -> list[str]:
    """One connection, in use; A, B and C wait for it in that order; then it is given back while D, which
    asked last, is already running (`yields` event-loop turns after the release began)."""
    served: list[str] = []

    async def use(name: str, turns: int = 0) -> None:
        for _ in range(turns):
            await asyncio.sleep(0)
        async with pool.acquire():
            served.append(name)
            await asyncio.sleep(0)

    first = await pool.acquire()
    waiters = []
    for name in "ABC":
        waiters.append(asyncio.create_task(use(name)))
        await asyncio.sleep(0)  # each is waiting before the next asks
    released = asyncio.create_task(pool.release(first))
    late = asyncio.create_task(use("D", yields))
    await asyncio.gather(released, *waiters, late)
    return served


async def _noop_reset(connection: asyncpg.Connection) -> None:
    """What the raw pool does on release (core.db._keep_session): nothing."""


async def test_waiters_are_served_in_arrival_order(settings: Settings) -> None:
    pool = await create_raw_pool(settings, size=1)
    try:
        for yields in range(5):
            assert await _order_of_service(pool, yields) == ["A", "B", "C", "D"], yields
    finally:
        await pool.close()


async def test_negative_control_asyncpgs_own_pool_lets_a_newcomer_barge(settings: Settings) -> None:
    url = make_url(settings.database_url)
    pool = await asyncpg.create_pool(host=url.host, port=url.port or 5432, user=url.username, database=url.database,
                                     min_size=1, max_size=1, reset=_noop_reset)
    try:
        orders = [await _order_of_service(pool, yields) for yields in range(5)]
    finally:
        await pool.close()
    assert any(order[0] == "D" for order in orders), orders  # the newcomer took the connection A was woken for
