"""`parkgrid users|devices|partners`: keys printed once, stored hashed, revocable; quotas validated."""

from __future__ import annotations

import asyncio
import json

import httpx
from sqlalchemy import text
from typer.testing import CliRunner

from cli.app import app as cli
from core.context import AppContext
from core.security import hash_api_key
from core.settings import Settings
from tests.conftest import TEST_SECRET
from tests.factories import insert_lot


async def _run(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {"PARKGRID_DATABASE_URL": settings.database_url, "PARKGRID_SECRET_KEY": TEST_SECRET,
           "PARKGRID_REDIS_URL": settings.redis_url, "PARKGRID_REDIS_PREFIX": settings.redis_prefix,
           "PARKGRID_BROKER_URL": settings.broker_url}
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


async def test_device_key_shown_once_stored_hashed_and_revocable(
    settings: Settings, ctx: AppContext, client: httpx.AsyncClient
) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn)
    code, out, err = await _run(settings, "devices", "create", "--lot", str(lot), "--json")
    assert code == 0, err
    made = json.loads(out)
    assert made["lot_id"] == str(lot) and made["key"].startswith("pgd_")
    async with ctx.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT key_hash FROM devices WHERE id = :id"),
                                     {"id": made["device_id"]})).scalar_one()
    assert stored == hash_api_key(made["key"]) and made["key"] not in stored

    code, out, err = await _run(settings, "devices", "revoke", "--device", made["device_id"], "--json")
    assert code == 0, err
    assert json.loads(out) == {"device_id": made["device_id"], "lot_id": str(lot), "revoked": True}
    async with ctx.engine.connect() as conn:
        assert await conn.scalar(text("SELECT revoked_at IS NOT NULL FROM devices WHERE id = :id"),
                                 {"id": made["device_id"]})

    code, _, err = await _run(settings, "devices", "revoke", "--device", "00000000-0000-0000-0000-000000000000")
    assert code == 1 and "not found" in err


async def test_planner_with_org_and_partner_with_quota(settings: Settings, ctx: AppContext,
                                                       client: httpx.AsyncClient) -> None:
    code, out, err = await _run(settings, "users", "create-planner", "--email", "Plan@City.gov", "--password",
                                "long enough password", "--org", "City of Example", "--json")
    assert code == 0, err
    planner = json.loads(out)
    assert planner["role"] == "planner" and planner["email"] == "plan@city.gov" and planner["organisation_id"]
    token = await client.post("/api/v1/auth/token", data={"username": "plan@city.gov",
                                                          "password": "long enough password"})
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    assert me.json()["role"] == "planner" and me.json()["organisation_id"] == planner["organisation_id"]

    code, out, err = await _run(settings, "partners", "create", "--name", "Nav Co", "--quota", "5/minute", "--json")
    assert code == 0, err
    partner = json.loads(out)
    async with ctx.engine.connect() as conn:
        row = (await conn.execute(text("SELECT quota, api_key_hash FROM partners WHERE id = :id"),
                                  {"id": partner["partner_id"]})).one()
    assert row.quota == "5/minute" and row.api_key_hash == hash_api_key(partner["api_key"])
    assert (await client.get("/api/v1/open/lots", headers={"X-API-Key": partner["api_key"]})).status_code == 200

    code, out, err = await _run(settings, "partners", "revoke", "--partner", partner["partner_id"])
    assert code == 0, err
    assert (await client.get("/api/v1/open/lots", headers={"X-API-Key": partner["api_key"]})).status_code == 401

    code, _, err = await _run(settings, "partners", "create", "--name", "Bad", "--quota", "lots please")
    assert code == 1 and "quota" in err
