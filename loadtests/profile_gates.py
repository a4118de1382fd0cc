"""CPU per gate decision, in process: the real app (create_app) driven over ASGI with bench_gates' seed and
event mix, one request at a time, so the process CPU between a request and its answer is that decision's.

    python -m loadtests.profile_gates                      # 2,000 events after 200 warm-up, top 25 functions
    python -m loadtests.profile_gates --events 4000 --top 40

Per kind of event it prints the API process's CPU ms per decision (and how much of it is inside
controllers.gates.decide, the rest being HTTP, validation and authentication, and inside the booking service:
the walk-in hold, check-in/check-out), the statements sent to PostgreSQL (BEGIN and COMMIT count)
and PostgreSQL's own backend CPU (from /proc, averaged over many decisions: the clock ticks are 10 ms).
GET /healthz is measured the same way as the floor. Every other event runs under cProfile (kept out of the
CPU figures); the list of the top functions by own time follows.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import redis
from asyncpg import prepared_stmt

from booking import holds, transitions
from controllers import gates
from loadtests.bench_gates import _fresh_database, _seed, plan_events
from loadtests.common import asgi_call
from loadtests.search_city import BENCH_SECRET, PG_HOST

ROOT = Path(__file__).resolve().parent.parent
DBNAME = "parkgrid_bench_gates_profile"  # bench_gates' seed in a database of its own (a bench may be running)


@dataclass
class Tally:
    n: int = 0
    cpu: float = 0.0
    wall: float = 0.0
    statements: int = 0
    pg_ticks: int = 0
    inner: dict[str, float] = field(default_factory=lambda: defaultdict(float))


class Meter:
    """Counts statements sent through asyncpg (SQLAlchemy's and the raw pool's) and CPU inside chosen functions."""

    def __init__(self) -> None:
        self.statements = 0
        self.inner: dict[str, float] = defaultdict(float)

    def count(self, owner: Any, name: str, simple_only: bool = False) -> None:
        original = getattr(owner, name)

        @wraps(original)
        async def counted(*args: Any, **kwargs: Any) -> Any:
            if not simple_only or len(args) == 2:  # Connection.execute(query) without arguments: a simple query
                self.statements += 1
            return await original(*args, **kwargs)

        setattr(owner, name, counted)

    def time(self, owner: Any, name: str, label: str) -> None:
        original: Callable[..., Awaitable[Any]] = getattr(owner, name)

        @wraps(original)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.process_time()
            try:
                return await original(*args, **kwargs)
            finally:
                self.inner[label] += time.process_time() - t0

        setattr(owner, name, timed)


def kind_of(entry: bool, body: dict[str, Any], seen: set[str]) -> str:
    """What bench_gates.plan_events made this event: a repeat, or entry/exit of which plate, unsure, with a token."""
    if body["event_id"] in seen:
        return "repeated event_id"
    seen.add(body["event_id"])
    who = {"R": "reservation", "P": "pass", "W": "walk-in"}[body["plate"][0]]
    if not entry:
        return f"exit {who}" + (" + token" if "payment_token" in body else "")
    return f"entry {who}" + (" unsure" if body["plate_confidence"] < 0.8 else "")


def pg_ticks(pids: list[int]) -> int:
    """utime + stime of these PostgreSQL backends, in clock ticks."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def backend_pids() -> list[int]:
    with psycopg.connect(f"{PG_HOST}/postgres", autocommit=True) as admin:
        return [r[0] for r in admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (DBNAME,))]


