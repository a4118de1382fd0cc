"""CPU per search in process: the real app (routing, validation, search, quotes, serialisation) driven over ASGI
against the benchmark city, without HTTP sockets or a load generator sharing the cores.

    python -m loadtests.profile_search                      # the default prefilter (index), 2,000 searches
    python -m loadtests.profile_search --prefilter st_dwithin --n 500 --top 30

Prints CPU ms per search (time.process_time of this process: PostgreSQL's and Redis's own CPU are not in it)
and a cProfile top list by cumulative time. The app runs on a ManualClock moved 1/--rate s per request, so the
per-worker caches (lot index refresh, availability counts, signed quotes) see the hit rates of one worker
serving --rate searches per second (the benchmark's target is about 1,700 per worker).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import random
import time
from datetime import timedelta

from api.app import create_app
from api.routers import search as search_router
from core.clock import ManualClock
from loadtests.bench_search import query_points, search_path
from loadtests.common import asgi_call
from loadtests.search_city import bench_settings, ensure_city


async def run(args: argparse.Namespace) -> None:
    clock = ManualClock()
    app = create_app(bench_settings(f"parkgrid_bench_search_{args.lots}").model_copy(update={"log_level": "warning"}),
                     clock=clock, preload=True)  # as api.asgi.factory builds a server worker's app
    points = query_points(args.lots, args.seed)
    rng = random.Random(1)
    step = timedelta(seconds=1 / args.rate)

    def path() -> str:
        clock.advance(step)
        return search_path(*rng.choice(points), args.radius)

    search_router.PREFILTER = args.prefilter  # the benchmark's own baseline: not a public parameter
    async with app.router.lifespan_context(app):
        for _ in range(args.warmup):  # pools, prepared statements, caches
            status, body = await asgi_call(app, "GET", path(), b"", {"host": "bench"})
            assert status == 200, body[:500]
        for label, paths in (("healthz", lambda: "/healthz"), (f"search prefilter={args.prefilter}", path)):
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(args.n):
                status, body = await asgi_call(app, "GET", paths(), b"", {"host": "bench"})
                assert status == 200, body[:500]
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(f"{label}: {cpu / args.n * 1000:.3f} ms CPU, {wall / args.n * 1000:.3f} ms wall per request "
                  f"({args.n} requests, last response {len(body)} bytes)")
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.n):
            await asgi_call(app, "GET", path(), b"", {"host": "bench"})
        profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lots", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--prefilter", default="index", choices=("index", "knn", "h3", "st_dwithin"))
    ap.add_argument("--radius", type=int, default=1000)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=1700.0, help="searches per second one worker is assumed to serve")
    # enough searches that most lots shown have their signed quote memoised, as in a worker's steady state
    ap.add_argument("--warmup", type=int, default=6000)
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    ensure_city(dbname=f"parkgrid_bench_search_{args.lots}", lots=args.lots, seed=args.seed)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
