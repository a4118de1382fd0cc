"""Roles, organisations, devices and partners each reach only what is theirs.

The lot, gate and sensor routes arrive with other issues; these tests mount small routes that use the
same dependencies (api.authz) those routers are expected to use, so the scoping rules are pinned now.
"""

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import APIRouter
from sqlalchemy import text

from api.app import create_app
from api.authz import GateDevice, LotDevice, OperatedLotId
from api.deps import PlannerUser
from core.accounts import create_device, create_partner, revoke_device
from core.clock import ManualClock
from core.context import AppContext
from core.keyring import DEVICE_KEY_TTL, announce_revocation
from core.settings import Settings
from tests.factories import UserFactory, device_key_for, insert_lot


def _probe_router() -> APIRouter:
    router = APIRouter(prefix="/probe")

    @router.get("/lots/{lot_id}")
    async def lot(lot_id: OperatedLotId) -> dict[str, str]:
        return {"lot_id": str(lot_id)}

    @router.post("/lots/{lot_id}/sensor-events")
    async def sensor(device: LotDevice) -> dict[str, str]:
        return {"device_id": str(device.device_id)}

    @router.post("/gates/{gate_id}/events")
    async def gate(device: GateDevice) -> dict[str, str]:
        return {"lot_id": str(device.lot_id)}

    @router.get("/exports")
    async def exports(user: PlannerUser) -> dict[str, str]:
        return {"role": user.role}

    return router


@pytest.fixture
async def http(settings: Settings, ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, context=ctx)
    app.include_router(_probe_router())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client


async def _two_lots(ctx: AppContext, users: UserFactory) -> dict[str, object]:
    op_a, op_b = await users.create("operator", org="Org A"), await users.create("operator", org="Org B")
    async with ctx.engine.begin() as conn:
        lot_a = await insert_lot(conn, organisation_id=op_a.organisation_id, name="A")
        lot_b = await insert_lot(conn, organisation_id=op_b.organisation_id, name="B")
        gates = {lot: (await conn.execute(
            text("SELECT id FROM gates WHERE lot_id = :l AND direction = 'entry'"),
            {"l": lot})).scalar_one() for lot in (lot_a, lot_b)}
        key_a, key_b = await device_key_for(conn, lot_a), await device_key_for(conn, lot_b)
    return {"op_a": op_a, "op_b": op_b, "lot_a": lot_a, "lot_b": lot_b, "gate_a": gates[lot_a],
            "gate_b": gates[lot_b], "key_a": key_a, "key_b": key_b}


async def test_driver_403_other_organisation_404_own_operator_and_admin_200(
    http: httpx.AsyncClient, ctx: AppContext, users: UserFactory
) -> None:
    w = await _two_lots(ctx, users)
    driver, admin = await users.create("driver"), await users.create("admin")
    planner = await users.create("planner")
    url = f"/probe/lots/{w['lot_a']}"
    assert (await http.get(url, headers=driver.headers)).status_code == 403
    assert (await http.get(url, headers=planner.headers)).status_code == 403
    other = await http.get(url, headers=w["op_b"].headers)  # type: ignore[attr-defined]
    assert other.status_code == 404 and str(w["lot_a"]) not in other.json().get("lot_id", "")
    assert (await http.get(url, headers=w["op_a"].headers)).status_code == 200  # type: ignore[attr-defined]
    assert (await http.get(url, headers=admin.headers)).status_code == 200
    assert (await http.get(f"/probe/lots/{uuid.uuid4()}", headers=admin.headers)).status_code == 404
    assert (await http.get(url)).status_code == 401
    assert (await http.get("/probe/exports", headers=planner.headers)).status_code == 200
    assert (await http.get("/probe/exports", headers=driver.headers)).status_code == 403


