"""CPU microseconds per sensor event in this process: the domain batch function, no HTTP, no MQTT.

    python -m loadtests.profile_sensors [--batches 40] [--batch 1000] [--spots 2000] [--profile]

Same database set-up and events as bench_sensors; prints this process's CPU and wall time per event, the CPU of
the PostgreSQL backends serving this database (read from /proc: a local server only) and, with --profile, the
cProfile top list.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from controllers.occupancy import counters_for
from controllers.sensors import ingest_sensor_events
from core.context import build_context
from loadtests.bench_sensors import _create_db, _drop_db, events, seed
from loadtests.search_city import bench_settings


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(dbname: str, args: argparse.Namespace) -> None:
    lot, _key = await seed(dbname, args.spots)
    ctx = build_context(bench_settings(dbname))
    at = datetime.now(UTC) - timedelta(hours=2)
    batches = [events(b * args.batch, args.batch, args.spots, at) for b in range(args.batches + 2)]
    try:
        async def one(batch: list[dict[str, object]]) -> None:
            await ingest_sensor_events(pg=await ctx.pg(), counters=counters_for(ctx), lot_id=lot, events=batch,
                                       now=datetime.now(UTC))

        for batch in batches[:2]:  # warm-up: pools, prepared statements, sensor registration
            await one(batch)
        async with ctx.engine.connect() as conn:
            backends = list((await conn.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'"
            ))).scalars())
        profiler = cProfile.Profile() if args.profile else None
        pg0 = sum(_cpu_seconds(pid) for pid in backends)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        for batch in batches[2:]:
            await one(batch)
        if profiler:
            profiler.disable()
        n = args.batches * args.batch
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        pg = sum(_cpu_seconds(pid) for pid in backends) - pg0
        print(f"{n:,} events in batches of {args.batch}: {cpu / n * 1e6:.1f} us CPU/event in process, "
              f"{pg / n * 1e6:.1f} us CPU/event in PostgreSQL, {wall / n * 1e6:.1f} us wall/event "
              f"({n / wall:,.0f} events/s, one batch at a time)")
        if profiler:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)
    finally:
        await ctx.aclose()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--spots", type=int, default=2000)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    dbname = f"prof_sensors_{uuid.uuid4().hex[:6]}"
    _create_db(dbname)
    try:
        asyncio.run(run(dbname, args))
    finally:
        _drop_db(dbname)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
