"""Booking on a Redis Cluster (PARKGRID_REDIS_CLUSTER=true): 3 masters + 3 replicas of the machine's
redis-server. Contention, a rebuild from PostgreSQL, and a master killed mid-run, with no double booking."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from redis.asyncio import cluster as redis_cluster
from redis.exceptions import RedisClusterException, ResponseError
from sqlalchemy import text

from booking.reconcile import reconcile
from booking.wiring import booking_deps, slot_store
from controllers.occupancy import counters_for
from core.clock import ManualClock
from core.context import AppContext, build_context
from core.keys import Keys
from tests.booking_helpers import overlapping_pairs
from tests.concurrency.test_booking_races import _attempt
from tests.conftest import make_settings
from tests.factories import insert_lot
from tests.redis_cluster import LocalCluster, start_cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    c = start_cluster()
    yield c
    c.stop()


async def _context(cluster: LocalCluster, db_url: str, redis_prefix: str, clock: ManualClock) -> AppContext:
    settings = make_settings(database_url=db_url, redis_prefix=redis_prefix, redis_url=cluster.url,
                             redis_cluster=True, celery_queue=f"q{redis_prefix}")
    return build_context(settings, clock=clock)


@pytest.fixture
async def cctx(cluster: LocalCluster, db_url: str, redis_prefix: str, clock: ManualClock) -> AsyncIterator[AppContext]:
    ctx = await _context(cluster, db_url, redis_prefix, clock)
    try:
        yield ctx
    finally:
        await ctx.aclose()


async def test_200_concurrent_holds_for_20_spots_on_the_cluster(cctx: AppContext, clock: ManualClock) -> None:
    async with cctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 20})
    deps = booking_deps(cctx)
    start = clock.now() + timedelta(hours=2)
    results = await asyncio.gather(*(_attempt(deps, lot, start, start + timedelta(hours=2), clock.now(), f"P{i}")
                                     for i in range(200)))
    assert sum(results) == 20
    assert await overlapping_pairs(cctx.engine) == 0
    keys = Keys(cctx.settings.redis_prefix)
    assert await cctx.redis.exists(keys.bitmap(str(lot), start.date())) == 1  # Redis decided, on the cluster
    assert deps.breaker.available()  # and never fell back to the PostgreSQL-only path


async def test_a_lots_keys_share_one_slot_and_a_script_across_lots_is_refused(cctx: AppContext,
                                                                              cluster: LocalCluster) -> None:
    keys = Keys(cctx.settings.redis_prefix)
    lot, other = str(uuid.uuid4()), str(uuid.uuid4())
    day = ManualClock().now().date()
    names = [keys.bitmap(lot, day), keys.booked_counters(lot, day), keys.hold(lot, "h1"), keys.candidates(lot, "ev"),
             keys.spot_types(lot), keys.meta(lot), keys.drift(lot), keys.dynamic_multiplier(lot), keys.scratch(lot)]
    slots = {await cctx.redis.execute_command("CLUSTER KEYSLOT", name) for name in names}
    assert len(slots) == 1
    # negative control: the same script with keys of two lots (two hash tags) is refused by the cluster
    store = slot_store(cctx)
    with pytest.raises((RedisClusterException, ResponseError)):
        await store._rebuild_lot(keys=[keys.meta(lot), keys.spot_types(lot), keys.scratch(lot),
                                       keys.bitmap(lot, day), keys.booked_counters(other, day)],
                                 args=[0, 1, b"", 0, b"", b"", 0])


async def test_rebuild_from_postgres_then_redis_decides_on_the_cluster(cctx: AppContext, clock: ManualClock) -> None:
    async with cctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 20})
    start = clock.now() + timedelta(hours=3)
    sql_only = booking_deps(cctx, use_redis=False)
    for i in range(10):
        assert await _attempt(sql_only, lot, start, start + timedelta(hours=1), clock.now(), f"SQL{i}")
    report = await reconcile(engine=cctx.engine, slots=slot_store(cctx), now=clock.now(), lot_ids=[lot])
    assert report.lots == 1 and report.bits_set > 0
    results = await asyncio.gather(*(_attempt(booking_deps(cctx), lot, start, start + timedelta(hours=1),
                                              clock.now(), f"R{i}") for i in range(60)))
    assert sum(results) == 10
    assert await overlapping_pairs(cctx.engine) == 0


async def test_killing_a_master_mid_run_leaves_no_double_booking_and_bookings_continue(
        db_url: str, redis_prefix: str, clock: ManualClock) -> None:
    cluster = start_cluster()  # its own: this test kills one of its masters
    ctx = await _context(cluster, db_url, redis_prefix, clock)
    try:
        async with ctx.engine.begin() as conn:
            lots = [await insert_lot(conn, spots={"regular": 30}) for _ in range(4)]
        deps = booking_deps(ctx)
        base = clock.now() + timedelta(hours=1)
        granted: dict[str, int] = {"before": 0, "during": 0, "after": 0}
        phase = "before"
        stop = asyncio.Event()

        async def driver(n: int) -> None:
            i = 0
            while not stop.is_set():
                lot = lots[(n + i) % len(lots)]
                # spread over 20 days of slots, so the lots never sell out however long the failover takes
                start = base + timedelta(minutes=15 * ((n * 241 + i * 7) % 1920))
                if await _attempt(deps, lot, start, start + timedelta(minutes=45), clock.now(), f"D{n}-{i}"):
                    granted[phase] += 1
                i += 1
                await asyncio.sleep(0)

        drivers = [asyncio.create_task(driver(n)) for n in range(8)]
        while granted["before"] < 40:
            await asyncio.sleep(0.01)
        phase = "during"
        victim = cluster.master_of(Keys(redis_prefix).lot_tag(str(lots[0])))
        cluster.kill(victim)
        await asyncio.to_thread(cluster.wait_failover, victim)  # a replica was promoted
        phase = "after"
        deadline = asyncio.get_running_loop().time() + 20
        while granted["after"] < 40 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*drivers)
        assert granted["after"] >= 40, granted  # bookings continue after the failover
        assert await overlapping_pairs(ctx.engine) == 0
        async with ctx.engine.connect() as conn:
            held = await conn.scalar(text("SELECT count(*) FROM reservations WHERE status = 'held'"))
        assert held == sum(granted.values())
    finally:
        await ctx.aclose()
        cluster.stop()


async def test_the_live_stream_works_on_the_cluster(cctx: AppContext) -> None:
    """Operators' live stream (controllers.live) on a Redis Cluster: published events of two lots reach their
    viewers, and a viewer resuming after an id gets what followed it."""
    from controllers.live import live_hub, live_publisher

    pub, hub = live_publisher(cctx), live_hub(cctx)
    lots = [uuid.uuid4(), uuid.uuid4()]
    first = {lot: await pub.publish(lot, "gate", {"n": 0}) for lot in lots}

    async def take(lot: uuid.UUID, n: int, after: str | None) -> list[str]:
        out: list[str] = []
        async for event in hub.stream(lot, last_event_id=after):
            out.append(event.kind if event.kind != "gate" else event.data.decode())
            if len(out) == n:
                break
        return out

    for lot in lots:
        assert await take(lot, 1, None) == ["ready"]
        await pub.publish(lot, "gate", {"n": 1})
        assert await asyncio.wait_for(take(lot, 2, first[lot]), 10) == ['{"n":1}', "ready"]


async def test_rebuilds_never_park_the_event_loop_on_a_thread(cctx: AppContext, clock: ManualClock,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """redis-py's cluster transactions (MULTI/EXEC pipelines) run each queued command on a thread while the
    event loop waits; a lot's rebuild and the occupancy counters' rebuild are one script each instead."""
    def refuse(coro: object) -> None:
        getattr(coro, "close", lambda: None)()
        raise AssertionError("a cluster transaction ran a command on a thread")

    monkeypatch.setattr(redis_cluster, "_run_coroutine_in_thread", refuse)
    async with cctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 5})
    report = await reconcile(engine=cctx.engine, slots=slot_store(cctx), now=clock.now(), lot_ids=[lot])
    assert report.lots == 1
    await counters_for(cctx).rebuild(lot_id=lot)
    # negative control: a MULTI/EXEC pipeline on the cluster takes the thread
    keys = Keys(cctx.settings.redis_prefix)
    with pytest.raises(AssertionError, match="on a thread"):
        async with cctx.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.meta(str(lot)))
            pipe.set(keys.spot_types(str(lot)), b"")
            await pipe.execute()
