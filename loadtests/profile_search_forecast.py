"""Search CPU with and without the items' `forecast`, in one process, in alternating rounds (an A/B).

    PARKGRID_DATABASE_URL=... python -m loadtests.profile_search_forecast [--n 1000 --rounds 4 --radius 1500]

Runs the real app over ASGI against the configured database (a simulated city with forecasts:
`parkgrid simulate` then `parkgrid forecast train`), on a ManualClock at the forecasts' generation time moved
1/--rate s per request, as profile_search does. Round A searches with the process's forecast cache loaded (every
item carries its forecast); round B hands search no forecasts at all (`forecasts=None`, as before the feature;
every item's forecast is null). Prints
CPU per search of each, /healthz as the floor measured in the same run, and B -> A in percent.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from analytics.forecast import forecast_cache
from api.app import create_app
from cli.common import settings_or_exit
from core.clock import ManualClock
from loadtests.bench_search import search_path
from loadtests.common import asgi_call


async def run(args: argparse.Namespace) -> None:
    settings = settings_or_exit().model_copy(update={"log_level": "warning", "rate_limits": "off"})
    clock = ManualClock()
    app = create_app(settings, clock=clock, preload=True)
    ctx = app.state.ctx
    async with ctx.engine.connect() as conn:
        generated = await conn.scalar(text("SELECT max(generated_at) FROM forecasts"))
        centre = (await conn.execute(text(
            "SELECT avg(ST_Y(location::geometry)), avg(ST_X(location::geometry)) FROM lots"))).one()
    if generated is None:
        raise SystemExit("no forecasts: run `parkgrid simulate` and `parkgrid forecast train` first")
    clock.set(generated)
    rng = random.Random(1)
    step = timedelta(seconds=1 / args.rate)

    def path() -> str:
        clock.advance(step)
        lat, lng = float(centre[0]) + rng.uniform(-0.004, 0.004), float(centre[1]) + rng.uniform(-0.004, 0.004)
        return search_path(lat, lng, args.radius, "index")

    async def measure(paths: Any) -> tuple[float, int]:
        cpu = time.process_time()
        body = b""
        for _ in range(args.n):
            status, body = await asgi_call(app, "GET", paths(), b"", {"host": "bench"})
            assert status == 200, body[:500]
        return (time.process_time() - cpu) / args.n * 1000, body.count(b'"occupancy_at_start"')

    cache = forecast_cache(ctx)

    class Off:  # round B: search_lots gets forecasts=None
        page = None

        async def refresh_if_due(self) -> None:
            return None

    import api.routers.search as search_router

    real, off = search_router.forecast_cache, Off()
    async with app.router.lifespan_context(app):
        for _ in range(args.warmup):
            await asgi_call(app, "GET", path(), b"", {"host": "bench"})
        loaded = (dict(cache.lots), cache.start, cache.version, cache._start_s)
        totals: dict[str, list[float]] = {"healthz": [], "A forecast": [], "B none": []}
        for r in range(args.rounds):
            totals["healthz"].append((await measure(lambda: "/healthz"))[0])
            search_router.forecast_cache = real  # type: ignore[assignment]
            cache.lots, cache.start, cache.version, cache._start_s = loaded[0], loaded[1], loaded[2], loaded[3]
            a, with_forecast = await measure(path)
            search_router.forecast_cache = lambda _ctx: off  # type: ignore[assignment]
            b, without = await measure(path)
            totals["A forecast"].append(a)
            totals["B none"].append(b)
            print(f"round {r + 1}: healthz {totals['healthz'][-1]:.3f} ms, search with forecast {a:.3f} ms "
                  f"({with_forecast} items carry one in the last answer), without {b:.3f} ms ({without}) CPU per request")
    import statistics

    ratios = sorted(a / b for a, b in zip(totals["A forecast"], totals["B none"], strict=True))
    print(f"median of the rounds' with/without ratios: {(statistics.median(ratios) - 1) * 100:+.1f} %")
    mean = {k: sum(v) / len(v) for k, v in totals.items()}
    print(f"mean CPU per request over {args.rounds} rounds of {args.n}: healthz {mean['healthz']:.3f} ms, "
          f"search without forecast {mean['B none']:.3f} ms, with forecast {mean['A forecast']:.3f} ms: "
          f"{(mean['A forecast'] / mean['B none'] - 1) * 100:+.1f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--radius", type=int, default=1500)
    ap.add_argument("--rate", type=float, default=1700.0)
    ap.add_argument("--warmup", type=int, default=2000)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
