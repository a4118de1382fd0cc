"""Throughput of the Lua hold script against plain SET in the same run, plus a rebuild timing.

    python -m loadtests.bench_lua [--clients 16] [--seconds 5] [--lots 20] [--spots 500]
                                  [--rebuild-lots 100] [--rebuild-spots 1000] [--days 30]

Uses a unique key prefix and deletes its keys afterwards (the Redis may be shared).
Client-side numbers include Python/redis-py overhead; the server-side figures come from
INFO commandstats deltas (other users of the same Redis add noise to those). For the
server's raw ceiling, compare `redis-benchmark -t set -n 200000 -c 50 -q`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import redis.asyncio as aioredis

from booking.slotbuild import Occupancy
from booking.slots import SpotInfo
from booking.slotstore import SlotStore
from core.keys import Keys

T0 = datetime(2030, 1, 7, tzinfo=UTC)
TYPES = ["regular"] * 6 + ["compact"] * 2 + ["large", "motorcycle", "ev", "handicap"]


async def commandstats(client: aioredis.Redis) -> dict[str, tuple[int, int]]:
    info = await client.info("commandstats")
    return {k.removeprefix("cmdstat_"): (v["calls"], v["usec"]) for k, v in info.items()}


def per_call(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], cmd: str) -> str:
    calls = after.get(cmd, (0, 0))[0] - before.get(cmd, (0, 0))[0]
    usec = after.get(cmd, (0, 0))[1] - before.get(cmd, (0, 0))[1]
    return f"{usec / calls:.1f} us/call server-side ({calls} calls)" if calls else "n/a"


async def run_for(seconds: float, clients: int, op: object) -> int:
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker(i: int) -> None:
        nonlocal done
        rng = random.Random(i)
        while time.perf_counter() < deadline:
            await op(i, rng)  # type: ignore[operator]
            done += 1

    await asyncio.gather(*(worker(i) for i in range(clients)))
    return done


async def bench_holds(url: str, prefix: str, args: argparse.Namespace) -> None:
    pools = [aioredis.Redis.from_url(url) for _ in range(args.clients)]
    stores = [SlotStore(p, Keys(prefix)) for p in pools]
    lots = [str(uuid.uuid4()) for _ in range(args.lots)]
    spots = [SpotInfo(i, TYPES[i % len(TYPES)], level=i % 4, rank=i) for i in range(args.spots)]
    for lot in lots:
        await stores[0].load_lot(lot_id=lot, spots=spots, strategy="nearest_entrance", ev_overflow=True)
    granted = 0
    counter = 0

    async def hold(i: int, rng: random.Random) -> None:
        nonlocal granted, counter
        counter += 1
        start = T0 + timedelta(minutes=15 * rng.randrange(0, 7 * 96))
        spot = await stores[i].hold(
            lot_id=rng.choice(lots), hold_id=f"b{counter}", vehicle_type=rng.choice(TYPES),
            starts_at=start, ends_at=start + timedelta(minutes=15 * rng.randint(2, 16)),
        )
        granted += spot is not None

    async def plain_set(i: int, rng: random.Random) -> None:
        await pools[i].set(f"{prefix}:set:{i}", b"x" * 16)

    before = await commandstats(pools[0])
    holds = await run_for(args.seconds, args.clients, hold)
    middle = await commandstats(pools[0])
    sets = await run_for(args.seconds, args.clients, plain_set)
    after = await commandstats(pools[0])
    print(f"clients={args.clients} lots={args.lots} spots/lot={args.spots} seconds={args.seconds}")
    print(f"  Lua hold : {holds / args.seconds:10.0f} holds/s  ({granted} granted, {holds - granted} sold out)"
          f"  {per_call(before, middle, 'evalsha')}")
    print(f"  SET      : {sets / args.seconds:10.0f} ops/s"
          f"  {per_call(middle, after, 'set')}")
    print(f"  ratio    : hold/SET = {holds / max(sets, 1):.2f}")
    for p in pools:
        await p.aclose()


async def bench_rebuild(url: str, prefix: str, args: argparse.Namespace) -> None:
    client = aioredis.Redis.from_url(url)
    store = SlotStore(client, Keys(prefix))
    days = [date(2030, 1, 7) + timedelta(days=i) for i in range(args.days)]
    spots = [SpotInfo(i, TYPES[i % len(TYPES)], level=i % 4, rank=i) for i in range(args.rebuild_spots)]
    rng = random.Random(1)
    elapsed, rows_total, stats_total = 0.0, 0, (0, 0)
    for _ in range(args.rebuild_lots):
        lot = str(uuid.uuid4())
        rows = []
        for d in range(args.days):
            for s in range(args.rebuild_spots):
                # About 1.5 bookings per spot and day of 2-8 hours.
                for _ in range(rng.choice((1, 1, 2))):
                    start = T0 + timedelta(days=d, minutes=15 * rng.randrange(0, 88))
                    rows.append((s, start, start + timedelta(minutes=15 * rng.randint(8, 32))))
        rows_total += len(rows)
        t = time.perf_counter()
        stats = await store.rebuild_lot(lot_id=lot, spots=spots, occupancy=Occupancy.from_windows(rows), strategy="best_fit",
                                        ev_overflow=False, days=days)
        elapsed += time.perf_counter() - t
        stats_total = (stats_total[0] + stats.bits_set, stats_total[1] + stats.bits_cleared)
    n = args.rebuild_lots * args.rebuild_spots
    print(f"rebuild: {n} spots ({args.rebuild_lots} lots x {args.rebuild_spots}) x {args.days} days, "
          f"{rows_total} occupancy rows: {elapsed:.2f} s  (bits set {stats_total[0]}, cleared {stats_total[1]})")
    await client.aclose()


async def cleanup(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    batch = []
    async for key in client.scan_iter(match=f"{prefix}:*", count=2000):
        batch.append(key)
        if len(batch) >= 1000:
            await client.delete(*batch)
            batch.clear()
    if batch:
        await client.delete(*batch)
    await client.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("PARKGRID_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--lots", type=int, default=20)
    parser.add_argument("--spots", type=int, default=500)
    parser.add_argument("--rebuild-lots", type=int, default=100)
    parser.add_argument("--rebuild-spots", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--skip-rebuild", action="store_true")
    args = parser.parse_args()
    prefix = "bench" + uuid.uuid4().hex[:12]
    try:
        await bench_holds(args.url, prefix, args)
        if not args.skip_rebuild:
            await bench_rebuild(args.url, prefix, args)
    finally:
        await cleanup(args.url, prefix)


if __name__ == "__main__":
    asyncio.run(main())
