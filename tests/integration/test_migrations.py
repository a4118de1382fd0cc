import psycopg
import pytest

from core import migrate
from tests.conftest import PG_HOST


def _tables(dbname: str) -> set[str]:
    with psycopg.connect(f"{PG_HOST}/{dbname}") as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


@pytest.fixture
def empty_db() -> str:
    import uuid

    name = f"t_mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{PG_HOST}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(f"{PG_HOST}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_from_empty_downgrade_to_base_and_up_again(empty_db: str) -> None:
    url = f"postgresql+asyncpg://{PG_HOST.split('://', 1)[1]}/{empty_db}"
    migrate.upgrade(url)
    tables = _tables(empty_db)
    assert {"lots", "spots", "reservations", "parking_sessions", "payments", "sensor_events",
            "occupancy_snapshots", "partners", "idempotency_keys", "outbox"} <= tables
    migrate.downgrade(url, "base")
    assert _tables(empty_db) - {"spatial_ref_sys"} == {"alembic_version"}
    migrate.upgrade(url)
    assert _tables(empty_db) == tables
