"""CPU microseconds per sensor event in this process: the domain batch function, or the real app over ASGI.

    python -m loadtests.profile_sensors [--batches 40] [--batch 1000] [--spots 2000] [--http] [--statements]
                                        [--profile]

Same database set-up and events as bench_sensors; prints this process's CPU and wall time per event, the CPU of
the PostgreSQL backends serving this database (from /proc/<pid>/schedstat, nanoseconds: a local server only) and,
with --statements, the PostgreSQL CPU per event of each statement; with --profile, the cProfile top list.
--http drives the batches through create_app over ASGI (JSON parsing, device auth, the response), as uvicorn would,
without an HTTP client or server in the way.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import text

from controllers.occupancy import counters_for
from controllers.sensors import ingest_sensor_events
from core.context import build_context
from loadtests.bench_sensors import _create_db, _drop_db, events, seed
from loadtests.common import asgi_call, process_cpu_seconds
from loadtests.search_city import bench_settings


class StatementMeter:
    """PostgreSQL backend CPU per statement kind (first words of the SQL), measured around each asyncpg call."""

    METHODS = ("execute", "fetch", "fetchrow", "fetchval", "executemany", "copy_records_to_table")

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.ours: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.on = False
        self._saved: dict[str, Any] = {}

    def install(self) -> None:
        for name in self.METHODS:
            orig = getattr(asyncpg.Connection, name)
            self._saved[name] = orig
            setattr(asyncpg.Connection, name, self._wrap(name, orig))

    def uninstall(self) -> None:
        for name, orig in self._saved.items():
            setattr(asyncpg.Connection, name, orig)

    def _wrap(self, name: str, orig: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        meter = self

        async def wrapped(conn: asyncpg.Connection, query: Any, *args: Any, **kwargs: Any) -> Any:
            if not meter.on:
                return await orig(conn, query, *args, **kwargs)
            pid = conn.get_server_pid()
            c0, p0 = process_cpu_seconds(pid), time.process_time()
            try:
                return await orig(conn, query, *args, **kwargs)
            finally:
                label = name + " " + (" ".join(str(query).split()[:3]) if name != "copy_records_to_table" else query)
                meter.cpu[label[:60]] += process_cpu_seconds(pid) - c0
                meter.ours[label[:60]] += time.process_time() - p0
                meter.calls[label[:60]] += 1

        return wrapped


async def run(dbname: str, args: argparse.Namespace) -> None:
    lot, key = await seed(dbname, args.spots)
    settings = bench_settings(dbname)
    ctx = build_context(settings)
    at = datetime.now(UTC) - timedelta(hours=2)
    batches = [events(b * args.batch, args.batch, args.spots, at) for b in range(args.batches + 2)]
    app: Any = None
    if args.http:
        from api.app import create_app

        app = create_app(settings, context=ctx)
    bodies = [json.dumps({"events": b}).encode() for b in batches]
    path, headers = f"/api/v1/lots/{lot}/sensor-events", {"X-Device-Key": key}
    counted = 0

    async def one(i: int) -> None:
        nonlocal counted
        if app is None:
            res = await ingest_sensor_events(pg=await ctx.pg(), counters=counters_for(ctx), lot_id=lot,
                                             events=batches[i], now=datetime.now(UTC))
            counted += res.accepted + len(res.ignored)
            return
        status, answer = await asgi_call(app, "POST", path, bodies[i], headers)
        if status != 202:
            raise SystemExit(f"POST {path} answered {status}: {answer[:300]!r}")
        body = json.loads(answer)
        counted += body["accepted"] + len(body["ignored"])

    meter = StatementMeter()
    if args.statements:
        meter.install()
    try:
        async def measured() -> None:
            nonlocal counted
            for i in range(2):  # warm-up: pools, prepared statements, sensor registration
                await one(i)
            async with ctx.engine.connect() as conn:
                backends = list((await conn.execute(text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND backend_type = 'client backend'"))).scalars())
            profiler = cProfile.Profile(time.process_time) if args.profile else None
            counted = 0
            pg0 = sum(process_cpu_seconds(pid) for pid in backends)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            meter.on = True
            if profiler:
                profiler.enable()
            for i in range(2, len(batches)):
                await one(i)
            if profiler:
                profiler.disable()
            meter.on = False
            n = args.batches * args.batch
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            pg = sum(process_cpu_seconds(pid) for pid in backends) - pg0
            how = "through the app over ASGI" if app is not None else "domain function"
            print(f"{n:,} events in batches of {args.batch} ({how}): {cpu / n * 1e6:.1f} us CPU/event in process, "
                  f"{pg / n * 1e6:.1f} us CPU/event in PostgreSQL, {wall / n * 1e6:.1f} us wall/event "
                  f"({n / wall:,.0f} events/s, one batch at a time; {counted:,} applied or ignored)")
            for label in sorted(meter.cpu, key=lambda k: -meter.cpu[k]):
                print(f"  {label:<62} {meter.calls[label]:>5} calls {meter.cpu[label] / n * 1e6:6.1f} us/event"
                      f" in PostgreSQL, {meter.ours[label] / n * 1e6:5.1f} here")
            if profiler:
                pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)

        if app is not None:
            async with app.router.lifespan_context(app):
                await measured()
        else:
            await measured()
    finally:
        meter.uninstall()
        await ctx.aclose()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--spots", type=int, default=2000)
    p.add_argument("--http", action="store_true", help="through create_app over ASGI (JSON, auth, response)")
    p.add_argument("--statements", action="store_true", help="PostgreSQL CPU per event of each statement")
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
