"""Walking-time search beside plain point search, in one run, on a city-sized pedestrian network.

    python -m loadtests.bench_walk                       # 2,000 lots, a 24 x 24 km street grid (~460,000 edges)
    python -m loadtests.bench_walk --duration 20 --step 25

Its own database (parkgrid_bench_walk): the synthetic city of `parkgrid seed demo` and a street grid over it
(nodes every --step metres, one edge per block side: the shape an imported extract has after
`parkgrid network import`), lots joined at their nearest node, 500 destinations. Then, against
`parkgrid serve --workers 2`, alternating phases: plain point search (1 km, the fast lane) and destination
searches (`destination_id`, default 1.5 km maximum walk), and the walking-cost query alone over asyncpg. A
destination's first search routes its walks (one pgr_dijkstraCost) and remembers them for the network version;
the first phase measures that path alone, over destinations never searched before.

Targets (issue 23): destination searches p99 <= 50 ms and at least 0.3x the rate of point search.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlencode

import asyncpg

from geo.seed import CITY_CENTRE, plan_city
from geo.walk import DEFAULT_MAX_WALK_M
from geo.walknet import iter_grid
from loadtests.common import HEADER, Call, Result, drive, free_port, start_server, stop_server
from loadtests.fastclient import Connection
from loadtests.search_city import BENCH_SECRET, database_url, ensure_city

DBNAME = "parkgrid_bench_walk"
LOTS, SEED, DESTINATIONS = 2000, 7, 500


async def build_network(url: str, *, size_m: float, step_m: float) -> tuple[int, int]:
    """A street grid centred on the city (once per database); returns (nodes, edges)."""
    pg = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        have = await pg.fetchrow("SELECT nodes, edges FROM walk_areas WHERE name = $1", f"grid-{size_m}-{step_m}")
        if have:
            return have["nodes"], have["edges"]
        await pg.execute("TRUNCATE walk_areas, destinations CASCADE")
        n = int(size_m // step_m) + 1
        lat0 = CITY_CENTRE[0] - size_m / 2 / 111_320.0
        lng0 = CITY_CENTRE[1] - size_m / 2 / (111_320.0 * math.cos(math.radians(CITY_CENTRE[0])))
        nodes = list(iter_grid(west=lng0, south=lat0, rows=n, cols=n, step_m=step_m))
        edges = [(i, i + 1) for i in range(1, n * n + 1) if i % n] + [(i, i + n) for i in range(1, n * n - n + 1)]
        area = uuid.uuid4()
        west, south, east, north = nodes[0][1], nodes[0][2], nodes[-1][1], nodes[-1][2]
        async with pg.transaction():
            await pg.execute("INSERT INTO walk_areas (id, name, bbox, nodes, edges, imported_at) VALUES "
                             "($1, $2, ST_MakeEnvelope($3, $4, $5, $6, 4326), $7, $8, $9)",
                             area, f"grid-{size_m}-{step_m}", west, south, east, north, len(nodes), len(edges),
                             datetime.now(UTC))
            await pg.execute("CREATE TEMP TABLE gn (id bigint, lng float8, lat float8) ON COMMIT DROP;"
                             "CREATE TEMP TABLE ge (a bigint, b bigint, ax float8, ay float8, bx float8, by float8)"
                             " ON COMMIT DROP")
            at = {i: (x, y) for i, x, y in nodes}
            await pg.copy_records_to_table("gn", records=nodes)
            await pg.copy_records_to_table("ge", records=((a, b, *at[a], *at[b]) for a, b in edges))
            await pg.execute("INSERT INTO walk_nodes (id, area_id, geom) "
                             "SELECT id, $1, ST_SetSRID(ST_MakePoint(lng, lat), 4326) FROM gn", area)
            await pg.execute(
                "INSERT INTO walk_edges (area_id, source, target, cost, reverse_cost, geom) "
                "SELECT $1, a, b, $2, $2, ST_SetSRID(ST_MakeLine(ST_MakePoint(ax, ay), ST_MakePoint(bx, by)), 4326)"
                " FROM ge", area, step_m)
            from geo.walk_queries import JOIN_LOTS
            await pg.fetchval(JOIN_LOTS, area, 150.0)
            rng = random.Random(SEED)
            plans = plan_city(lots=LOTS, seed=SEED)
            await pg.executemany(
                "INSERT INTO destinations (name, kind, location, source, area_id) "
                "VALUES ($1, 'venue', ST_SetSRID(ST_MakePoint($3, $2), 4326)::geography, 'osm', $4)",
                [(f"Venue {i}", p.lat + rng.uniform(-0.004, 0.004), p.lng + rng.uniform(-0.005, 0.005), area)
                 for i, p in enumerate(rng.choices(plans, k=DESTINATIONS))])
        await pg.execute("ANALYZE walk_nodes; ANALYZE walk_edges; ANALYZE lot_walk_nodes; ANALYZE destinations")
        return len(nodes), len(edges)
    finally:
        await pg.close()


async def run(args: argparse.Namespace) -> int:
    url = database_url(DBNAME)
    raw_url = url.replace("postgresql+asyncpg", "postgresql")
    started = time.perf_counter()
    nodes, edges = await build_network(url, size_m=args.size, step_m=args.step)
    print(f"network: {nodes:,} nodes, {edges:,} edges (grid every {args.step:.0f} m over {args.size / 1000:.0f} km); "
          f"ready in {time.perf_counter() - started:.1f} s", flush=True)
    pg = await asyncpg.connect(raw_url)
    await pg.execute("TRUNCATE destination_walks")  # a run's first phase routes every destination afresh
    dests = [(r["id"], r["lat"], r["lng"]) for r in await pg.fetch(
        "SELECT id, ST_Y(location::geometry) AS lat, ST_X(location::geometry) AS lng FROM destinations")]
    port = free_port()
    server = start_server(url, port, 2, {"PARKGRID_SECRET_KEY": BENCH_SECRET,
                                         "PARKGRID_REDIS_PREFIX": f"bench-walk-{port}"})
    results: dict[str, list[Result]] = {"point search (1 km)": [], "destination search (walk)": []}
    unseen = list(dests)
    random.Random(3).shuffle(unseen)
    try:
        def maker(kind: str):  # type: ignore[no-untyped-def]
            async def make(i: int) -> Call:
                conn = Connection("127.0.0.1", port)

                async def call(rng: random.Random) -> bool:
                    did, lat, lng = (unseen.pop() if kind.startswith("first") and unseen else rng.choice(dests))
                    if kind.startswith("point"):
                        path = "/api/v1/lots/search?" + urlencode({"lat": f"{lat:.6f}", "lng": f"{lng:.6f}",
                                                                   "radius_m": 1000, "vehicle_type": "regular"})
                    else:
                        path = "/api/v1/lots/search?" + urlencode({"destination_id": str(did), "vehicle_type": "regular"})
                    status, body = await conn.get(path)
                    return status == 200 and (kind.startswith("point") or b'"walk":{"meters"' in body
                                              or b'"items":[]' in body)
                return call
            return make

        # each destination searched for the first time: its walks are routed (one pgr_dijkstraCost) and remembered
        first = await drive("first search of a destination", concurrency=args.concurrency, duration=args.duration,
                            warmup=0.0, make_worker=maker("first search of a destination"))
        for _ in range(args.rounds):
            for name in results:
                results[name].append(await drive(name, concurrency=args.concurrency, duration=args.duration,
                                                 warmup=2.0, make_worker=maker(name)))
        # the walking-cost query alone (what one destination search adds), over asyncpg from one client
        from geo.walk import walking_times
        lots = {r["did"]: r["lots"] for r in await pg.fetch(
            "SELECT d.id AS did, array_agg(l.id) AS lots FROM destinations d JOIN lots l "
            "ON ST_DWithin(l.location, d.location, $1) GROUP BY d.id", DEFAULT_MAX_WALK_M)}
        rng, sql_lat = random.Random(1), []
        for _ in range(300):
            did, lat, lng = rng.choice(dests)
            t0 = time.perf_counter()
            await walking_times(pg, lat=lat, lng=lng, lot_ids=lots.get(did, [])[:100], max_walk_m=DEFAULT_MAX_WALK_M)
            sql_lat.append(time.perf_counter() - t0)
    finally:
        stop_server(server)
        await pg.close()

    print(HEADER)
    print(first.line() + f"   ({len(dests) - len(unseen)} of {len(dests)} destinations routed)")
    for rounds in results.values():
        for r in rounds:
            print(r.line())
    point = statistics.fmean(r.rps for r in results["point search (1 km)"])
    walk = statistics.fmean(r.rps for r in results["destination search (walk)"])
    p99 = max(r.pct(0.99) for r in results["destination search (walk)"])
    sql_lat.sort()
    print(f"walking-cost query alone (asyncpg, one client, 300 destinations): p50 {sql_lat[150] * 1000:.1f} ms, "
          f"p99 {sql_lat[296] * 1000:.1f} ms")
    print(f"destination search {walk:.0f} req/s beside point search {point:.0f} req/s = {walk / point:.2f}x "
          f"(target >= 0.3x); worst round's p99 {p99:.1f} ms (target <= 50 ms); a destination's first search "
          f"p50 {first.pct(0.5):.1f} ms, p99 {first.pct(0.99):.1f} ms")
    errors = sum(r.errors for rounds in results.values() for r in rounds)
    return 1 if errors else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--size", type=float, default=24_000.0, help="metres on a side of the street grid")
    ap.add_argument("--step", type=float, default=50.0, help="metres between grid nodes (a city block's side)")
    args = ap.parse_args()
    ensure_city(dbname=DBNAME, lots=LOTS, seed=SEED)
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