async def test_devices_are_scoped_to_their_lot_across_two_lots(
    http: httpx.AsyncClient, ctx: AppContext, users: UserFactory
) -> None:
    w = await _two_lots(ctx, users)
    for key, lot, gate in (("key_a", "lot_a", "gate_a"), ("key_b", "lot_b", "gate_b")):
        hdr = {"X-Device-Key": str(w[key])}
        assert (await http.post(f"/probe/lots/{w[lot]}/sensor-events", headers=hdr)).status_code == 200
        assert (await http.post(f"/probe/gates/{w[gate]}/events", headers=hdr)).status_code == 200
    cross = {"X-Device-Key": str(w["key_a"])}
    assert (await http.post(f"/probe/lots/{w['lot_b']}/sensor-events", headers=cross)).status_code == 404
    assert (await http.post(f"/probe/gates/{w['gate_b']}/events", headers=cross)).status_code == 404
    assert (await http.post(f"/probe/gates/{uuid.uuid4()}/events", headers=cross)).status_code == 404
    assert (await http.post(f"/probe/lots/{w['lot_a']}/sensor-events")).status_code == 401
    assert (await http.post(f"/probe/lots/{w['lot_a']}/sensor-events",
                            headers={"X-Device-Key": "pgd_made_up"})).status_code == 401
    # a user token is no device key
    op = w["op_a"].headers  # type: ignore[attr-defined]
    assert (await http.post(f"/probe/lots/{w['lot_a']}/sensor-events", headers=op)).status_code == 401


async def test_a_revoked_device_key_is_refused_on_the_next_request_once_announced(
    http: httpx.AsyncClient, ctx: AppContext, users: UserFactory, clock: ManualClock
) -> None:
    """A revocation announced after its commit (core.keyring, as `parkgrid devices revoke` does) is refused on the
    next request. The negative control: one nobody announced works for as long as the process remembers the key
    (DEVICE_KEY_TTL on the injected clock); a process that had not seen a key refuses it at once."""
    w = await _two_lots(ctx, users)
    hdr = {"X-Device-Key": str(w["key_a"])}
    device_id = uuid.UUID((await http.post(f"/probe/lots/{w['lot_a']}/sensor-events", headers=hdr)).json()["device_id"])
    async with ctx.engine.begin() as conn:
        assert await revoke_device(conn=conn, device_id=device_id, now=clock.now()) == w["lot_a"]
        unseen_id, unseen_key = await create_device(conn=conn, lot_id=w["lot_a"])  # type: ignore[arg-type]
        await revoke_device(conn=conn, device_id=unseen_id, now=clock.now())
    clock.advance(DEVICE_KEY_TTL - timedelta(microseconds=1))
    assert (await http.post(f"/probe/lots/{w['lot_a']}/sensor-events", headers=hdr)).status_code == 200  # unannounced
    unseen = await http.post(f"/probe/lots/{w['lot_a']}/sensor-events", headers={"X-Device-Key": unseen_key})
    assert unseen.status_code == 401
    await announce_revocation(redis=ctx.redis, prefix=ctx.settings.redis_prefix)
    res = await http.post(f"/probe/lots/{w['lot_a']}/sensor-events", headers=hdr)
    assert res.status_code == 401
    assert (await http.post(f"/probe/gates/{w['gate_a']}/events", headers=hdr)).status_code == 401
    # the other lot's device is unaffected
    ok = await http.post(f"/probe/lots/{w['lot_b']}/sensor-events", headers={"X-Device-Key": str(w["key_b"])})
    assert ok.status_code == 200


async def test_a_remembered_device_key_expires_on_the_injected_clock(
    http: httpx.AsyncClient, ctx: AppContext, users: UserFactory, clock: ManualClock
) -> None:
    w = await _two_lots(ctx, users)
    hdr = {"X-Device-Key": str(w["key_a"])}
    device_id = uuid.UUID((await http.post(f"/probe/lots/{w['lot_a']}/sensor-events", headers=hdr)).json()["device_id"])
    async with ctx.engine.begin() as conn:
        await revoke_device(conn=conn, device_id=device_id, now=clock.now())
    clock.advance(DEVICE_KEY_TTL - timedelta(microseconds=1))
    assert (await http.post(f"/probe/lots/{w['lot_a']}/sensor-events", headers=hdr)).status_code == 200
    clock.advance(microseconds=1)
    assert (await http.post(f"/probe/lots/{w['lot_a']}/sensor-events", headers=hdr)).status_code == 401


async def test_open_data_needs_a_valid_partner_key(client: httpx.AsyncClient, ctx: AppContext,
                                                   users: UserFactory) -> None:
    async with ctx.engine.begin() as conn:
        _, key = await create_partner(conn=conn, name="Nav Co")
    assert (await client.get("/api/v1/open/lots")).status_code == 401
    assert (await client.get("/api/v1/open/lots", headers={"X-API-Key": "pgp_wrong"})).status_code == 401
    driver = await users.create("driver")
    assert (await client.get("/api/v1/open/lots", headers=driver.headers)).status_code == 401
    res = await client.get("/api/v1/open/lots", headers={"X-API-Key": key})
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("application/geo+json")
    assert res.json() == {"type": "FeatureCollection", "features": []}

