"""Gate decision benchmark: POST /api/v1/gates/{gate_id}/events at a fixed arrival rate (open loop), side by side
with GET /healthz at the same rate in the same run, against a 2-worker server on its own database.

    python -m loadtests.bench_gates                          # 200 events/s + 200 healthz/s for 20 s
    python -m loadtests.bench_gates --rate 300 --duration 30

The event mix is a day at the gates of 10 lots (500 regular spots each, the sample rate card): entries by
plate for confirmed reservations (~35%), monthly passes (~10%) and walk-ins (rest), exits of cars already in
(half with a pay-terminal token), ~5% repeated event_ids, ~3% low-confidence plates. Latency is measured by
the client (send to last byte), including HTTP; the target (issue 7) is gate p99 < 50 ms on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import text

from loadtests.bench_search import free_port, start_search_server, stop_server
from loadtests.search_city import BENCH_SECRET, PG_HOST, database_url

DBNAME = "parkgrid_bench_gates"


@dataclass
class Series:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    late: int = 0  # requests that started > 10 ms after their scheduled time (the client fell behind)

    def pct(self, q: float) -> float:
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000 if data else float("nan")

    def line(self, seconds: float) -> str:
        mean = statistics.fmean(self.latencies) * 1000 if self.latencies else float("nan")
        return (f"{self.name:<28} {len(self.latencies) / seconds:>8.0f} {self.pct(0.5):>8.1f} {self.pct(0.99):>8.1f} "
                f"{self.pct(0.999):>8.1f} {mean:>8.1f} {len(self.latencies):>7} {self.errors:>6} {self.late:>5}")


HEADER = (f"{'series':<28} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>8} {'mean ms':>8} {'n':>7} "
          f"{'errors':>6} {'late':>5}")


class Http:
    """A keep-alive HTTP/1.1 client on raw streams (GET and JSON POST), cheap enough not to be the bottleneck."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
                      ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        if body:
            extra += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(f"{method} {path} HTTP/1.1\r\nHost: bench\r\n{extra}\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next((int(v.split(":", 1)[1]) for v in lines[1:] if v.lower().startswith("content-length")), 0)
        return int(lines[0].split(" ", 2)[1]), await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()


@dataclass
class LotInfo:
    lot_id: uuid.UUID
    entry: uuid.UUID
    exit: uuid.UUID
    key: str
    reserved: list[str]
    passes: list[str]


def _fresh_database(name: str = DBNAME) -> str:
    with psycopg.connect(f"{PG_HOST}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    from core.migrate import upgrade

    url = database_url(name)
    upgrade(url)
    return url


async def _seed(url: str, prefix: str, lots: int, spots: int, reserved: int, passes: int) -> list[LotInfo]:
    from booking import holds
    from booking.wiring import booking_deps
    from core.accounts import create_device, ensure_organisation
    from core.context import build_context
    from core.security import plate_hash
    from core.settings import Settings
    from pricing.examples import example_card_data
    from tests.factories import insert_lot

    settings = Settings(_env_file=None, secret_key=BENCH_SECRET, database_url=url, rate_limits="off",  # type: ignore[call-arg]
                        redis_prefix=prefix)
    ctx = build_context(settings)
    out: list[LotInfo] = []
    now = datetime.now(UTC)
    try:
        for i in range(lots):
            async with ctx.engine.begin() as conn:
                org = await ensure_organisation(conn=conn, name=f"bench-org-{i}")
                lot = await insert_lot(conn, organisation_id=org, name=f"Bench {i}", spots={"regular": spots},
                                       lat=37.77 + i * 0.001)
                await conn.execute(text("INSERT INTO rate_cards (lot_id, currency, body) VALUES (:l, 'usd', CAST(:b AS jsonb))"),
                                   {"l": lot, "b": json.dumps(example_card_data())})
                gates = {r.direction: r.id for r in await conn.execute(
                    text("SELECT id, direction FROM gates WHERE lot_id = :l"), {"l": lot})}
                _, key = await create_device(conn=conn, lot_id=lot)
                pass_plates = [f"P{i:02d}X{j:04d}" for j in range(passes)]
                month = date(now.year, now.month, 1)
                for p in pass_plates:
                    await conn.execute(text("INSERT INTO monthly_passes (lot_id, plate_hash, month, price_amount,"
                                            " paid_at) VALUES (:l, :h, :m, 9000, :now)"),
                                       {"l": lot, "h": plate_hash(settings.secret_bytes, p), "m": month, "now": now})
            deps = booking_deps(ctx)
            res_plates = [f"R{i:02d}X{j:04d}" for j in range(reserved)]
            for p in res_plates:
                await holds.hold(deps=deps, user_id=None, lot_id=lot, vehicle_type="regular", starts_at=now,
                                 ends_at=now + timedelta(hours=3), plate=p, now=now, status="confirmed")
            out.append(LotInfo(lot, gates["entry"], gates["exit"], key, res_plates, pass_plates))
    finally:
        await ctx.aclose()
    return out


def plan_events(lots: list[LotInfo], n: int, seed: int) -> list[tuple[LotInfo, str, dict[str, Any]]]:
    """(lot, gate path, body) for n events: entries, exits of cars inside, repeats, unsure plates."""
    rng = random.Random(seed)
    queues = {lot.lot_id: {"res": list(lot.reserved), "pass": list(lot.passes)} for lot in lots}
    inside: list[tuple[LotInfo, str]] = []
    sent: list[tuple[LotInfo, str, dict[str, Any]]] = []
    out: list[tuple[LotInfo, str, dict[str, Any]]] = []
    walk = 0
    now = datetime.now(UTC).isoformat()
    for seq in range(n):
        r = rng.random()
        if sent and r < 0.05:
            out.append(rng.choice(sent))  # a repeated event_id: the controller retried
            continue
        lot = rng.choice(lots)
        body: dict[str, Any] = {"event_id": f"e{seq}-{uuid.uuid4().hex[:8]}", "sequence": seq, "occurred_at": now,
                                "plate_confidence": 0.95}
        if inside and (r < 0.45 or len(inside) > 2000):
            lot, plate = inside.pop(rng.randrange(len(inside)))
            body["plate"] = plate
            if rng.random() < 0.5:
                body["payment_token"] = "pm_card_visa"
            gate = f"/api/v1/gates/{lot.exit}/events"
        else:
            q = queues[lot.lot_id]
            pick = rng.random()
            if pick < 0.35 and q["res"]:
                plate = q["res"].pop()
            elif pick < 0.45 and q["pass"]:
                plate = q["pass"].pop()
            else:
                walk += 1
                plate = f"W{walk:07d}"
            body["plate"] = plate
            if rng.random() < 0.03:
                body["plate_confidence"] = 0.4
            else:
                inside.append((lot, plate))
            gate = f"/api/v1/gates/{lot.entry}/events"
        out.append((lot, gate, body))
        sent.append(out[-1])
    return out


async def run_load(port: int, events: list[tuple[LotInfo, str, dict[str, Any]]], rate: float, warmup: int,
                   conns: int) -> tuple[Series, Series, Counter[str], float]:
    gate, health = Series("POST gate event"), Series("GET /healthz")
    decisions: Counter[str] = Counter()
    pool: asyncio.Queue[Http] = asyncio.Queue()
    for _ in range(conns):
        pool.put_nowait(Http(port))
    start = time.perf_counter() + 0.2

    async def one(i: int, series: Series, method: str, path: str, body: bytes, headers: dict[str, str]) -> None:
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        conn = await pool.get()
        t0 = time.perf_counter()
        late = t0 - (start + i / rate) > 0.010
        try:
            status, payload = await conn.request(method, path, body, headers)
            ok = status == 200
            if ok and method == "POST" and i >= warmup:
                decisions[json.loads(payload)["decision"]] += 1
        except Exception:
            ok = False
            await conn.close()
            conn = Http(port)
        t1 = time.perf_counter()
        pool.put_nowait(conn)
        if i < warmup:
            return
        series.late += late
        if ok:
            series.latencies.append(t1 - t0)
        else:
            series.errors += 1

    tasks = []
    for i, (lot, path, body) in enumerate(events):
        tasks.append(one(i, gate, "POST", path, json.dumps(body).encode(), {"X-Device-Key": lot.key}))
        tasks.append(one(i, health, "GET", "/healthz", b"", {}))
    await asyncio.gather(*tasks)
    seconds = (len(events) - warmup) / rate
    while not pool.empty():
        await pool.get_nowait().close()
    return gate, health, decisions, seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=200.0, help="gate events per second (and as many /healthz)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds measured")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds not measured")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--lots", type=int, default=10)
    ap.add_argument("--spots", type=int, default=500)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    url = _fresh_database()
    port = free_port()
    prefix = f"bench-search-{port}"  # the prefix start_server gives the server
    n = int(args.rate * (args.duration + args.warmup))
    per_lot = max(10, int(n * 0.35 / args.lots) + 10)
    lots = asyncio.run(_seed(url, prefix, args.lots, args.spots, min(per_lot, args.spots // 2), 50))
    events = plan_events(lots, n, args.seed)
    print(f"gate benchmark: {args.rate:.0f} events/s + {args.rate:.0f} /healthz/s, open loop, {args.duration:.0f} s "
          f"measured after {args.warmup:.0f} s warm-up; {args.lots} lots x {args.spots} spots; "
          f"{args.workers} server workers; {os.cpu_count()} CPUs", flush=True)
    proc = start_search_server(url, port, args.workers)
    try:
        gate, health, decisions, seconds = asyncio.run(
            run_load(port, events, args.rate, int(args.rate * args.warmup), args.connections))
    finally:
        stop_server(proc)
    print(HEADER)
    print(gate.line(seconds))
    print(health.line(seconds))
    print("decisions:", dict(decisions))
    target = gate.pct(0.99) < 50 and gate.errors == 0
    print(f"target gate p99 < 50 ms with no errors: {'met' if target else 'NOT met'}")
    return 0 if target else 1


if __name__ == "__main__":
    sys.exit(main())
