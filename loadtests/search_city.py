"""A seeded benchmark city in its own database, created once and reused while the seed matches."""

from __future__ import annotations

import asyncio
import time

import psycopg
from sqlalchemy import text

from core.context import build_context, migration_head
from core.migrate import upgrade
from core.settings import Settings
from geo.seed import plan_city, seed_city

PG_HOST = "postgresql://postgres@127.0.0.1:5432"
BENCH_SECRET = "bench-secret-key-that-is-long-enough-0123456789"


def database_url(dbname: str) -> str:
    return f"postgresql+asyncpg://{PG_HOST.split('://', 1)[1]}/{dbname}"


def bench_settings(dbname: str) -> Settings:
    return Settings(_env_file=None, secret_key=BENCH_SECRET, database_url=database_url(dbname),  # type: ignore[call-arg]
                    rate_limits="off", redis_prefix=f"bench-{dbname}")


def _ensure_database(dbname: str) -> None:
    with psycopg.connect(f"{PG_HOST}/postgres", autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            admin.execute(f'CREATE DATABASE "{dbname}"')


async def _state(dbname: str, lots: int, seed: int) -> tuple[bool, str | None, int]:
    ctx = build_context(bench_settings(dbname))
    try:
        async with ctx.engine.connect() as conn:
            rev = None
            if await conn.scalar(text("SELECT to_regclass('public.alembic_version') IS NOT NULL")):
                rev = await conn.scalar(text("SELECT version_num FROM alembic_version"))
            if rev is None:
                return False, None, 0
            plans = plan_city(lots=1, seed=seed)  # the first lot's id depends on the seed only
            have = int(await conn.scalar(text("SELECT count(*) FROM lots")) or 0)
            first = await conn.scalar(text("SELECT 1 FROM lots WHERE id = :id"), {"id": plans[0].id})
            return bool(first) and have == lots, rev, have
    finally:
        await ctx.aclose()


async def _seed(dbname: str, lots: int, seed: int) -> None:
    ctx = build_context(bench_settings(dbname))
    try:
        await seed_city(ctx.engine, plan_city(lots=lots, seed=seed), batch=1000)
        async with ctx.engine.connect() as conn:
            await conn.execute(text("COMMIT"))
            await conn.execute(text("SET statement_timeout = 0"))  # this connection is closed right after
            await conn.execute(text("VACUUM ANALYZE"))
    finally:
        await ctx.aclose()


def ensure_city(*, dbname: str, lots: int, seed: int, log: bool = True) -> str:
    """Create, migrate and seed `dbname` unless it already holds exactly this city; returns its URL."""
    _ensure_database(dbname)
    ready, rev, have = asyncio.run(_state(dbname, lots, seed))
    if ready and rev == migration_head():
        return database_url(dbname)
    if have and not ready:  # a different or partial city: start again
        with psycopg.connect(f"{PG_HOST}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{dbname}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{dbname}"')
    upgrade(database_url(dbname))
    if not ready:
        started = time.perf_counter()
        if log:
            print(f"seeding {lots} lots into {dbname} (seed {seed}) ...", flush=True)
        asyncio.run(_seed(dbname, lots, seed))
        if log:
            print(f"seeded in {time.perf_counter() - started:.0f} s", flush=True)
    return database_url(dbname)


if __name__ == "__main__":
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    print(ensure_city(dbname=f"parkgrid_bench_search_{n}", lots=n, seed=42))
