"""Reconciler benchmark: rebuild 100,000 spots over 30 days of Redis slot state from PostgreSQL.

    python -m loadtests.bench_reconcile                  # 100 lots x 1000 spots, 30 days
    python -m loadtests.bench_reconcile --lots 20 --spots 500

Seeds (once, kept in parkgrid_bench_reconcile) lots with confirmed reservations: near-term days busy, later
days thinner (about 1.2 bookings per spot and day this week falling to 0.2 a month out, 1-4 h each), then
times booking.reconcile.reconcile over every lot twice, on its own Redis prefix (deleted afterwards):
first into an empty Redis (a start-up or a Redis restart), then again with nothing to repair (the
periodic run). Issue 5 asks for < 10 s. `python -m loadtests.profile_reconcile` splits the time into
the PostgreSQL read, the bitmap build and the Redis write.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import psycopg
from sqlalchemy import text

from booking.reconcile import reconcile
from booking.runtime import slot_store
from core.context import build_context
from core.migrate import upgrade
from core.settings import Settings
from geo.seed import LotPlan, seed_city
from loadtests.search_city import BENCH_SECRET, PG_HOST, database_url

DBNAME = "parkgrid_bench_reconcile"
NAMESPACE = uuid.UUID("3a4f0c4e-2b7d-4d8e-8f0e-6b1d2c3a4b5c")
DAY0 = datetime(2030, 1, 7, tzinfo=UTC)  # a fixed Monday: the seeded city does not age between runs


def settings(prefix: str) -> Settings:
    return Settings(_env_file=None, secret_key=BENCH_SECRET, database_url=database_url(DBNAME),  # type: ignore[call-arg]
                    rate_limits="off", redis_prefix=prefix)


def plans(lots: int, spots: int) -> list[LotPlan]:
    per_level = spots // 4
    level = {"regular": per_level - per_level // 5, "compact": per_level // 10, "ev": per_level // 20}
    level["handicap"] = per_level - sum(level.values())
    return [LotPlan(id=uuid.uuid5(NAMESPACE, f"lot:{i}:{spots}"), name=f"Reconcile Lot {i}", address="",
                    lat=37.7 + i * 0.001, lng=-122.4, kind="multi-storey", amenities=[],
                    levels=[dict(level) for _ in range(4)]) for i in range(lots)]


async def seed(lots: int, spots: int, days: int) -> int:
    """Lots and reservations, unless already there; returns the number of occupying reservations."""
    ctx = build_context(settings("bench-reconcile-seed"))
    try:
        async with ctx.engine.connect() as conn:
            have = await conn.scalar(text("SELECT count(*) FROM lots"))
            rows = await conn.scalar(text("SELECT count(*) FROM reservations"))
        if have == lots and rows:
            return int(rows or 0)
        async with ctx.engine.begin() as conn:
            await conn.execute(text("TRUNCATE lots, organisations CASCADE"))
        await seed_city(ctx.engine, plans(lots, spots), batch=10)
    finally:
        await ctx.aclose()
    rng = random.Random(7)
    conn = await asyncpg.connect(f"{PG_HOST}/{DBNAME}")
    total = 0
    try:
        for plan in plans(lots, spots):
            spot_ids = [r["id"] for r in await conn.fetch("SELECT id FROM spots WHERE lot_id = $1 ORDER BY idx",
                                                          plan.id)]
            records = []
            for spot in spot_ids:
                free_from = DAY0  # one spot's bookings never overlap, also across midnight
                for d in range(days):
                    rate = 1.2 if d < 7 else max(0.2, 1.2 - (d - 7) * 0.05)
                    minute = rng.randrange(0, 8 * 60, 15)  # from 00:00-08:00, then back to back with gaps
                    while rng.random() < rate / 2 and minute < 22 * 60:
                        start = max(DAY0 + timedelta(days=d, minutes=minute), free_from)
                        end = start + timedelta(minutes=15 * rng.randint(4, 16))
                        records.append((plan.id, uuid.uuid4(), spot, "regular", start, end,
                                        asyncpg.Range(start, end, upper_inc=False), "confirmed"))
                        free_from = end
                        minute = int((end - DAY0 - timedelta(days=d)).total_seconds() // 60) + rng.randrange(15, 180, 15)
            await conn.copy_records_to_table("reservations", records=records, columns=[
                "lot_id", "id", "spot_id", "vehicle_type", "starts_at", "ends_at", "period", "status"])
            total += len(records)
        # Every table, spots included: without statistics the planner guesses a few hundred spots
        # per lot and probes the exclusion index once per spot, several times slower than a hash join.
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return total


async def run(lots: int) -> list[tuple[str, float, int, int]]:
    prefix = f"bench-reconcile-{uuid.uuid4().hex[:8]}"
    ctx = build_context(settings(prefix))
    out = []
    try:
        slots = slot_store(ctx)
        async with ctx.engine.connect() as conn:
            ids = [r.id for r in await conn.execute(text("SELECT id FROM lots ORDER BY id"))]
        now = DAY0 + timedelta(hours=1)
        for label in ("into an empty Redis", "again, nothing to repair"):
            t = time.perf_counter()
            report = await reconcile(engine=ctx.engine, slots=slots, now=now, lot_ids=ids, horizon_days=30)
            out.append((label, time.perf_counter() - t, report.bits_set, report.bits_cleared))
        keys = [k async for k in ctx.redis.scan_iter(match=f"{prefix}:*", count=5000)]
        for i in range(0, len(keys), 1000):
            await ctx.redis.delete(*keys[i:i + 1000])
    finally:
        await ctx.aclose()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lots", type=int, default=100)
    ap.add_argument("--spots", type=int, default=1000)
    ap.add_argument("--days", type=int, default=30)
    args = ap.parse_args()
    with psycopg.connect(f"{PG_HOST}/postgres", autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DBNAME,)).fetchone():
            admin.execute(f'CREATE DATABASE "{DBNAME}"')
    upgrade(database_url(DBNAME))
    t = time.perf_counter()
    rows = asyncio.run(seed(args.lots, args.spots, args.days))
    print(f"{args.lots} lots x {args.spots} spots = {args.lots * args.spots} spots, {args.days} days, "
          f"{rows} reservations (ready in {time.perf_counter() - t:.0f} s)", flush=True)
    results = asyncio.run(run(args.lots))
    for label, seconds, bits_set, bits_cleared in results:
        print(f"reconcile {label:<28} {seconds:6.2f} s  ({bits_set} bits set, {bits_cleared} cleared)"
              f"  -> {'PASS' if seconds < 10 else 'FAIL'} (target < 10 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
