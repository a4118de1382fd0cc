"""CPU per hold inside the API process: the real ASGI app, called in process, on the booking bench's database.

    python -m loadtests.profile_hold                 # Redis deciding: CPU ms per hold, then a cProfile top list
    python -m loadtests.profile_hold --pg-only       # Redis unreachable: the PostgreSQL-only path
    python -m loadtests.profile_hold --keyed         # an Idempotency-Key on every hold
    python -m loadtests.profile_hold --holds 3000 --concurrency 16 --profile-holds 1000 --top 40

The app is called as ASGI (no HTTP parsing, no client library), so the figure is what one hold costs the
API process: routing, auth, validation, booking, SQL and Redis client work, response encoding. PostgreSQL's
and Redis' own CPU are in their processes and not counted (time.process_time). The database is
loadtests.bench_booking's (20 lots x 100 spots, priced by the seeded rate card); its reservations are
truncated first. Redis is the local one, under a key prefix of its own that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
import uvloop

from api.app import create_app
from loadtests.bench_booking import (
    HOLDS_PER_USER,
    double_bookings,
    ensure_database,
    lot_plans,
    prepare,
    settings,
    tokens,
)
from loadtests.common import asgi_call

REDIS_URL = "redis://127.0.0.1:6379/0"


class InProcess:
    """POSTs holds straight into the ASGI app, as many at once as there are clients."""

    def __init__(self, app: Any, tokens: list[str], lots: list[uuid.UUID], *, keyed: bool = False) -> None:
        self.app, self.tokens, self.lots, self.keyed = app, tokens, lots, keyed
        self.statuses: dict[int, int] = {}
        self.base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
        self.sent = 0

    async def post(self, path: str, body: bytes, token: str) -> int:
        headers = {"host": "test", "authorization": f"Bearer {token}"}
        if self.keyed:  # a fresh key per hold, as bench_booking's phase K sends them
            headers["idempotency-key"] = uuid.uuid4().hex
        status, _ = await asgi_call(self.app, "POST", path, body, headers)
        return status

    async def hold(self, rng: random.Random, client: int) -> None:
        self.sent += 1
        n = self.sent
        start = self.base + timedelta(minutes=15 * rng.randrange(0, 21 * 96))
        body = json.dumps({"lot_id": str(rng.choice(self.lots)), "vehicle_type": "regular",
                           "starts_at": start.isoformat(),
                           "ends_at": (start + timedelta(minutes=15 * rng.randint(4, 16))).isoformat(),
                           "plate": f"P{client:02d}{n:07d}"}).encode()
        token = self.tokens[(n // (HOLDS_PER_USER - 1)) % len(self.tokens)]
        status = await self.post("/api/v1/reservations", body, token)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    async def run(self, holds: int, concurrency: int, seed: int) -> float:
        """Make `holds` holds with `concurrency` clients; the wall-clock seconds it took."""
        left = holds

        async def client(i: int) -> None:
            nonlocal left
            rng = random.Random(seed * 1000 + i)
            while left > 0:
                left -= 1
                await self.hold(rng, i)

        t0 = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(concurrency)))
        return time.perf_counter() - t0


async def main_async(args: argparse.Namespace) -> None:
    users = max(8, 3 * (args.holds + args.warmup + args.profile_holds) // (HOLDS_PER_USER - 1) + 1)
    drivers = await prepare(users)
    prefix = f"profile-hold-{uuid.uuid4().hex[:8]}"
    s = settings(redis_url="redis://127.0.0.1:1/0" if args.pg_only else REDIS_URL).model_copy(
        update={"redis_prefix": prefix, "max_holds_per_user": HOLDS_PER_USER,
                "database_pool_size": args.pool_size})
    app = create_app(s)
    runner = InProcess(app, tokens(drivers), [p.id for p in lot_plans()], keyed=args.keyed)
    try:
        async with app.router.lifespan_context(app):
            await runner.run(args.warmup, args.concurrency, seed=1)  # pools, prepared statements, lots into Redis
            runner.statuses.clear()
            per_round = args.holds // args.rounds
            figures = []
            for k in range(args.rounds):  # the least of a few rounds: other processes' bursts only ever add
                cpu0 = time.process_time()
                wall = await runner.run(per_round, args.concurrency, seed=10 + k)
                figures.append((time.process_time() - cpu0) * 1000 / per_round)
            print(f"{'PostgreSQL-only path' if args.pg_only else 'Redis deciding'}: {args.rounds} x {per_round} "
                  f"holds, {args.concurrency} concurrent, statuses {runner.statuses}")
            print(f"CPU {min(figures):.2f} ms per hold in the API process (rounds: "
                  f"{', '.join(f'{f:.2f}' for f in figures)}; last round {per_round / wall:.0f} holds/s wall-clock)")
            runner.statuses.clear()
            # CPU time as the profiler's clock, one hold at a time: waits cost nothing and each coroutine's
            # cumulative time is its own CPU (with clients in parallel it would include theirs)
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            await runner.run(args.profile_holds, 1, seed=3)
            profiler.disable()
            if args.save:
                profiler.dump_stats(args.save)
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out).strip_dirs()
            stats.sort_stats("cumulative").print_stats(args.top)
            stats.sort_stats("tottime").print_stats(args.top)
            print(out.getvalue())
        print(f"double bookings: {double_bookings()}")
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--holds", type=int, default=2000, help="holds measured")
    ap.add_argument("--rounds", type=int, default=4, help="measured in this many rounds; the least is printed")
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--pool-size", type=int, default=10)
    ap.add_argument("--pg-only", action="store_true", help="Redis unreachable: the PostgreSQL-only path")
    ap.add_argument("--keyed", action="store_true", help="an Idempotency-Key on every hold")
    ap.add_argument("--profile-holds", type=int, default=500, help="holds profiled, one at a time")
    ap.add_argument("--top", type=int, default=45)
    ap.add_argument("--save", help="also write the profile to this file (pstats format)")
    args = ap.parse_args()
    ensure_database()
    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
