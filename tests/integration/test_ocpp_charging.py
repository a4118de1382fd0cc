"""Chargers' state in lot detail, search and alerts, and a full charging session billed at the exit gate, driven by
the `ocpp` library's ChargePoint against the real server (uvicorn, this test's database, Redis and clock)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from ocpp.v16 import call
from sqlalchemy import text

from controllers.chargers import charger_alerts
from controllers.charging import reservation_id_tag
from core.clock import ManualClock
from core.context import AppContext
from core.privacy import purge_plates_batch
from core.settings import Settings
from pricing.service import put_rate_card
from tests.api.test_gates_world import confirmed_reservation, event, gate_lot, post_event, reservation_token
from tests.conftest import make_settings
from tests.factories import insert_lot
from tests.integration.ocpp_world import boot, charger, create_charger, serving, status
from tests.pricing_helpers import card

LAT, LNG = 37.7793, -122.4193


@pytest.fixture
def settings(db_url: str, redis_prefix: str) -> Settings:
    # search reads the process's charger board: re-read on every search here (its refresh is benchmarked instead)
    return make_settings(database_url=db_url, redis_prefix=redis_prefix, celery_queue=f"q{redis_prefix}",
                         ev_board_refresh_ms=0)


async def _detail(client: httpx.AsyncClient, lot: uuid.UUID) -> dict[str, int]:
    res = await client.get(f"/api/v1/lots/{lot}")
    assert res.status_code == 200, res.text
    return res.json()["ev_chargers"]  # type: ignore[no-any-return]


async def _search(client: httpx.AsyncClient, **params: Any) -> dict[str, dict[str, int]]:
    res = await client.get("/api/v1/lots/search", params={"lat": LAT, "lng": LNG, "radius_m": 2000, **params})
    assert res.status_code == 200, res.text
    return {item["lot"]["id"]: item["ev_chargers"] for item in res.json()["items"]}


def _counts(total: int = 2, available: int = 0, charging: int = 0, faulted: int = 0, offline: int = 0) -> dict[str, int]:
    return {"total": total, "available": available, "charging": charging, "faulted": faulted, "offline": offline}


async def test_status_flow_counts_connectors_in_detail_search_and_alerts(
        settings: Settings, ctx: AppContext, client: httpx.AsyncClient, clock: ManualClock, users: Any) -> None:
    operator, stranger = await users.create("operator"), await users.create("operator")
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, name="With charger", lat=LAT, lng=LNG, spots={"ev": 2, "regular": 4},
                               organisation_id=operator.organisation_id)
        plain = await insert_lot(conn, name="Without", lat=LAT + 0.001, lng=LNG, spots={"regular": 4})
    made = await create_charger(settings, lot, "--connectors", "2")
    assert await _detail(client, lot) == _counts(offline=2)  # registered, never heard from
    assert await _detail(client, plain) == _counts(total=0)
    async with serving(settings, ctx) as port, charger(port, made.charge_point_id, made.password) as c:
        await boot(c)
        assert await _detail(client, lot) == _counts(offline=2)  # no status yet: not known to work
        await status(c, 1, "Available", clock.now())
        await status(c, 2, "Available", clock.now())
        assert await _detail(client, lot) == _counts(available=2)
        found = await _search(client)
        assert found == {str(lot): _counts(available=2), str(plain): _counts(total=0)}
        assert set(await _search(client, ev_charger="available")) == {str(lot)}

        await status(c, 1, "Charging", clock.now())
        assert await _detail(client, lot) == _counts(available=1, charging=1)
        await status(c, 0, "Faulted", clock.now(), error="GroundFailure")  # the charger as a whole
        assert await _detail(client, lot) == _counts(faulted=2)
        assert (await _search(client))[str(lot)] == _counts(faulted=2)  # the board counts in SQL: the same rule
        assert await _search(client, ev_charger="available") == {}
        await status(c, 0, "Available", clock.now())
        await status(c, 2, "Faulted", clock.now(), error="PowerMeterFailure")
        assert await _detail(client, lot) == _counts(charging=1, faulted=1)
        assert (await _search(client))[str(lot)] == _counts(charging=1, faulted=1)
        # no free working connector: filtered out by the fast lane, FastAPI's lane (limit=05) and the SQL lane
        for extra in ({}, {"limit": "05"}, {"prefilter": "knn"}):
            assert await _search(client, ev_charger="available", **extra) == {}, extra
        async with ctx.engine.connect() as conn:
            alerts = await charger_alerts(conn=conn, lot_id=lot, now=clock.now())
        assert [(a.kind, a.connector_id, a.detail) for a in alerts] == [
            ("charger_faulted", 2, "Faulted (PowerMeterFailure)")]
        mine = await client.get(f"/api/v1/lots/{lot}/chargers", headers=operator.headers)
        assert mine.status_code == 200, mine.text
        body = mine.json()
        assert body["ev_chargers"] == _counts(charging=1, faulted=1)
        assert [(c["connector_id"], c["status"], c["state"]) for c in body["connectors"]] == [
            (1, "Charging", "charging"), (2, "Faulted", "faulted")]
        assert [(a["kind"], a["connector_id"]) for a in body["alerts"]] == [("charger_faulted", 2)]
        assert (await client.get(f"/api/v1/lots/{lot}/chargers", headers=stranger.headers)).status_code == 404

        await status(c, 2, "Available", clock.now())
        clock.advance(seconds=2 * settings.ocpp_heartbeat_seconds)  # silent for exactly twice the interval
        assert await _detail(client, lot) == _counts(available=1, charging=1)
        assert (await _search(client))[str(lot)] == _counts(available=1, charging=1)
        clock.advance(seconds=1)  # past it
        assert await _detail(client, lot) == _counts(offline=2)
        assert await _search(client) == {str(lot): _counts(offline=2), str(plain): _counts(total=0)}
        async with ctx.engine.connect() as conn:
            assert {a.kind for a in await charger_alerts(conn=conn, lot_id=lot, now=clock.now())} == {"charger_offline"}
        await c.call(call.Heartbeat())
        assert await _detail(client, lot) == _counts(available=1, charging=1)
        assert set(await _search(client, ev_charger="available")) == {str(lot)}


def ev_card(**overrides: Any) -> dict[str, Any]:
    """The helpers' day/night card with its rules pricing the lot's ev spots too (an unpriced type is refused)."""
    data = card(**overrides)
    for rule in data["rules"]:
        rule["spot_types"] = [*rule["spot_types"], "ev"]
    return data


async def test_a_full_charging_session_pays_its_idle_fee_itemised_at_the_exit(
        settings: Settings, ctx: AppContext, client: httpx.AsyncClient, clock: ManualClock) -> None:
    gl = await gate_lot(ctx, rates=False, spots={"regular": 3, "ev": 1})
    async with ctx.engine.begin() as conn:  # 6.00/h idle past 10 minutes, 8.25 % tax
        await put_rate_card(conn, lot_id=gl.lot_id, data=ev_card(idle_fee_per_hour=600, idle_grace_minutes=10),
                            now=clock.now())
    rid = await confirmed_reservation(ctx, gl, plate="EV 42", hours=3)
    tag = reservation_id_tag(await reservation_token(ctx, rid))
    assert len(tag) == 20
    other_lot = await gate_lot(ctx, rates=False)
    foreign_tag = reservation_id_tag(await reservation_token(
        ctx, await confirmed_reservation(ctx, other_lot, plate="ELSEWHERE")))
    made = await create_charger(settings, gl.lot_id)
    entry = await post_event(client, gl, gl.entry, event(ctx, plate="EV42"))
    assert entry["decision"] == "open"
    t0 = clock.now()

    async with serving(settings, ctx) as port, charger(port, made.charge_point_id, made.password) as c:
        await boot(c)
        await status(c, 1, "Available", t0)
        for wrong in ("NOT-A-TAG", foreign_tag):  # unknown, and another lot's reservation
            assert (await c.call(call.Authorize(id_tag=wrong))).id_tag_info["status"] == "Invalid"
        assert (await c.call(call.Authorize(id_tag=tag))).id_tag_info["status"] == "Accepted"
        await status(c, 1, "Preparing", t0)
        started = await c.call(call.StartTransaction(connector_id=1, id_tag=tag, meter_start=1000,
                                                     timestamp=t0.isoformat()))
        assert started.id_tag_info["status"] == "Accepted"
        again = await c.call(call.StartTransaction(connector_id=1, id_tag=tag, meter_start=1000,
                                                   timestamp=t0.isoformat()))
        assert again.transaction_id == started.transaction_id  # a retried start is the same session
        await status(c, 1, "Charging", t0)
        clock.advance(minutes=30)
        await c.call(call.MeterValues(connector_id=1, transaction_id=started.transaction_id, meter_value=[
            {"timestamp": clock.now().isoformat(),
             "sampledValue": [{"value": "6.5", "unit": "kWh", "measurand": "Energy.Active.Import.Register"},
                              {"value": "7400", "measurand": "Power.Active.Import", "unit": "W"}]}]))
        clock.advance(minutes=30)
        await status(c, 1, "SuspendedEV", clock.now())  # full: charging has finished at t0 + 60 min
        clock.advance(minutes=45)
        stopped = await c.call(call.StopTransaction(meter_stop=7000, timestamp=clock.now().isoformat(),  # at the
                                                    transaction_id=started.transaction_id, reason="Local"))  # charger
        assert stopped.id_tag_info is None
        await c.call(call.StopTransaction(meter_stop=7000, timestamp=clock.now().isoformat(),  # retried: no change
                                          transaction_id=started.transaction_id, reason="Local"))
        clock.advance(minutes=5)
        await status(c, 1, "Available", clock.now())  # the cable still in until t0 + 110 min: idle until here
        clock.advance(minutes=20)

    asked = await post_event(client, gl, gl.exit, event(ctx, plate="EV42"))
    idle_fee = 600 * 40 // 60  # 50 idle minutes, 10 of grace
    idle_fee += round(idle_fee * 0.0825)
    assert asked["decision"] == "pay" and asked["fee"] == {"amount": idle_fee, "currency": "usd"}, asked
    assert asked["fee_items"] == [
        {"kind": "parking", "basis": "prepaid", "amount": {"amount": 0, "currency": "usd"}},
        {"kind": "ev_idle_fee", "charging_session_id": started.transaction_id, "energy_wh": 6000,
         "idle_minutes": 50, "amount": {"amount": idle_fee, "currency": "usd"}}]
    paid = await post_event(client, gl, gl.exit, event(ctx, plate="EV42", payment_token="pm_card_visa"))
    assert paid["decision"] == "open" and paid["fee_items"] == asked["fee_items"]
    async with ctx.engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM charging_sessions WHERE id = :id"),
                                  {"id": started.transaction_id})).one()
        fee = await conn.scalar(text("SELECT fee_amount FROM parking_sessions WHERE id = :id"),
                                {"id": uuid.UUID(paid["session_id"])})
    assert (row.id_tag_kind, row.reservation_id, row.idle_fee_amount, row.idle_minutes) == ("reservation", rid,
                                                                                            idle_fee, 50)
    assert str(row.billed_session_id) == paid["session_id"] and fee == idle_fee
    assert row.stop_reason == "Local" and row.charging_ended_at == t0 + timedelta(minutes=60)


async def test_a_registered_plate_charges_and_leaves_within_the_idle_grace_without_an_idle_fee(
        settings: Settings, ctx: AppContext, client: httpx.AsyncClient, clock: ManualClock, users: Any) -> None:
    gl = await gate_lot(ctx, rates=False, spots={"regular": 3})
    async with ctx.engine.begin() as conn:
        await put_rate_card(conn, lot_id=gl.lot_id, data=ev_card(idle_fee_per_hour=600, idle_grace_minutes=10),
                            now=clock.now())
    driver = await users.create("driver")
    assert (await client.post("/api/v1/me/vehicles", headers=driver.headers,
                              json={"plate": "PL 77", "vehicle_type": "ev"})).status_code in (200, 201)
    made = await create_charger(settings, gl.lot_id)
    entry = await post_event(client, gl, gl.entry, event(ctx, plate="PL77"))  # a walk-in
    assert entry["decision"] == "open"
    t0 = clock.now()
    async with serving(settings, ctx) as port, charger(port, made.charge_point_id, made.password) as c:
        await boot(c)
        assert (await c.call(call.Authorize(id_tag="PL-77"))).id_tag_info["status"] == "Accepted"
        assert (await c.call(call.Authorize(id_tag="ZZ999"))).id_tag_info["status"] == "Invalid"  # not registered
        started = await c.call(call.StartTransaction(connector_id=1, id_tag="PL77", meter_start=0,
                                                     timestamp=t0.isoformat()))
        clock.advance(minutes=40)
        await status(c, 1, "SuspendedEV", clock.now())  # full at t0 + 40 min
        clock.advance(minutes=9)
        await c.call(call.StopTransaction(meter_stop=9000, timestamp=clock.now().isoformat(),  # pulled out within
                                          transaction_id=started.transaction_id, reason="EVDisconnected"))  # grace
        clock.advance(minutes=5)
        await status(c, 1, "Available", clock.now())  # reported later: the unplugging was at the stop
    clock.advance(minutes=30)
    asked = await post_event(client, gl, gl.exit, event(ctx, plate="PL77"))
    assert asked["decision"] == "pay"
    parking, charge = asked["fee_items"]
    assert parking["basis"] == "walk_in" and asked["fee"] == parking["amount"]
    assert (charge["idle_minutes"], charge["energy_wh"], charge["amount"]["amount"]) == (9, 9000, 0)

    # the plate hash the tag gave the charging session is purged with the other plates after retention
    async with ctx.engine.begin() as conn:
        kept = await purge_plates_batch(conn=conn, now=clock.now(), retention_days=settings.plate_retention_days)
        assert kept.charging == 0
        purged = await purge_plates_batch(conn=conn, now=clock.now() + timedelta(days=settings.plate_retention_days,
                                                                                 minutes=1),
                                          retention_days=settings.plate_retention_days)
        assert purged.charging == 1
        assert await conn.scalar(text("SELECT plate_hash FROM charging_sessions")) is None
