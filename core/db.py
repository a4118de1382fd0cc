"""PostgreSQL engine and transaction helpers (SQLAlchemy Core over asyncpg)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from core.settings import Settings


def _loopback_without_ssl_choice(url: str) -> bool:
    parsed = make_url(url)
    return parsed.host in ("127.0.0.1", "localhost", "::1") and not ({"ssl", "sslmode"} & set(parsed.query))


#: per-session settings of every connection we open (SQLAlchemy engine and raw pool alike)
SERVER_SETTINGS = {"application_name": "parkgrid", "timezone": "UTC", "statement_timeout": "15000",
                   "jit": "off", "max_parallel_workers_per_gather": "0"}


def _ssl_args(url: str) -> dict[str, object]:
    # asyncpg would negotiate TLS with a loopback server: CPU spent on nothing
    return {"ssl": False} if _loopback_without_ssl_choice(url) else {}


def create_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    """An async engine with a bounded pool; statements time out rather than hang."""
    extra = _ssl_args(settings.database_url)
    return create_async_engine(
        settings.database_url,
        pool_size=pool_size or settings.database_pool_size,
        max_overflow=5,
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={
            # OLTP statements of a few ms on a shared 2-core box: a parallel plan's worker start-up and JIT
            # compilation (triggered by PostGIS functions' huge declared costs) each added tens to hundreds
            # of ms to search plans, never saved any (docs/adr/0006-search-knn-and-lean-hold-path.md).
            # Sessions that need them (exports, reports) can still SET them back.
            "server_settings": SERVER_SETTINGS,
            "command_timeout": 30,
            **extra,
        },
    )


def raw_pool_size(settings: Settings) -> int:
    """The raw pool's size: half the engine's, and at least 3 (gate decisions run at most size - 1 at once)."""
    return max(3, settings.database_pool_size // 2)


async def create_raw_pool(settings: Settings, *, size: int | None = None) -> asyncpg.Pool:
    """A plain asyncpg pool for the few hot paths (holds, search, gate and sensor events) where
    SQLAlchemy's per-statement overhead was most of the request's CPU (docs/adr/0007-hot-paths-on-asyncpg.md).
    Same database, same session settings; statements are prepared and cached per connection."""
    url = make_url(settings.database_url)
    size = size or raw_pool_size(settings)
    return await asyncpg.create_pool(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database,
        min_size=1, max_size=size, command_timeout=30, server_settings=SERVER_SETTINGS,
        **_ssl_args(settings.database_url))  # type: ignore[arg-type]


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection inside one transaction: committed on success, rolled back on error."""
    async with engine.begin() as conn:
        yield conn


async def set_lock_timeout(conn: AsyncConnection, milliseconds: int) -> None:
    """Bound how long this transaction waits for any lock (SET LOCAL: ends with the transaction)."""
    if not conn.in_transaction():
        raise RuntimeError("set_lock_timeout needs an open transaction")
    await conn.execute(text(f"SET LOCAL lock_timeout = '{int(milliseconds)}ms'"))
