"""Sensor events/s into live counters: HTTP batches and MQTT, beside raw Redis HINCRBY and /healthz.

    python -m loadtests.bench_sensors [--events 200000] [--batch 1000] [--clients 4] [--spots 2000] [--mqtt 20000]
                                      [--publishers 4]

Creates its own database (migrated), one lot with --spots bays, a device key; runs `parkgrid serve
--workers 2` and `parkgrid ingest` as real processes. Every event is a fresh event_id (exactly-once
claim, debounce rules, raw row, sensor update, Redis Lua) — the full path, not a shortcut.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import aiomqtt
import httpx
import psycopg
import redis.asyncio as aioredis
from sqlalchemy import text

from controllers.mqtt_ingest import forget_session
from core.accounts import create_device
from core.context import build_context
from core.migrate import upgrade
from loadtests.common import ROOT, free_port, process_cpu_seconds, start_server, stop_server, tree_cpu_seconds
from loadtests.search_city import BENCH_SECRET, PG_HOST, bench_settings, database_url
from tests.factories import insert_lot


def _create_db(name: str) -> None:
    with psycopg.connect(f"{PG_HOST}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    upgrade(database_url(name))


def _backends_cpu(name: str) -> float:
    """CPU seconds of the client backends connected to database `name` (lifetime of each connection)."""
    with psycopg.connect(f"{PG_HOST}/postgres", autocommit=True) as admin:
        pids = [r[0] for r in admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s"
                                            " AND backend_type = 'client backend'", (name,))]
    return sum(process_cpu_seconds(pid) for pid in pids)


def _drop_db(name: str) -> None:
    with psycopg.connect(f"{PG_HOST}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def seed(dbname: str, spots: int) -> tuple[uuid.UUID, str]:
    ctx = build_context(bench_settings(dbname))
    try:
        async with ctx.engine.begin() as conn:
            lot = await insert_lot(conn, spots={"regular": spots})
            _, key = await create_device(conn=conn, lot_id=lot)
    finally:
        await ctx.aclose()
    return lot, key


def events(start: int, n: int, spots: int, at: datetime) -> list[dict[str, object]]:
    # each sensor flips at most once per 10 s of event time: some changes, many confirmations
    return [{"event_id": f"b{start + i}", "sensor_id": f"L0-{(start + i) % spots + 1:03d}",
             "state": "occupied" if ((start + i) // spots) % 2 else "vacant", "confidence": 0.95,
             "occurred_at": (at + timedelta(seconds=((start + i) // spots) * 10)).isoformat()} for i in range(n)]


async def http_phase(port: int, lot: uuid.UUID, key: str, args: argparse.Namespace) -> float:
    at = datetime.now(UTC) - timedelta(hours=2)
    total = args.events
    per_client = total // args.clients // args.batch
    bodies = [[json.dumps({"events": events((c * per_client + b) * args.batch, args.batch, args.spots, at)}).encode()
               for b in range(per_client)] for c in range(args.clients)]

    async def client(c: int) -> int:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60,
                                     headers={"X-Device-Key": key, "content-type": "application/json"}) as http:
            n = 0
            for body in bodies[c]:
                r = await http.post(f"/api/v1/lots/{lot}/sensor-events", content=body)
                assert r.status_code == 202, r.text
                n += r.json()["accepted"] + len(r.json()["ignored"])
            return n

    t0 = time.perf_counter()
    done = sum(await asyncio.gather(*(client(c) for c in range(args.clients))))
    return done / (time.perf_counter() - t0)


async def healthz_phase(port: int, seconds: float = 3.0) -> float:
    from loadtests.fastclient import Connection

    deadline = time.perf_counter() + seconds
    count = 0

    async def worker() -> None:
        nonlocal count
        conn = Connection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            await conn.get("/healthz")
            count += 1
        await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(8)))
    return count / (time.perf_counter() - t0)


async def redis_phase(n: int) -> float:
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    key = f"bench-sensors-raw:{uuid.uuid4().hex}"
    t0 = time.perf_counter()
    for start in range(0, n, 1000):
        async with client.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + 1000)):
                pipe.hincrby(key, f"g{i % 8}", 1)
            await pipe.execute()
    rate = n / (time.perf_counter() - t0)
    await client.delete(key)
    await client.aclose()
    return rate


async def publish(msgs: list[tuple[str, str]], publishers: int) -> float:
    """Publish at QoS 1 over `publishers` connections (a sensor always on the same one: its order holds); msgs/s."""
    async def one(part: list[tuple[str, str]]) -> None:
        async with aiomqtt.Client("127.0.0.1", 1883, max_queued_outgoing_messages=len(part) + 10) as pub:
            for topic, payload in part:
                await pub.publish(topic, payload, qos=1)

    parts: list[list[tuple[str, str]]] = [[] for _ in range(publishers)]
    for topic, payload in msgs:
        parts[hash(topic) % publishers].append((topic, payload))
    t0 = time.perf_counter()
    await asyncio.gather(*(one(part) for part in parts))
    return len(msgs) / (time.perf_counter() - t0)


async def mqtt_phase(dbname: str, lot: uuid.UUID, n: int, spots: int, publishers: int) -> tuple[float, int]:
    env = {**os.environ, "PARKGRID_DATABASE_URL": database_url(dbname), "PARKGRID_SECRET_KEY": BENCH_SECRET,
           "PARKGRID_REDIS_PREFIX": f"bench-{dbname}", "PARKGRID_LOG_LEVEL": "warning"}
    client_id = f"bench-{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen([sys.executable, "-m", "cli", "ingest", "--client-id", client_id],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        await asyncio.to_thread(proc.stdout.readline)
        ctx = build_context(bench_settings(dbname))
        async with ctx.engine.connect() as conn:
            before = await conn.scalar(text("SELECT count(*) FROM sensor_event_ids"))
        at = datetime.now(UTC) - timedelta(hours=1)
        msgs = [(f"parkgrid/lots/{lot}/sensors/{e['sensor_id']}", json.dumps({**e, "event_id": f"m{e['event_id']}"}))
                for e in events(0, n, spots, at)]
        t0 = time.perf_counter()
        await publish(msgs, publishers)
        # Until all arrived, or nothing new arrived for 3 s (messages the broker dropped never will): the rate is
        # over the time until the last arrival, so lost messages show as a count, not as a meaningless rate.
        got, last_change = 0, time.perf_counter()
        while True:
            async with ctx.engine.connect() as conn:
                now_got = int(await conn.scalar(text("SELECT count(*) FROM sensor_event_ids")) or 0) - int(before or 0)
            if now_got != got:
                got, last_change = now_got, time.perf_counter()
            if got >= n or time.perf_counter() - last_change > 3 or time.perf_counter() - t0 > 120:
                break
            await asyncio.sleep(0.1)
        rate = got / max(last_change - t0, 1e-9)
        await ctx.aclose()
        return rate, got
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        await forget_session(mqtt_url="mqtt://127.0.0.1:1883", client_id=client_id)  # the broker keeps no copy


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--spots", type=int, default=2000)
    p.add_argument("--mqtt", type=int, default=20_000)
    p.add_argument("--publishers", type=int, default=4, help="MQTT publisher connections (each sequential, QoS 1)")
    args = p.parse_args()
    dbname = f"bench_sensors_{uuid.uuid4().hex[:6]}"
    _create_db(dbname)
    try:
        lot, key = asyncio.run(seed(dbname, args.spots))
        port = free_port()
        server = start_server(database_url(dbname), port, 2, {"PARKGRID_SECRET_KEY": BENCH_SECRET,
                                                              "PARKGRID_REDIS_PREFIX": f"bench-{dbname}"})
        try:
            rps = asyncio.run(healthz_phase(port))
            server_cpu0 = tree_cpu_seconds(server.pid)
            http_rate = asyncio.run(http_phase(port, lot, key, args))
            server_cpu = (tree_cpu_seconds(server.pid) - server_cpu0) / args.events * 1e6
            pg_cpu = _backends_cpu(dbname) / args.events * 1e6  # the server's pools: opened for this phase
        finally:
            stop_server(server)
        raw = asyncio.run(redis_phase(args.events))
        # the publishers alone (a topic nobody subscribes to): the most the MQTT phase can show
        pub_rate = asyncio.run(publish([(f"bench/nobody/{i % args.spots}", "{}") for i in range(args.mqtt)],
                                       args.publishers)) if args.mqtt else 0.0
        mqtt_rate, mqtt_got = (asyncio.run(mqtt_phase(dbname, lot, args.mqtt, args.spots, args.publishers))
                               if args.mqtt else (0.0, 0))
    finally:
        _drop_db(dbname)
    print(f"baseline raw Redis HINCRBY (pipelined 1000): {raw:,.0f} ops/s")
    print(f"baseline GET /healthz (2 workers, 8 conns):  {rps:,.0f} req/s")
    print(f"sensor events over HTTP batches of {args.batch} x {args.clients} clients: {http_rate:,.0f} events/s "
          f"({args.events:,} events, target 20,000); CPU per event: server {server_cpu:.1f} us, "
          f"PostgreSQL backends {pg_cpu:.1f} us")
    print(f"baseline MQTT publishers alone (QoS 1, {args.publishers} connections): {pub_rate:,.0f} msgs/s")
    print(f"sensor events over MQTT (QoS 1, {args.publishers} publishers, parkgrid ingest): {mqtt_rate:,.0f} events/s "
          f"({args.mqtt:,} events)")
    if mqtt_got < args.mqtt:  # Mosquitto drops QoS 1 messages past max_queued_messages (1000) for a slow consumer
        print(f"  LOST {args.mqtt - mqtt_got:,} of {args.mqtt:,} MQTT events: the consumer fell behind the publishers"
              " and the broker dropped them (Mosquitto's max_queued_messages, 1000 by default)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
