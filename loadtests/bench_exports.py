"""Planner exports: rows written per second and the writer's peak memory, CSV and GeoParquet.

    python -m loadtests.bench_exports [--lots 1000] [--days 90] [--sql-lots 100] [--sql-days 7]

Phase 1 (the issue's figure): 1,000 lots x 90 days of hourly history (2.16 million place-hours, 8.64 million CDS
metric rows) through `write_export`, the worker's and the CLI's code path: places from PostgreSQL, the hourly
history from a synthetic source plugged into the `PlaceHourSource` seam (where the occupancy history table will
plug in), the metrics with the privacy threshold, and the streamed writer. Each format runs in a fresh process,
which reports its peak RSS (ru_maxrss) and its RSS before writing. Baselines from the same run: a process with the
same imports writing the same number of constant rows with `csv.writer` (the floor of CSV writing in Python), and
the synthetic source iterated without metrics or writing.

Phase 2: the same code path with today's source, `place_hours_from_sessions` (PostgreSQL computes the hourly
aggregates from parking sessions), on a smaller city with ~10 sessions per lot and hour.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from analytics.exports.jobs import write_export
from analytics.exports.places import Place
from analytics.exports.source import PlaceHours, hour_grid, place_hours_from_sessions
from analytics.exports.spec import ExportRequest
from core.context import build_context
from core.migrate import upgrade
from core.settings import Settings
from geo.seed import plan_city, seed_city
from loadtests.search_city import BENCH_SECRET, PG_HOST, database_url

DBNAME = "parkgrid_bench_exports"
SQL_DBNAME = "parkgrid_bench_exports_sql"
DAY0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)  # a Monday, midnight in Los Angeles
OUT_DIR = Path("/tmp/parkgrid-bench-exports")


def _settings(dbname: str) -> Settings:
    return Settings(_env_file=None, secret_key=BENCH_SECRET, database_url=database_url(dbname),  # type: ignore[call-arg]
                    rate_limits="off", redis_prefix=f"bench-{dbname}")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def synthetic_hours(conn: AsyncConnection, *, places: Sequence[Place], start: datetime, end: datetime,
                          now: datetime) -> AsyncIterator[PlaceHours]:
    """A made-up hourly history of the same shape as the real source (about a quarter of the hours below 10
    sessions, so suppressed): what an occupancy history table would hand over."""
    for place in places:
        grid = hour_grid(place.timezone, start, end)
        cap = max(1, place.capacity)
        n = (place.rank * 7 + np.arange(len(grid), dtype=np.int64) * 13) % 40
        yield PlaceHours(place.rank, cap, grid, n, n // 2, np.minimum(n, cap) * 1500.0, n * 2400.0)


def _request(fmt: str, days: int) -> ExportRequest:
    return ExportRequest.model_validate({"kind": "occupancy", "from": DAY0.isoformat(),
                                         "to": (DAY0 + timedelta(days=days)).isoformat(), "group_by": "lot",
                                         "format": fmt})


async def _child(mode: str, fmt: str, days: int, dbname: str) -> dict[str, Any]:
    ctx = build_context(_settings(dbname))
    try:
        req = _request(fmt, days)
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        path = OUT_DIR / f"{mode}.{fmt}"
        before = _rss_mb()
        if mode == "source-only":  # baseline: the synthetic history alone
            from analytics.exports.jobs import load_places
            async with ctx.engine.connect() as conn:
                places = await load_places(conn, req=req, organisation_id=None)
                t0 = time.perf_counter()
                hours = 0
                async for block in synthetic_hours(conn, places=places, start=req.start, end=req.end, now=DAY0):
                    hours += len(block.grid)
                seconds = time.perf_counter() - t0
            return {"rows": hours * 4, "place_hours": hours, "seconds": seconds, "rss_before_mb": before,
                    "peak_mb": _peak_mb(), "bytes": 0}
        source = synthetic_hours if mode == "synthetic" else place_hours_from_sessions
        now = DAY0 + timedelta(days=days + 1)
        with path.open("wb") as out:
            t0 = time.perf_counter()
            result = await write_export(engine=ctx.engine, req=req, organisation_id=None, out=out, now=now,
                                        source=source)
            seconds = time.perf_counter() - t0
        return {"rows": result.rows, "place_hours": result.rows // 4, "suppressed": result.suppressed,
                "seconds": seconds, "rss_before_mb": before, "peak_mb": _peak_mb(), "bytes": path.stat().st_size}
    finally:
        await ctx.aclose()


def _baseline_csv(rows: int) -> dict[str, Any]:
    """The same imports, then `rows` constant 9-column rows through csv.writer."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    before = _rss_mb()
    row = ("area", str(uuid.uuid4()), "occupancy_percent", "2026-01-05", 7, 41.25, "false", "lot", None)
    batch = [row] * 10_000
    t0 = time.perf_counter()
    with (OUT_DIR / "baseline.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        for _ in range(rows // len(batch)):
            w.writerows(batch)
    seconds = time.perf_counter() - t0
    return {"rows": rows // len(batch) * len(batch), "seconds": seconds, "rss_before_mb": before,
            "peak_mb": _peak_mb(), "bytes": (OUT_DIR / "baseline.csv").stat().st_size}


def _spawn(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "loadtests.bench_exports", "--child", *args], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _ensure_db(name: str) -> None:
    with psycopg.connect(f"{PG_HOST}/postgres", autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            admin.execute(f'CREATE DATABASE "{name}"')
    upgrade(database_url(name))


async def _seed(name: str, lots: int, *, sessions_days: int = 0) -> None:
    """`lots` lots of the demo city (seed 18), and with `sessions_days` ~10 sessions per lot and hour."""
    ctx = build_context(_settings(name))
    try:
        async with ctx.engine.connect() as conn:
            have = await conn.scalar(text("SELECT count(*) FROM lots"))
            sessions = await conn.scalar(text("SELECT count(*) FROM parking_sessions"))
        if have == lots and (not sessions_days or sessions):
            return
        async with ctx.engine.begin() as conn:
            await conn.execute(text("TRUNCATE lots, organisations CASCADE"))
        await seed_city(ctx.engine, plan_city(lots=lots, seed=18), batch=100)
        if sessions_days:
            async with ctx.engine.begin() as conn:
                await conn.execute(text("SET LOCAL statement_timeout = 0"))
                # per lot and hour 10 arrivals at random minutes, staying 20 min to 3 h; no plates needed here
                await conn.execute(text("""
                    INSERT INTO parking_sessions (lot_id, kind, status, entered_at, exited_at)
                    SELECT l.id, 'walk_in', 'completed', t, t + (20 + random() * 160) * interval '1 minute'
                    FROM lots l,
                         generate_series(CAST(:day0 AS timestamptz), CAST(:day0 AS timestamptz) + :days * interval '1 day'
                                         - interval '1 hour', interval '1 hour') h,
                         generate_series(1, 10) k,
                         LATERAL (SELECT h + random() * interval '1 hour' + k * interval '0 s' AS t) x"""),
                    {"day0": DAY0, "days": sessions_days})
                await conn.execute(text("ANALYZE parking_sessions"))
    finally:
        await ctx.aclose()


def _line(name: str, r: dict[str, Any]) -> str:
    rate = r["rows"] / r["seconds"] if r["seconds"] else float("nan")
    return (f"{name:<40} {r['rows']:>10,} {r['seconds']:>8.2f} {rate:>12,.0f} {r['rss_before_mb']:>9.0f} "
            f"{r['peak_mb']:>9.0f} {r.get('bytes', 0) / 1e6:>9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lots", type=int, default=1000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--sql-lots", type=int, default=100)
    parser.add_argument("--sql-days", type=int, default=7)
    parser.add_argument("--formats", default="csv,parquet")
    parser.add_argument("--child", nargs=4, metavar=("MODE", "FORMAT", "DAYS", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, fmt, days, db = args.child
        result = _baseline_csv(int(days)) if mode == "baseline" else asyncio.run(_child(mode, fmt, int(days), db))
        print(json.dumps(result))
        return

    _ensure_db(DBNAME)
    asyncio.run(_seed(DBNAME, args.lots))
    formats = args.formats.split(",")
    print(f"exports: {args.lots} lots x {args.days} days, occupancy by lot and hour "
          f"({args.lots * args.days * 24:,} place-hours x 4 CDS metric rows)")
    print(f"{'phase':<40} {'rows':>10} {'seconds':>8} {'rows/s':>12} {'RSS0 MB':>9} {'peak MB':>9} {'file MB':>9}")
    results = {fmt: _spawn("synthetic", fmt, str(args.days), DBNAME) for fmt in formats}
    base = _spawn("baseline", "csv", str(results[formats[0]]["rows"]), DBNAME)
    only = _spawn("source-only", "csv", str(args.days), DBNAME)
    print(_line("baseline: csv.writer, constant rows", base))
    print(_line("baseline: synthetic source alone", only))
    for fmt in formats:
        print(_line(f"write_export {fmt} (synthetic history)", results[fmt]))

    _ensure_db(SQL_DBNAME)
    asyncio.run(_seed(SQL_DBNAME, args.sql_lots, sessions_days=args.sql_days))
    print(f"\nfrom parking sessions: {args.sql_lots} lots x {args.sql_days} days, ~10 sessions per lot and hour")
    for fmt in formats:
        print(_line(f"write_export {fmt} (from sessions)", _spawn("sessions", fmt, str(args.sql_days), SQL_DBNAME)))
    for fmt in formats:
        r = results[fmt]
        rate = r["rows"] / r["seconds"]
        print(f"target {fmt}: {rate:,.0f} rows/s (>= 200,000: {'met' if rate >= 200_000 else 'NOT met'}), "
              f"peak RSS {r['peak_mb']:.0f} MB (<= 300: {'met' if r['peak_mb'] <= 300 else 'NOT met'})")


if __name__ == "__main__":
    main()