async def run(args: argparse.Namespace, url: str) -> None:
    from api.app import create_app
    from core.context import build_context
    from core.settings import Settings

    prefix = f"profile-gates-{time.time_ns()}"
    n = args.events + args.warmup
    per_lot = max(10, int(n * 0.35 / args.lots) + 10)
    lots = await _seed(url, prefix, args.lots, args.spots, min(per_lot, args.spots // 2), 50)
    events = plan_events(lots, n, args.seed)
    settings = Settings(_env_file=None, secret_key=BENCH_SECRET, database_url=url, rate_limits="off",  # type: ignore[call-arg,arg-type]
                        redis_prefix=prefix, log_level="warning")
    ctx = build_context(settings)
    app = create_app(settings, context=ctx)

    meter = Meter()
    meter.count(asyncpg.Connection, "execute", simple_only=True)
    meter.count(asyncpg.Connection, "_do_execute")
    meter.count(prepared_stmt.PreparedStatement, "_PreparedStatement__bind_execute")
    meter.time(gates, "decide", "decide")
    meter.time(holds, "hold", "hold")
    meter.time(transitions, "check_in", "check-in/out")
    meter.time(transitions, "check_out", "check-in/out")

    tallies: dict[str, Tally] = defaultdict(Tally)
    profiler = cProfile.Profile(time.process_time)  # CPU, not wall time: the machine is shared
    seen: set[str] = set()
    decisions: dict[str, int] = defaultdict(int)
    pids: list[int] = []
    try:
        async with app.router.lifespan_context(app):
            for i, (lot, path, body) in enumerate(events):
                if i == args.warmup:
                    pids = backend_pids()
                kind = kind_of(path.endswith(f"{lot.entry}/events"), body, seen)
                payload, headers = json.dumps(body).encode(), {"X-Device-Key": lot.key}
                profiled = i >= args.warmup and i % 2 == 1
                for name, method, target, data, hdrs in (
                        (kind, "POST", path, payload, headers), ("GET /healthz", "GET", "/healthz", b"", {})):
                    meter.statements, meter.inner = 0, defaultdict(float)
                    ticks = pg_ticks(pids)
                    if profiled:
                        profiler.enable()
                    w0, c0 = time.perf_counter(), time.process_time()
                    status, answer = await asgi_call(app, method, target, data, hdrs)
                    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
                    if profiled:
                        profiler.disable()
                    if status != 200:
                        raise SystemExit(f"{method} {target} answered {status}: {answer[:300]!r}")
                    if i < args.warmup or profiled:
                        continue
                    t = tallies[name]
                    t.n += 1
                    t.cpu += cpu
                    t.wall += wall
                    t.statements += meter.statements
                    t.pg_ticks += pg_ticks(pids) - ticks
                    for label, seconds in meter.inner.items():
                        t.inner[label] += seconds
                    if method == "POST":
                        decisions[json.loads(answer)["decision"]] += 1
    finally:
        await ctx.aclose()
        client = redis.Redis()
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()

    report(tallies, decisions, profiler, args.top)


def report(tallies: dict[str, Tally], decisions: dict[str, int], profiler: cProfile.Profile, top: int) -> None:
    tick_ms = 1000 / 100  # Linux USER_HZ
    print(f"{'kind':<26} {'n':>5} {'CPU ms':>7} {'wall ms':>8} {'stmts':>6} {'PG ms':>6} {'decide':>7} "
          f"{'hold ms':>8} {'in/out ms':>9}")
    gate = Tally()
    for name in sorted(tallies, key=lambda k: (k == "GET /healthz", k)):
        t = tallies[name]
        if name != "GET /healthz":
            gate.n += t.n
            gate.cpu += t.cpu
            gate.wall += t.wall
            gate.statements += t.statements
            gate.pg_ticks += t.pg_ticks
            for label, s in t.inner.items():
                gate.inner[label] += s
        _line(name, t, tick_ms)
    _line("all gate events", gate, tick_ms)
    print("decisions:", dict(decisions))
    stats = pstats.Stats(profiler)
    print(f"\ncProfile of {gate.n} gate events and as many /healthz, by own CPU time (top {top}):")
    stats.sort_stats("tottime").print_stats(top)
    print(f"The project's own functions by cumulative CPU time (top {top}):")
    stats.sort_stats("cumulative").print_stats(str(ROOT), top)


def _line(name: str, t: Tally, tick_ms: float) -> None:
    n = max(t.n, 1)
    print(f"{name:<26} {t.n:>5} {t.cpu / n * 1000:>7.2f} {t.wall / n * 1000:>8.2f} {t.statements / n:>6.1f} "
          f"{t.pg_ticks * tick_ms / n:>6.2f} {t.inner.get('decide', 0) / n * 1000:>7.2f} "
          f"{t.inner.get('hold', 0) / n * 1000:>8.2f} "
          f"{t.inner.get('check-in/out', 0) / n * 1000:>9.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2000, help="gate events measured (half of them profiled)")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--lots", type=int, default=10)
    ap.add_argument("--spots", type=int, default=500)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--top", type=int, default=25)
    asyncio.run(run(ap.parse_args(), _fresh_database(DBNAME)))


if __name__ == "__main__":
    main()
