"""Shared fixtures: every test gets its own PostgreSQL database (cloned from a migrated template),
its own Redis key prefix and Celery queue, and a ManualClock. No mocks of our own services."""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from api.app import create_app
from core.clock import ManualClock
from core.context import AppContext, build_context
from core.settings import Settings
from tests.factories import UserFactory
from tests.procs import free_port, kill, start_redis

ROOT = Path(__file__).resolve().parent.parent
PG_HOST = os.environ.get("PARKGRID_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("PARKGRID_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BROKER_URL = os.environ.get("PARKGRID_TEST_BROKER_URL", "redis://127.0.0.1:6379/1")
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"


def _admin() -> psycopg.Connection:
    return psycopg.connect(f"{PG_HOST}/postgres", autocommit=True)


def _migrations_fingerprint() -> str:
    digest = hashlib.sha1(str(ROOT).encode())
    for path in sorted((ROOT / "migrations").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@pytest.fixture(scope="session")
def template_db() -> str:
    """A database migrated to head, reused while the migrations don't change."""
    name = f"pgtpl_{_migrations_fingerprint()}"
    with _admin() as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return name
        building = f"{name}_build_{os.getpid()}"
        admin.execute(f'DROP DATABASE IF EXISTS "{building}"')
        admin.execute(f'CREATE DATABASE "{building}"')
    from core.migrate import upgrade

    upgrade(f"postgresql+asyncpg://{PG_HOST.split('://', 1)[1]}/{building}")
    with _admin() as admin:
        try:
            admin.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
        except psycopg.errors.DuplicateDatabase:  # another session finished first
            admin.execute(f'DROP DATABASE "{building}"')
    return name


_RESET = """
DO $$ DECLARE names text; BEGIN
  SELECT string_agg(format('%I', tablename), ', ') INTO names FROM pg_tables
   WHERE schemaname = 'public' AND tablename NOT IN ('spatial_ref_sys', 'alembic_version');
  EXECUTE 'TRUNCATE ' || names || ' RESTART IDENTITY CASCADE';
END $$;
"""


class _DatabasePool:
    """Databases cloned from the template and reused: after a test its tables are truncated (fast)
    instead of dropping the database (which forces a checkpoint). Tests that change the schema
    take a `private_db_url`, which is dropped."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.clean: list[str] = []
        self.created: list[str] = []

    def create(self) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        with _admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}" STRATEGY FILE_COPY')
        self.created.append(name)
        return name

    def take(self) -> str:
        return self.clean.pop() if self.clean else self.create()

    def give_back(self, name: str) -> None:
        try:
            with psycopg.connect(f"{PG_HOST}/{name}", autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                             " WHERE datname = current_database() AND pid <> pg_backend_pid()")
                conn.execute(_RESET)
            self.clean.append(name)
        except psycopg.Error:
            self.drop(name)

    def drop(self, name: str) -> None:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.created:
            self.created.remove(name)

    def close(self) -> None:
        for name in list(self.created):
            self.drop(name)


@pytest.fixture(scope="session")
def database_pool(template_db: str) -> Iterator[_DatabasePool]:
    pool = _DatabasePool(template_db)
    yield pool
    pool.close()


@pytest.fixture
def db_url(database_pool: _DatabasePool) -> Iterator[str]:
    """A database only this test uses, at head and empty; truncated and reused afterwards."""
    name = database_pool.take()
    try:
        yield f"postgresql+asyncpg://{PG_HOST.split('://', 1)[1]}/{name}"
    finally:
        database_pool.give_back(name)


@pytest.fixture
def private_db_url(database_pool: _DatabasePool) -> Iterator[str]:
    """A database this test may alter (drop a constraint, downgrade); dropped afterwards."""
    name = database_pool.create()
    try:
        yield f"postgresql+asyncpg://{PG_HOST.split('://', 1)[1]}/{name}"
    finally:
        database_pool.drop(name)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def make_settings(**overrides: object) -> Settings:
    base: dict[str, object] = {
        "environment": "test", "secret_key": TEST_SECRET, "redis_url": REDIS_URL, "broker_url": BROKER_URL,
        "rate_limits": "off", "database_pool_size": 5,
    }
    base.update(overrides)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


@pytest.fixture
def settings(db_url: str, redis_prefix: str) -> Settings:
    return make_settings(database_url=db_url, redis_prefix=redis_prefix, celery_queue=f"q{redis_prefix}")


@pytest.fixture
def private_redis() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A redis-server of our own on a spare port, so the test can kill it; (port, process)."""
    port = free_port()
    proc = start_redis(port)
    yield port, proc
    if proc.poll() is None:
        kill(proc)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def ctx(settings: Settings, clock: ManualClock) -> AsyncIterator[AppContext]:
    context = build_context(settings, clock=clock)
    try:
        yield context
    finally:
        await context.aclose()


@pytest.fixture
async def client(settings: Settings, ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to an app built for this test (its database, Redis prefix and clock)."""
    app = create_app(settings, context=ctx)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


@pytest.fixture
def users(ctx: AppContext) -> UserFactory:
    """Create users of any role and get bearer headers for them."""
    return UserFactory(ctx)
