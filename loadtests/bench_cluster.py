"""Holds/s and the reconciler's rebuild on a local Redis Cluster beside a single Redis, in one run.

    python -m loadtests.bench_cluster                  # 10 s per phase, 64 concurrent holds, 2 rounds
    python -m loadtests.bench_cluster --duration 20

One process, its own database (parkgrid_bench_cluster: 20 lots x 100 spots), the booking domain called
directly (holds.hold through booking_deps, as the API's hold route does), so the two phases differ only in
the Redis behind them: a private single redis-server, and 3 masters + 3 replicas (tests/redis_cluster.py).
The phases alternate (single, cluster, single, cluster...) so the shared machine's drift falls on both; each
starts from empty lots (reservations deleted and vacuumed, the Redis behind it flushed).
Then the reconciler rebuilds every lot (30 days) from PostgreSQL into each, empty.

Target (issue 22): holds/s on the cluster >= 0.8x single Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from datetime import timedelta

import psycopg
import redis as sync_redis
from sqlalchemy import text

from booking import holds
from booking.reconcile import reconcile
from booking.wiring import booking_deps, slot_store
from core.clock import ManualClock
from core.context import AppContext, build_context
from core.errors import PlateConflict, SoldOut
from core.migrate import upgrade
from core.settings import Settings
from geo.seed import LotPlan, seed_city
from loadtests.search_city import BENCH_SECRET, PG_HOST, database_url
from tests.procs import free_port, kill, start_redis
from tests.redis_cluster import LocalCluster, start_cluster

DBNAME = "parkgrid_bench_cluster"
LOTS, SPOTS = 20, 100
NAMESPACE = uuid.UUID("7d4e1c52-9a0b-4c3e-8f21-5b6a7c8d9e01")


def settings(redis_url: str, cluster: bool, prefix: str) -> Settings:
    return Settings(_env_file=None, secret_key=BENCH_SECRET, database_url=database_url(DBNAME),  # type: ignore[call-arg]
                    rate_limits="off", redis_url=redis_url, redis_cluster=cluster, redis_prefix=prefix,
                    max_holds_per_user=100)


def prepare() -> None:
    with psycopg.connect(f"{PG_HOST}/postgres", autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DBNAME,)).fetchone():
            admin.execute(f'CREATE DATABASE "{DBNAME}"')
    upgrade(database_url(DBNAME))


def empty_reservations() -> None:
    with psycopg.connect(f"{PG_HOST}/{DBNAME}", autocommit=True) as pg:
        pg.execute("DELETE FROM reservations")
        pg.execute("VACUUM ANALYZE reservations")


async def seed(ctx: AppContext) -> list[uuid.UUID]:
    plans = [LotPlan(id=uuid.uuid5(NAMESPACE, f"lot:{i}"), name=f"Cluster Lot {i}", address="", lat=37.77 + i * 0.001,
                     lng=-122.42, kind="surface", amenities=[], levels=[{"regular": SPOTS}],
                     gates=[("Entry", "entry"), ("Exit", "exit")]) for i in range(LOTS)]
    async with ctx.engine.begin() as conn:
        have = await conn.scalar(text("SELECT count(*) FROM lots"))
    if have != LOTS:
        await seed_city(ctx.engine, plans)
    return [p.id for p in plans]


async def holds_phase(ctx: AppContext, lots: list[uuid.UUID], *, seconds: float, concurrency: int) -> tuple[float, int]:
    """Holds/s (granted or sold out: both are answers) for `seconds`; returns (rate, errors)."""
    deps = booking_deps(ctx)
    now = ctx.clock.now()
    done, errors = 0, 0
    stop_at = time.perf_counter() + seconds

    async def client(n: int) -> None:
        nonlocal done, errors
        rng = random.Random(n)
        while time.perf_counter() < stop_at:
            start = now + timedelta(days=rng.randint(1, 25), minutes=15 * rng.randint(0, 90))
            try:
                await holds.hold(deps=deps, user_id=None, lot_id=rng.choice(lots), vehicle_type="regular",
                                 starts_at=start, ends_at=start + timedelta(hours=rng.randint(1, 4)),
                                 plate=f"B{n}X{rng.randrange(10**7)}", now=now)
            except (SoldOut, PlateConflict):
                pass
            except Exception as exc:  # counted and printed, the phase goes on
                errors += 1
                if errors == 1:
                    print(f"first error: {exc!r}", flush=True)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(concurrency)))
    return done / (time.perf_counter() - started), errors


async def run(args: argparse.Namespace) -> int:
    port = free_port()
    single = start_redis(port)
    cluster: LocalCluster = await asyncio.to_thread(start_cluster)
    clock = ManualClock()
    contexts = {
        "single Redis": build_context(settings(f"redis://127.0.0.1:{port}/0", False, "bench-single"), clock=clock),
        "Redis Cluster (3+3)": build_context(settings(cluster.url, True, "bench-cluster"), clock=clock),
    }
    rates: dict[str, list[float]] = {name: [] for name in contexts}

    async def flush(name: str) -> None:
        """Empty the Redis behind `name` (every master of the cluster)."""
        if name.startswith("single"):
            await contexts[name].redis.flushall()
            return
        for node in cluster.masters():
            sync_redis.Redis(port=node).flushall()

    rebuild: dict[str, float] = {}
    errors = 0
    try:
        lots = await seed(next(iter(contexts.values())))

        for ctx in contexts.values():  # warm: lots loaded into each Redis, pools open
            await holds_phase(ctx, lots, seconds=1.0, concurrency=args.concurrency)
        for _ in range(args.rounds):
            for name, ctx in contexts.items():
                # Every phase starts from empty lots: the clients' seeded requests repeat from phase to phase,
                # so a phase run over the last one's holds would answer plate conflicts (after claiming a spot
                # in Redis and releasing it), not holds.
                await asyncio.to_thread(empty_reservations)
                await flush(name)
                await holds_phase(ctx, lots, seconds=1.0, concurrency=args.concurrency)  # lots reloaded lazily
                rate, errs = await holds_phase(ctx, lots, seconds=args.duration, concurrency=args.concurrency)
                rates[name].append(rate)
                errors += errs
                print(f"{name:<22} {rate:>8.0f} holds/s  errors {errs}", flush=True)
        for name, ctx in contexts.items():
            await flush(name)
            started = time.perf_counter()
            report = await reconcile(engine=ctx.engine, slots=slot_store(ctx), now=clock.now(), horizon_days=30)
            rebuild[name] = time.perf_counter() - started
            print(f"{name:<22} rebuild of {report.lots} lots x 30 days from PostgreSQL: {rebuild[name]:.2f} s "
                  f"({report.bits_set} bits set)", flush=True)
    finally:
        for ctx in contexts.values():
            await ctx.aclose()
        kill(single)
        cluster.stop()
    one, many = (statistics.fmean(v) for v in rates.values())
    print(f"\nholds/s: cluster {many:.0f} beside single Redis {one:.0f} = {many / one:.2f}x (target >= 0.8x); "
          f"rebuild {rebuild['Redis Cluster (3+3)']:.2f} s beside {rebuild['single Redis']:.2f} s; errors {errors}")
    return 1 if errors else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    prepare()
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
