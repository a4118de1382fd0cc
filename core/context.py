"""The process-wide resources one ParkGrid process needs, built from Settings and closed together."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, cast

import asyncpg
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.clock import Clock, SystemClock
from core.db import create_engine, create_raw_pool
from core.redis import create_redis
from core.settings import Settings

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    redis: aioredis.Redis
    clock: Clock
    extras: dict[str, object] = field(default_factory=dict)
    _raw_pool: asyncpg.Pool | None = field(default=None, repr=False)
    _raw_pool_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def shared(self, key: str, make: Callable[[], T]) -> T:
        """The process's one `key` object (a breaker, a cache, a writer), made by `make` on first use; tests put
        their own in `extras` first."""
        found = self.extras.get(key)
        if found is None:
            found = self.extras[key] = make()
        return cast(T, found)

    async def pg(self) -> asyncpg.Pool:
        """The raw asyncpg pool of the hot paths, created on first use (core.db.create_raw_pool)."""
        if self._raw_pool is None:
            async with self._raw_pool_lock:
                if self._raw_pool is None:
                    self._raw_pool = await create_raw_pool(self.settings)
        return self._raw_pool

    async def aclose(self) -> None:
        closers = self.extras.get("closers")  # process-wide objects with connections of their own (live hub)
        for closer in closers if isinstance(closers, list) else []:
            await closer()
        await self.redis.aclose()
        if self._raw_pool is not None:
            await self._raw_pool.close()
            self._raw_pool = None
        await self.engine.dispose()


def build_context(settings: Settings, *, clock: Clock | None = None) -> AppContext:
    """Create pools lazily (no connection is opened until first use)."""
    return AppContext(settings=settings, engine=create_engine(settings), redis=create_redis(settings),
                      clock=clock or SystemClock())


def migration_head() -> str | None:
    """The newest Alembic revision shipped with this code."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head()


async def database_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    async with engine.connect() as conn:
        exists = await conn.scalar(text("SELECT to_regclass('public.alembic_version') IS NOT NULL"))
        if not exists:
            return None
        return await conn.scalar(text("SELECT version_num FROM alembic_version LIMIT 1"))
