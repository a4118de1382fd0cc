"""Open data benchmark: conditional polls (304) and full gzip feeds beside /healthz on the same 2-worker server in
the same run, the CPU of one snapshot rebuild, and the lag from a walk-in (what a gate entry writes) to the feed.

    python -m loadtests.bench_open_data                      # 20,000 lots, 10 s per phase, 2 rounds
    python -m loadtests.bench_open_data --lots 5000 --duration 5 --rounds 1 --lag-samples 5

Targets (issue 16): conditional polls answered 304 at >= 50 % of /healthz; full gzip GeoJSON feed >= 50
responses/s; rebuild CPU per 20,000 lots printed; p99 lag from a gate event to the feed <= 30 s; viewport (bbox)
search over ~1 km boxes at >= 0.8x point search (1 km) in the same run, and OGC items per second over the same
boxes (`--no-search` leaves these phases out).

The partner's quota is enforced as in production (rate limits on, a quota too large to be reached), so each
poll pays its key lookup and quota check. The lag is measured with the real clock: a walk-in row inserted for a
random lot, then the lot's bbox polled every 200 ms until its count drops.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import random
import statistics
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from core.accounts import create_partner
from core.context import build_context
from geo.feed_formats import geojson_collection
from geo.feed_snapshot import build_snapshot
from loadtests.bench_search import query_points, search_path
from loadtests.common import HEADER, Call, Result, drive, free_port, start_server, stop_server
from loadtests.fastclient import Connection
from loadtests.search_city import BENCH_SECRET, bench_settings, ensure_city

FEED = "/api/v1/open/lots"


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def partner_keys(dbname: str, n: int) -> list[str]:
    """One key per benchmark client: each has its own quota window, as real partners do (the `limits` moving window
    keeps an entry per hit, so one key shared by every client would make each check dearer than a partner's)."""
    ctx = build_context(bench_settings(dbname))
    try:
        async with ctx.engine.begin() as conn:
            return [(await create_partner(conn=conn, name=f"bench-{uuid.uuid4().hex[:6]}",
                                          quota="1000000/minute"))[1] for _ in range(n)]
    finally:
        await ctx.aclose()


async def rebuild_cost(dsn: str, repeats: int) -> dict[str, float]:
    """Wall and CPU seconds of this process per snapshot build (3 statements + records), and per GeoJSON render +
    gzip (done once per snapshot, on the first request)."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        now = datetime.now(UTC)
        snap = await build_snapshot(pool, now=now, previous=None, stale_after=timedelta(minutes=10),
                                    max_age=timedelta(minutes=1))
        walls, cpus = [], []
        for _ in range(repeats):
            w0, c0 = time.perf_counter(), time.process_time()
            snap = await build_snapshot(pool, now=datetime.now(UTC), previous=snap, stale_after=timedelta(minutes=10),
                                        max_age=timedelta(minutes=1))
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
        c0 = time.process_time()
        raw = orjson.dumps(geojson_collection(snap.lots))
        packed = gzip.compress(raw, compresslevel=6, mtime=0)
        render = time.process_time() - c0
        return {"lots": len(snap.lots), "wall": statistics.median(walls), "cpu": statistics.median(cpus),
                "render_cpu": render, "raw_bytes": len(raw), "gzip_bytes": len(packed)}
    finally:
        await pool.close()


def worker(port: int, path: str | list[str], headers: dict[str, str], expect: int, keys: list[str]) -> Any:
    """Closed-loop calls of one path, or of a random path of a list (written before the run); client i sends
    partner key i where the headers carry one."""
    async def make(i: int) -> Call:
        conn = Connection("127.0.0.1", port)
        mine = {**headers, "X-API-Key": keys[i]} if "X-API-Key" in headers else headers

        async def call(rng: random.Random) -> bool:
            status, _ = await conn.get(path if isinstance(path, str) else rng.choice(path), headers=mine)
            return status == expect

        return call

    return make


async def feed_lag(port: int, dsn: str, key: str, samples: int, timeout: float = 60.0) -> list[float]:
    """Seconds from a committed walk-in to the feed showing one spot fewer at that lot."""
    pg = await asyncpg.connect(dsn)
    conn = Connection("127.0.0.1", port)
    lags: list[float] = []
    rng = random.Random(7)
    try:
        lots = await pg.fetch("SELECT l.id, ST_Y(l.location::geometry) AS lat, ST_X(l.location::geometry) AS lng "
                              "FROM lots l WHERE l.capacity > 2 ORDER BY l.id LIMIT 2000")
        for lot in rng.sample(list(lots), samples):
            box = f"{lot['lng'] - 1e-5},{lot['lat'] - 1e-5},{lot['lng'] + 1e-5},{lot['lat'] + 1e-5}"

            async def available(lot_id: uuid.UUID = lot["id"], box: str = box) -> int | None:
                status, body = await conn.get(f"{FEED}?bbox={box}", headers={"X-API-Key": key})
                assert status == 200, status
                feats = [f for f in orjson.loads(body)["features"] if f["id"] == str(lot_id)]
                return feats[0]["properties"]["available"] if feats else None

            before = await available()
            now = datetime.now(UTC)
            spot = await pg.fetchval(
                "SELECT s.id FROM spots s WHERE s.lot_id = $1 AND s.status = 'in_service' AND NOT EXISTS ("
                " SELECT 1 FROM reservations r WHERE r.lot_id = s.lot_id AND r.spot_id = s.id"
                " AND r.status IN ('held','confirmed','active') AND r.period && tstzrange($2, $3, '[)')) LIMIT 1",
                lot["id"], now - timedelta(minutes=20), now + timedelta(hours=1))
            if before is None or spot is None:
                continue
            await pg.execute("INSERT INTO reservations (lot_id, kind, spot_id, vehicle_type, starts_at, ends_at, period,"
                             " status) SELECT $1, 'walk_in', $2, type, $3, $4, tstzrange($3, $4, '[)'), 'active'"
                             " FROM spots WHERE lot_id = $1 AND id = $2",
                             lot["id"], spot, now - timedelta(minutes=20), now + timedelta(hours=1))
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < timeout:
                if (await available()) == before - 1:
                    lags.append(time.perf_counter() - t0)
                    break
                await asyncio.sleep(0.2)
            else:
                lags.append(float("inf"))
            await pg.execute("DELETE FROM reservations WHERE lot_id = $1 AND spot_id = $2 AND kind = 'walk_in'",
                             lot["id"], spot)
    finally:
        await conn.close()
        await pg.close()
    return lags


async def run(args: argparse.Namespace, url: str) -> None:
    dbname = f"parkgrid_bench_open_data_{args.lots}"
    dsn = _dsn(url)
    cost = await rebuild_cost(dsn, args.rebuilds)
    print(f"snapshot of {cost['lots']:.0f} lots: rebuild {cost['wall'] * 1000:.0f} ms wall, "
          f"{cost['cpu'] * 1000:.0f} ms CPU in the worker (median of {args.rebuilds}); GeoJSON render + gzip "
          f"{cost['render_cpu'] * 1000:.0f} ms CPU once per snapshot; body {cost['raw_bytes'] / 1e6:.1f} MB, "
          f"gzip {cost['gzip_bytes'] / 1e6:.2f} MB", flush=True)
    keys = await partner_keys(dbname, max(args.concurrency, args.feed_concurrency))
    key = keys[0]
    port = free_port()
    proc = start_server(url, port, 2, {"PARKGRID_SECRET_KEY": BENCH_SECRET, "PARKGRID_RATE_LIMITS": "on",
                                       "PARKGRID_REDIS_PREFIX": f"bench-od-{uuid.uuid4().hex[:6]}"})
    try:
        # the ETag of the current snapshot (the same on both workers: a digest of the same data)
        req = urllib.request.Request(f"http://127.0.0.1:{port}{FEED}", headers={"X-API-Key": key,
                                                                                 "Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=30) as res:
            etag = res.headers["ETag"]
        phases: dict[str, tuple[Any, dict[str, str], int]] = {
            "/healthz": ("/healthz", {}, 200),
            "open/lots 304 (If-None-Match)": (FEED, {"X-API-Key": key, "If-None-Match": etag}, 304),
            "open/lots full gzip": (FEED, {"X-API-Key": key, "Accept-Encoding": "gzip"}, 200),
        }
        if args.search:
            points = query_points(args.lots, args.seed)
            # ~1 km boxes around the same points as the 1 km point searches
            boxes = [f"{lng - 0.0057:.6f},{lat - 0.0045:.6f},{lng + 0.0057:.6f},{lat + 0.0045:.6f}" for lat, lng in points]
            point_paths = [search_path(lat, lng, 1000, "index") for lat, lng in points]
            box_paths = [f"/api/v1/lots/search?bbox={b}&vehicle_type=regular&limit=20&prefilter=index" for b in boxes]
            sql_box_paths = [p.replace("prefilter=index", "prefilter=st_dwithin") for p in box_paths]
            ogc_paths = [f"/ogc/collections/lots/items?bbox={b}&limit=20" for b in boxes]
            phases.update({
                "search point 1 km (index)": (point_paths, {}, 200),
                "search bbox ~1 km (index)": (box_paths, {}, 200),
                "search bbox ~1 km (SQL)": (sql_box_paths, {}, 200),
                "OGC items bbox ~1 km": (ogc_paths, {"X-API-Key": key}, 200),
            })
        totals = {name: Result(name) for name in phases}
        for r in range(args.rounds):
            print(f"round {r + 1}\n{HEADER}", flush=True)
            for name, (path, headers, expect) in phases.items():
                conc = args.feed_concurrency if "full" in name else args.concurrency
                res = await drive(name, concurrency=conc, duration=args.duration, warmup=1.0,
                                  make_worker=worker(port, path, headers, expect, keys))
                print(res.line(), flush=True)
                t = totals[name]
                t.latencies += res.latencies
                t.errors += res.errors
                t.seconds += res.seconds
        base = totals["/healthz"].rps
        print(f"\nall rounds\n{HEADER}")
        for t in totals.values():
            print(t.line())
        print(f"304 polls / healthz = {totals['open/lots 304 (If-None-Match)'].rps / base:.2f} (target >= 0.50); "
              f"full gzip feed {totals['open/lots full gzip'].rps:.0f} responses/s (target >= 50)")
        if args.search:
            point = totals["search point 1 km (index)"].rps
            print(f"bbox search (index) / point search = {totals['search bbox ~1 km (index)'].rps / point:.2f} "
                  f"(target >= 0.8); bbox SQL / point = {totals['search bbox ~1 km (SQL)'].rps / point:.2f}; "
                  f"point search / healthz = {point / base:.2f}; OGC items "
                  f"{totals['OGC items bbox ~1 km'].rps:.0f} req/s")
        if args.lag_samples:
            lags = await feed_lag(port, dsn, key, args.lag_samples)
            finite = sorted(lags)
            p99 = finite[min(len(finite) - 1, int(0.99 * len(finite)))] if finite else float("nan")
            print(f"walk-in -> feed lag over {len(lags)} samples: median {statistics.median(finite):.1f} s, "
                  f"p99 {p99:.1f} s, max {finite[-1]:.1f} s (target p99 <= 30 s)")
    finally:
        stop_server(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lots", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--feed-concurrency", type=int, default=8)
    ap.add_argument("--rebuilds", type=int, default=5)
    ap.add_argument("--lag-samples", type=int, default=20)
    ap.add_argument("--no-search", dest="search", action="store_false", help="leave out the search and OGC phases")
    args = ap.parse_args()
    url = ensure_city(dbname=f"parkgrid_bench_open_data_{args.lots}", lots=args.lots, seed=args.seed)
    asyncio.run(run(args, url))


if __name__ == "__main__":
    main()
