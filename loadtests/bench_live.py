"""Live stream fan-out benchmark: 200 Server-Sent Events clients on one lot's GET /api/v1/lots/{id}/live against a
2-worker `parkgrid serve`, while gate events are posted: how long from posting a gate event until each client has
it, beside the gate decision's own latency and /healthz in the same run.

    python -m loadtests.bench_live                        # 200 clients, 60 gate events, one every 250 ms
    python -m loadtests.bench_live --clients 400 --events 100

Target (issue 19): a gate event reaches all clients within 1 s at p95. The clients run in this process (httpx),
so they share the machine's 2 cores with the server; the client's own CPU is printed too. The same gate entries
are first posted with nobody listening, so the table shows what 200 viewers cost the gate path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field

import httpx

from loadtests.bench_gates import _fresh_database
from loadtests.bench_search import free_port, start_search_server, stop_server
from loadtests.search_city import BENCH_SECRET

DBNAME = "parkgrid_bench_live"


@dataclass
class Seeded:
    lot_id: uuid.UUID
    entry: uuid.UUID
    device_key: str
    bearer: str


async def _seed(url: str, prefix: str, spots: int) -> Seeded:
    from sqlalchemy import text

    from core.accounts import create_device, create_user, ensure_organisation
    from core.context import build_context
    from core.security import create_access_token
    from core.settings import Settings
    from tests.factories import insert_lot

    settings = Settings(_env_file=None, secret_key=BENCH_SECRET, database_url=url, rate_limits="off",  # type: ignore[call-arg]
                        redis_prefix=prefix)
    ctx = build_context(settings)
    try:
        async with ctx.engine.begin() as conn:
            org = await ensure_organisation(conn=conn, name="bench-live")
            lot = await insert_lot(conn, organisation_id=org, name="Live bench", spots={"regular": spots})
            entry = (await conn.execute(text("SELECT id FROM gates WHERE lot_id = :l AND direction = 'entry'"),
                                        {"l": lot})).scalar_one()
            _, key = await create_device(conn=conn, lot_id=lot)
            user = await create_user(conn=conn, email="bench-live@example.com", password="bench password 123",
                                     role="operator", organisation_id=org)
        bearer = create_access_token(secret=settings.secret_bytes, user_id=user.id, role="operator",
                                     organisation_id=org, issuer=settings.jwt_issuer, audience=settings.jwt_audience,
                                     ttl_seconds=3600, now=ctx.clock.now())
    finally:
        await ctx.aclose()
    return Seeded(lot, entry, key, bearer)


@dataclass
class Client:
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    got: dict[str, float] = field(default_factory=dict)  # gate event_id -> perf_counter when received
    error: str | None = None


async def listen(http: httpx.AsyncClient, url: str, headers: dict[str, str], client: Client) -> None:
    try:
        async with http.stream("GET", url, headers=headers) as res:
            if res.status_code != 200:
                client.error = f"HTTP {res.status_code}"
                client.ready.set()
                return
            kind = ""
            async for line in res.aiter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:") and kind == "gate":
                    client.got[json.loads(line[5:])["event_id"]] = time.perf_counter()
                elif line.startswith("data:") and kind == "ready":
                    client.ready.set()
    except (httpx.HTTPError, asyncio.CancelledError) as exc:
        if not isinstance(exc, asyncio.CancelledError):
            client.error = type(exc).__name__
        client.ready.set()


def pct(data: list[float], q: float) -> float:
    s = sorted(data)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000 if s else float("nan")


def row(name: str, data: list[float]) -> str:
    mean = statistics.fmean(data) * 1000 if data else float("nan")
    return (f"{name:<34} {len(data):>7} {pct(data, 0.5):>8.1f} {pct(data, 0.95):>8.1f} {pct(data, 0.99):>8.1f}"
            f" {max(data) * 1000 if data else float('nan'):>8.1f} {mean:>8.1f}")


async def post_events(http: httpx.AsyncClient, seeded: Seeded, events: int, interval: float, tag: str
                      ) -> tuple[dict[str, float], list[float], list[float]]:
    """Post `events` gate entries `interval` apart, each followed by a /healthz; (sent times, gate, healthz)."""
    sent: dict[str, float] = {}
    gate_lat: list[float] = []
    health_lat: list[float] = []
    for i in range(events):
        event_id = f"bench-{tag}-{uuid.uuid4().hex[:12]}"
        body = {"event_id": event_id, "sequence": i + 1,
                "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "plate": f"{tag}{i:04d}", "plate_confidence": 0.97}
        t0 = time.perf_counter()
        sent[event_id] = t0
        res = await http.post(f"/api/v1/gates/{seeded.entry}/events", json=body,
                              headers={"X-Device-Key": seeded.device_key})
        gate_lat.append(time.perf_counter() - t0)
        if res.status_code != 200:
            print("gate event failed:", res.status_code, res.text[:200])
        t1 = time.perf_counter()
        await http.get("/healthz")
        health_lat.append(time.perf_counter() - t1)
        await asyncio.sleep(max(0.0, interval - (time.perf_counter() - t0)))
    return sent, gate_lat, health_lat


async def run(port: int, seeded: Seeded, clients: int, events: int, interval: float, baseline: int) -> int:
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/api/v1/lots/{seeded.lot_id}/live"
    auth = {"Authorization": f"Bearer {seeded.bearer}"}
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None), limits=limits) as streams, \
            httpx.AsyncClient(base_url=base, timeout=10) as http:
        # phase 1: nobody listens (the gate path appends to the log, recomputes nothing)
        _, quiet_gate, quiet_health = await post_events(http, seeded, baseline, interval, "QUIET")
        listeners = [Client() for _ in range(clients)]
        tasks = [asyncio.create_task(listen(streams, url, auth, c)) for c in listeners]
        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in listeners)), timeout=60)
        failed = [c.error for c in listeners if c.error]
        print(f"{clients} clients connected in {time.perf_counter() - started:.1f} s; refused: {len(failed)}"
              f" {failed[:3]}", flush=True)
        await asyncio.sleep(1.0)  # let the first occupancy/alerts refresh settle
        cpu0 = time.process_time()
        sent, gate_lat, health_lat = await post_events(http, seeded, events, interval, "LIVE")
        await asyncio.sleep(2.0)  # stragglers
        client_cpu = time.process_time() - cpu0
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    fanout = [c.got[e] - t0 for c in listeners for e, t0 in sent.items() if e in c.got]
    expected = len(listeners) * len(sent)
    print(f"{'series':<34} {'n':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'mean ms':>8}")
    print(row("no viewers: gate decision", quiet_gate))
    print(row("no viewers: /healthz", quiet_health))
    print(row(f"{clients} viewers: gate decision", gate_lat))
    print(row(f"{clients} viewers: /healthz", health_lat))
    print(row("gate event -> every SSE client", fanout))
    print(f"delivered {len(fanout)} of {expected} ({100 * len(fanout) / max(expected, 1):.2f} %);"
          f" client CPU {client_cpu:.1f} s over {events * interval:.0f} s")
    met = len(fanout) == expected and pct(fanout, 0.95) < 1000
    print(f"target: every client gets every gate event, p95 < 1 s: {'met' if met else 'NOT met'}")
    return 0 if met else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--events", type=int, default=60)
    ap.add_argument("--interval", type=float, default=0.25, help="seconds between gate events")
    ap.add_argument("--baseline", type=int, default=40, help="gate events posted first, with nobody listening")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--spots", type=int, default=500)
    args = ap.parse_args()
    url = _fresh_database(DBNAME)
    port = free_port()
    seeded = asyncio.run(_seed(url, f"bench-search-{port}", args.spots))
    print(f"live benchmark: {args.clients} SSE clients on one lot, {args.events} gate entries every "
          f"{args.interval * 1000:.0f} ms; {args.workers} server workers; {os.cpu_count()} CPUs", flush=True)
    proc = start_search_server(url, port, args.workers)
    try:
        return asyncio.run(run(port, seeded, args.clients, args.events, args.interval, args.baseline))
    finally:
        stop_server(proc)


if __name__ == "__main__":
    sys.exit(main())
