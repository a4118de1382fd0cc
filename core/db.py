"""PostgreSQL engine and transaction helpers (SQLAlchemy Core over asyncpg)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from core.settings import Settings


def _loopback_without_ssl_choice(url: str) -> bool:
    parsed = make_url(url)
    return parsed.host in ("127.0.0.1", "localhost", "::1") and not ({"ssl", "sslmode"} & set(parsed.query))


def create_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    """An async engine with a bounded pool; statements time out rather than hang."""
    extra: dict[str, object] = {}
    if _loopback_without_ssl_choice(settings.database_url):
        extra["ssl"] = False  # asyncpg would negotiate TLS with a loopback server: CPU spent on nothing
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
            "server_settings": {"application_name": "parkgrid", "timezone": "UTC", "statement_timeout": "15000",
                                "jit": "off", "max_parallel_workers_per_gather": "0"},
            "command_timeout": 30,
            **extra,
        },
    )


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
