"""`make loadtest`: the Locust journeys (loadtests/locustfile.py) headless against a prepared city.

    python -m loadtests.loadtest                      # 60 s mixed run, 40 users, after a 15 s /healthz run
    python -m loadtests.loadtest --duration 120 --users 80

Prepares its own database (parkgrid_loadtest: 20 lots x 100 spots with gates, a device per lot, drivers, a
partner and an operator), starts `parkgrid serve --workers 2` on a spare port, runs Locust twice (HealthzUser
alone as the same-run baseline, then the mixed journeys) and prints throughput, p50/p95/p99 and failures per
journey and per request, beside /healthz.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import subprocess
import sys
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy import text

from core.accounts import create_device, create_partner, create_user
from core.context import build_context
from core.migrate import upgrade
from core.security import create_access_token
from core.settings import Settings
from geo.seed import LotPlan, seed_city
from loadtests.common import ROOT, free_port, start_server, stop_server
from loadtests.search_city import BENCH_SECRET, PG_HOST, database_url

DBNAME = "parkgrid_loadtest"
LOTS, SPOTS, DRIVERS = 20, 100, 200
NAMESPACE = uuid.UUID("5e0c2b71-3f0e-4c55-8a0d-2b1f9c7e4a10")
ORG_ID = uuid.uuid5(NAMESPACE, "org")
OUT = ROOT / "var" / "loadtest"
MIXED = ["DriverUser", "PartnerUser", "SensorUser", "OperatorUser"]


def settings() -> Settings:
    return Settings(_env_file=None, secret_key=BENCH_SECRET, database_url=database_url(DBNAME),  # type: ignore[call-arg]
                    rate_limits="off", redis_prefix="loadtest-setup")


def ensure_database() -> None:
    with psycopg.connect(f"{PG_HOST}/postgres", autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DBNAME,)).fetchone():
            admin.execute(f'CREATE DATABASE "{DBNAME}"')
    upgrade(database_url(DBNAME))


def lot_plans() -> list[LotPlan]:
    return [LotPlan(id=uuid.uuid5(NAMESPACE, f"lot:{i}"), name=f"Load Lot {i}", address="", lat=37.77 + (i % 5) * 0.004,
                    lng=-122.42 + (i // 5) * 0.004, kind="surface", amenities=[], levels=[{"regular": SPOTS}],
                    gates=[("Entry 1", "entry"), ("Exit 1", "exit")]) for i in range(LOTS)]


async def prepare() -> dict[str, object]:
    """Lots, devices, drivers, a partner and an operator; bookings of earlier runs removed. Returns the fixture."""
    s = settings()
    ctx = build_context(s)
    now = datetime.now(UTC)

    def token(user_id: uuid.UUID, role: str, org: uuid.UUID | None) -> str:
        return create_access_token(secret=s.secret_bytes, user_id=user_id, role=role, organisation_id=org,
                                   issuer=s.jwt_issuer, audience=s.jwt_audience, ttl_seconds=7200, now=now)

    try:
        async with ctx.engine.begin() as conn:
            have = await conn.scalar(text("SELECT count(*) FROM lots"))
        if have != LOTS:
            await seed_city(ctx.engine, lot_plans(), organisation_id=ORG_ID)
        async with ctx.engine.begin() as conn:
            await conn.execute(text("TRUNCATE reservations, parking_sessions CASCADE"))
            existing = {r.email: r.id for r in await conn.execute(text(
                "SELECT id, email FROM users WHERE email LIKE 'load-%'"))}
        missing = [f"load-driver-{i:04d}@example.com" for i in range(DRIVERS)]
        missing = [e for e in [*missing, "load-operator@example.com"] if e not in existing]
        for i in range(0, len(missing), 8):
            async def one(email: str) -> None:
                async with ctx.engine.begin() as conn:
                    operator = email.startswith("load-operator")
                    user = await create_user(conn=conn, email=email, password="load test password 0123",
                                             role="operator" if operator else "driver",
                                             organisation_id=ORG_ID if operator else None)
                existing[email] = user.id
            await asyncio.gather(*(one(e) for e in missing[i:i + 8]))
        lots = []
        async with ctx.engine.begin() as conn:
            for plan in lot_plans():
                _, key = await create_device(conn=conn, lot_id=plan.id, name="load controller",
                                             key=f"pgd_load_{plan.id.hex}")
                gates = {r.direction: str(r.id) for r in await conn.execute(
                    text("SELECT id, direction FROM gates WHERE lot_id = :lot"), {"lot": plan.id})}
                sensors = [r.label for r in await conn.execute(
                    text("SELECT label FROM spots WHERE lot_id = :lot ORDER BY label"), {"lot": plan.id})]
                lots.append({"id": str(plan.id), "lat": plan.lat, "lng": plan.lng, "device_key": key,
                             "entry_gate": gates["entry"], "exit_gate": gates["exit"], "sensors": sensors})
            _, partner_key = await create_partner(conn=conn, name="load partner", quota="1000000/minute",
                                                  key="pgp_load_partner_0123456789abcdef")
        drivers = [token(existing[f"load-driver-{i:04d}@example.com"], "driver", None) for i in range(DRIVERS)]
        return {"lots": lots, "driver_tokens": drivers, "partner_key": partner_key,
                "operator_token": token(existing["load-operator@example.com"], "operator", ORG_ID)}
    finally:
        await ctx.aclose()


def run_locust(*, host: str, classes: list[str], users: int, duration: int, prefix: str, fixture: Path) -> Path:
    """Locust headless in its own process; returns the path of its per-request stats CSV."""
    cmd = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"), "--headless",
           "-u", str(users), "-r", str(users), "-t", f"{duration}s", "--host", host, "--csv", str(OUT / prefix),
           "--only-summary", "--loglevel", "WARNING", *classes]
    subprocess.run(cmd, check=False, cwd=ROOT, env={**os.environ,
                                                      "PARKGRID_LOADTEST_FIXTURE": str(fixture)},
                   stdout=subprocess.DEVNULL)
    return OUT / f"{prefix}_stats.csv"


def summarise(stats: Path) -> list[dict[str, str]]:
    with stats.open() as fh:
        return [row for row in csv.DictReader(fh) if row["Name"] != "Aggregated"]


def print_table(rows: list[dict[str, str]]) -> None:
    print(f"{'request':<28} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'n':>7} {'failures':>8}")
    journeys: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for row in sorted(rows, key=lambda r: r["Name"]):
        n, f = int(row["Request Count"]), int(row["Failure Count"])
        journeys[row["Name"].split(":")[0]][0] += float(row["Requests/s"])
        journeys[row["Name"].split(":")[0]][1] += f
        print(f"{row['Name']:<28} {float(row['Requests/s']):>8.1f} {row['50%']:>7} {row['95%']:>7} {row['99%']:>7} "
              f"{n:>7} {f:>8}")
    print("per journey:", ", ".join(f"{j} {rps:.0f} req/s ({f:.0f} failed)" for j, (rps, f) in sorted(journeys.items())))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=60, help="seconds of the mixed run")
    ap.add_argument("--baseline", type=int, default=15, help="seconds of the /healthz run")
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    ensure_database()
    fixture = OUT / "fixture.json"
    fixture.write_text(json.dumps(asyncio.run(prepare())))
    port = free_port()
    server = start_server(database_url(DBNAME), port, args.workers,
                          {"PARKGRID_SECRET_KEY": BENCH_SECRET, "PARKGRID_REDIS_PREFIX": f"loadtest-{port}"})
    try:
        host = f"http://127.0.0.1:{port}"
        base = summarise(run_locust(host=host, classes=["HealthzUser"], users=args.users, duration=args.baseline,
                                    prefix="healthz", fixture=fixture))
        mixed = summarise(run_locust(host=host, classes=MIXED, users=args.users, duration=args.duration,
                                     prefix="mixed", fixture=fixture))
    finally:
        stop_server(server)
    print(f"\nLocust, {args.users} users, server --workers {args.workers}, {LOTS} lots x {SPOTS} spots")
    print(f"baseline ({args.baseline} s, HealthzUser alone):")
    print_table(base)
    print(f"mixed journeys ({args.duration} s, weights driver 5, partner 2, sensors 2, operator 1):")
    print_table(mixed)
    total = sum(float(r["Requests/s"]) for r in mixed)
    healthz = sum(float(r["Requests/s"]) for r in base)
    print(f"mixed total {total:.0f} req/s beside /healthz {healthz:.0f} req/s "
          f"({total / healthz:.0%} of it) with the same Locust client")
    failures = sum(int(r["Failure Count"]) for r in mixed)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
