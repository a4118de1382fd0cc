"""The process-wide resources one ParkGrid process needs, built from Settings and closed together."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.clock import Clock, SystemClock
from core.db import create_engine
from core.redis import create_redis
from core.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    redis: aioredis.Redis
    clock: Clock
    extras: dict[str, object] = field(default_factory=dict)

    async def aclose(self) -> None:
        await self.redis.aclose()
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
