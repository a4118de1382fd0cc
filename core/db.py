"""PostgreSQL engine and transaction helpers (SQLAlchemy Core over asyncpg)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any, ClassVar

import asyncpg
from sqlalchemy import TextClause, make_url
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
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
    Same database, same session settings; statements are prepared and cached per connection.

    A released connection is not reset: asyncpg's default reset (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL)
    is one more round trip per use. The pool still rolls back an open transaction on release; the hot paths
    keep no session state (SET LOCAL and transaction-level advisory locks only)."""
    url = make_url(settings.database_url)
    size = size or raw_pool_size(settings)
    pool = FairPool(
        None, host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database,
        min_size=1, max_size=size, max_queries=50_000, max_inactive_connection_lifetime=300.0, loop=None,
        connection_class=asyncpg.Connection, record_class=asyncpg.Record, command_timeout=30,
        server_settings=SERVER_SETTINGS, reset=_keep_session, **_ssl_args(settings.database_url))
    return await pool  # type: ignore[no-any-return]


class FairPool(asyncpg.Pool):
    """An asyncpg pool that hands out connections in the order they were asked for.

    asyncpg's pool queues its waiters on an asyncio.Queue: a coroutine that asks while a connection is being
    handed to a woken waiter can take it first, and the waiter goes back to the end of the queue. Under load
    a few requests lost that race again and again: holds answered in ~45 ms at the median and ~400 ms at the
    99th percentile (bench_booking --timeline, the same tail in every second). A FIFO asyncio.Semaphore with
    one permit per connection now decides whose turn it is; the queue then always has a connection for them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._turns = asyncio.Semaphore(kwargs["max_size"])

    async def _acquire(self, timeout: float | None) -> Any:  # noqa: ASYNC109 (asyncpg's signature)
        if timeout is None:
            await self._turns.acquire()
        else:
            await asyncio.wait_for(self._turns.acquire(), timeout)
        try:
            return await super()._acquire(timeout)  # type: ignore[misc]
        except BaseException:
            self._turns.release()
            raise

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        try:
            await super().release(connection, timeout=timeout)
        finally:
            self._turns.release()


async def _keep_session(connection: asyncpg.Connection) -> None:
    """The raw pool's reset on release: nothing beyond asyncpg's own rollback of an open transaction."""


class RawRows:
    """A read's rows with attribute access, like SQLAlchemy's result (first row, or iterate)."""

    def __init__(self, records: list[asyncpg.Record]) -> None:
        self._rows = [SimpleNamespace(**dict(r)) for r in records]

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


class RawReads:
    """Reads written for SQLAlchemy (`text()` with named parameters, through `execute` and `scalar`) run on a
    raw asyncpg connection: code shared with the SQLAlchemy paths (pricing's quote) can join a hot path's
    connection (ADR 0007) without SQLAlchemy's per-statement work. Each statement is compiled once, by
    SQLAlchemy's own asyncpg dialect, to the positional SQL that dialect would send."""

    _dialect: ClassVar = PGDialect_asyncpg()
    _compiled: ClassVar[dict[TextClause, tuple[str, tuple[str, ...]]]] = {}

    def __init__(self, con: asyncpg.Connection) -> None:
        self.con = con

    def _positional(self, statement: TextClause, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        hit = self._compiled.get(statement)
        if hit is None:
            compiled = statement.compile(dialect=self._dialect)
            hit = self._compiled[statement] = (str(compiled), tuple(compiled.positiontup or ()))
        sql, names = hit
        return sql, [params[n] for n in names]

    async def execute(self, statement: TextClause, params: Mapping[str, Any]) -> RawRows:
        sql, args = self._positional(statement, params)
        return RawRows(await self.con.fetch(sql, *args))

    async def scalar(self, statement: TextClause, params: Mapping[str, Any]) -> Any:
        sql, args = self._positional(statement, params)
        return await self.con.fetchval(sql, *args)


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection inside one transaction: committed on success, rolled back on error."""
    async with engine.begin() as conn:
        yield conn


class LazyReads:
    """RawReads on a connection of the raw pool taken at the first statement, released on exit: a caller that
    may or may not need to read (a hold's pricer, whose lot and card are usually already known) pays for a
    connection only when it does read."""

    def __init__(self, pool: Callable[[], Awaitable[asyncpg.Pool]]) -> None:
        self._pool = pool
        self._held: Any = None
        self._reads: RawReads | None = None

    async def __aenter__(self) -> LazyReads:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._held is not None:
            held, self._held, self._reads = self._held, None, None
            await held.__aexit__(*exc)

    async def _on(self) -> RawReads:
        if self._reads is None:
            self._held = (await self._pool()).acquire()
            self._reads = RawReads(await self._held.__aenter__())
        return self._reads

    async def execute(self, statement: TextClause, params: Mapping[str, Any]) -> RawRows:
        return await (await self._on()).execute(statement, params)

    async def scalar(self, statement: TextClause, params: Mapping[str, Any]) -> Any:
        return await (await self._on()).scalar(statement, params)
