"""The operators' dashboard JSON: occupancy with source and freshness, gates, alerts and their acknowledgement,
today's revenue in the lot's local day; another organisation's operator gets 404."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text

from booking.payments import IntentResult, LocalProvider
from booking.reconcile import reconcile
from booking.runtime import slot_store
from core.clock import ManualClock
from core.context import AppContext
from tests import factories
from tests.api.test_gates_world import event, gate_lot, post_event
from tests.api.test_session_truth import paid_reservation
from tests.factories import UserFactory
from tests.slots_fixtures import delete_prefix


def _h(users: UserFactory, user: factories.TestUser) -> dict[str, str]:
    return users.headers_for(user.id, user.role, user.organisation_id)


async def test_dashboard_numbers_gates_and_scoping(client: httpx.AsyncClient, ctx: AppContext, users: UserFactory,
                                                   clock: ManualClock) -> None:
    op = await users.create("operator")
    stranger = await users.create("operator")
    driver = await users.create("driver")
    gl = await gate_lot(ctx, organisation_id=op.organisation_id, spots={"regular": 4, "ev": 1})
    url = f"/api/v1/lots/{gl.lot_id}/dashboard"
    before = (await client.get(url, headers=_h(users, op)))
    assert before.status_code == 200, before.text
    d0 = before.json()
    assert d0["occupancy"]["total"]["capacity"] == 5 and d0["occupancy"]["total"]["free"] == 5
    assert d0["occupancy"]["total"]["freshness"]["source"] == "database"
    assert {t["spot_type"] for t in d0["occupancy"]["by_type"]} == {"regular", "ev"}
    assert [lv["name"] for lv in d0["occupancy"]["by_level"]] == ["L0"]
    assert all(g["last_event"] is None and not g["online"] for g in d0["gates"])
    assert {a["kind"] for a in d0["alerts"]} == {"gate_silent"}  # never heard from
    assert d0["forecast"] is None and "issue 17" in d0["forecast_status"]["reason"]

    entry = await post_event(client, gl, gl.entry, event(ctx, plate="DASH1"))
    d1 = (await client.get(url, headers=_h(users, op))).json()
    assert d1["occupancy"]["total"]["free"] == 4 and d1["occupancy"]["total"]["occupied"] == 1
    gate = next(g for g in d1["gates"] if g["id"] == str(gl.entry))
    assert gate["online"] and gate["last_decision"]["decision"] == "open" and gate["last_event"]["type"] == "enter_area"
    assert [a["id"] for a in d1["alerts"]] == [f"gate_silent:{gl.exit}"]
    assert d1["occupancy_today"]["points"][-1]["inside"] == 1 and entry["session_id"]

    for who, status in ((stranger, 404), (driver, 403)):
        assert (await client.get(url, headers=_h(users, who))).status_code == status
        res = await client.post(f"/api/v1/lots/{gl.lot_id}/alerts/gate_silent:{gl.exit}/ack", headers=_h(users, who))
        assert res.status_code == status
        res = await client.post(f"/api/v1/lots/{gl.lot_id}/live/token", headers=_h(users, who))
        assert res.status_code == status
    assert (await client.get(f"/api/v1/lots/{uuid.uuid4()}/dashboard", headers=_h(users, op))).status_code == 404


async def test_alerts_nearly_full_unpaid_overstay_repair_and_ack(
        client: httpx.AsyncClient, ctx: AppContext, users: UserFactory, clock: ManualClock) -> None:
    op = await users.create("operator", email=f"op-{uuid.uuid4().hex[:6]}@example.com")
    gl = await gate_lot(ctx, organisation_id=op.organisation_id, spots={"regular": 10})
    for i in range(9):
        await post_event(client, gl, gl.entry, event(ctx, plate=f"FULL{i}"))
    url = f"/api/v1/lots/{gl.lot_id}/dashboard"
    alerts = {a["kind"]: a for a in (await client.get(url, headers=_h(users, op))).json()["alerts"]}
    full = alerts["lot_nearly_full"]
    assert full["severity"] == "warning" and full["details"]["free"] == 1 and full["acknowledged"] is None

    ack = await client.post(f"/api/v1/lots/{gl.lot_id}/alerts/lot_nearly_full/ack", headers=_h(users, op))
    assert ack.status_code == 200, ack.text
    assert ack.json()["acknowledged"] == {"by": op.email, "at": clock.now().isoformat().replace("+00:00", "Z")} \
        or ack.json()["acknowledged"]["by"] == op.email
    clock.advance(minutes=1)
    again = await client.post(f"/api/v1/lots/{gl.lot_id}/alerts/lot_nearly_full/ack", headers=_h(users, op))
    assert again.json()["acknowledged"] == ack.json()["acknowledged"]  # the first who and when are kept
    assert (await client.post(f"/api/v1/lots/{gl.lot_id}/alerts/no-such-alert/ack",
                              headers=_h(users, op))).status_code == 404
    async with ctx.engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM dashboard_alert_acks")) == 1

    # a car leaves: below 90 %, the alert clears; when the lot fills again it is a new, unacknowledged alert
    clock.advance(minutes=30)
    out = await post_event(client, gl, gl.exit, event(ctx, plate="FULL0", payment_token="pm_card_chargeDeclined"))
    alerts = {a["kind"]: a for a in (await client.get(url, headers=_h(users, op))).json()["alerts"]}
    assert "lot_nearly_full" not in alerts
    unpaid = alerts["unpaid_exit"]
    assert unpaid["details"]["amount"] == out["fee"] and "FULL0" not in unpaid["message"]  # no plates in alerts
    await post_event(client, gl, gl.entry, event(ctx, plate="FULLX"))
    alerts = {a["kind"]: a for a in (await client.get(url, headers=_h(users, op))).json()["alerts"]}
    assert alerts["lot_nearly_full"]["acknowledged"] is None

    # Redis lost the lot's slot state: the reconciler repairs it, and says so
    await delete_prefix(ctx.redis, ctx.settings.redis_prefix)
    report = await reconcile(engine=ctx.engine, slots=slot_store(ctx), now=clock.now(), lot_ids=[gl.lot_id])
    assert report.repaired_lots == [str(gl.lot_id)]
    alerts = {a["kind"]: a for a in (await client.get(url, headers=_h(users, op))).json()["alerts"]}
    assert alerts["redis_repair"]["severity"] == "info" and alerts["redis_repair"]["details"]["bits_set"] > 0


async def test_overstay_alert(client: httpx.AsyncClient, ctx: AppContext, users: UserFactory,
                              clock: ManualClock) -> None:
    op = await users.create("operator")
    gl = await gate_lot(ctx, organisation_id=op.organisation_id)
    held = await paid_reservation(client, users, clock, str(gl.lot_id), "LATE1", starts_in=timedelta(0))
    await post_event(client, gl, gl.entry, event(ctx, plate="LATE1"))
    clock.advance(hours=2, minutes=30)
    alerts = (await client.get(f"/api/v1/lots/{gl.lot_id}/dashboard", headers=_h(users, op))).json()["alerts"]
    over = [a for a in alerts if a["kind"] == "overstay"]
    assert len(over) == 1 and over[0]["details"]["minutes_over"] == 30 and held["id"]


async def test_revenue_today_is_the_lots_local_day(client: httpx.AsyncClient, ctx: AppContext, users: UserFactory,
                                                   clock: ManualClock) -> None:
    # 07:30 UTC on 8 Jan is 23:30 on 7 Jan in Los Angeles: money moved then belongs to the 7th there
    clock.set(datetime(2030, 1, 8, 7, 30, tzinfo=UTC))
    op = await users.create("operator")
    gl = await gate_lot(ctx, organisation_id=op.organisation_id)
    held = await paid_reservation(client, users, clock, str(gl.lot_id), "MONEY1", starts_in=timedelta(0))
    price = held["price"]
    assert isinstance(price, dict)
    await post_event(client, gl, gl.entry, event(ctx, plate="WALKPAY"))
    clock.advance(minutes=20)
    paid = await post_event(client, gl, gl.exit, event(ctx, plate="WALKPAY", payment_token="pm_card_visa"))
    url = f"/api/v1/lots/{gl.lot_id}/dashboard"
    rev = (await client.get(url, headers=_h(users, op))).json()["revenue_today"]
    local_day = rev["day"]
    exit_fee = paid["fee"]["amount"] if paid["fee"] else 0
    assert rev["authorised"]["amount"] == price["amount"] + exit_fee
    assert rev["captured"]["amount"] == exit_fee  # the reservation is captured at its exit

    clock.advance(hours=1)  # past local midnight: a new day
    await post_event(client, gl, gl.entry, event(ctx, plate="MONEY1"))
    await post_event(client, gl, gl.exit, event(ctx, plate="MONEY1"))
    rev2 = (await client.get(url, headers=_h(users, op))).json()["revenue_today"]
    assert rev2["day"] != local_day
    assert rev2["captured"]["amount"] == price["amount"] and rev2["authorised"]["amount"] == 0
    assert rev2["debts_outstanding"]["amount"] == 0


class _CaptureUnreachable(LocalProvider):
    """The local provider, except that every capture fails as if the provider were away."""

    async def capture(self, *, intent_id: str, amount: int, idempotency_key: str) -> IntentResult:
        raise ConnectionError("provider unreachable")


async def test_failed_capture_and_stale_sensor_alerts(client: httpx.AsyncClient, ctx: AppContext,
                                                      users: UserFactory, clock: ManualClock) -> None:
    ctx.extras["payment_provider"] = _CaptureUnreachable()
    op = await users.create("operator")
    gl = await gate_lot(ctx, organisation_id=op.organisation_id)
    await paid_reservation(client, users, clock, str(gl.lot_id), "NOCAP1", starts_in=timedelta(0))
    await post_event(client, gl, gl.entry, event(ctx, plate="NOCAP1"))
    clock.advance(minutes=30)
    assert (await post_event(client, gl, gl.exit, event(ctx, plate="NOCAP1")))["decision"] == "open"
    async with ctx.engine.begin() as conn:
        spots = [r.id for r in await conn.execute(text("SELECT id FROM spots WHERE lot_id = :l ORDER BY idx"),
                                                  {"l": gl.lot_id})]
        await conn.execute(text(
            "INSERT INTO sensors (lot_id, id, spot_id, state, last_seen_at, heartbeat_seconds) VALUES"
            " (:l, 's-old', :a, 'occupied', :old, 600), (:l, 's-never', :b, 'unknown', NULL, 600),"
            " (:l, 's-fresh', :c, 'vacant', :now, 600)"),
            {"l": gl.lot_id, "a": spots[0], "b": spots[1], "c": spots[2], "old": clock.now() - timedelta(minutes=25),
             "now": clock.now()})
    url = f"/api/v1/lots/{gl.lot_id}/dashboard"
    clock.advance(minutes=4)  # within the capture grace: the sweeper may still take it
    alerts = {a["kind"]: a for a in (await client.get(url, headers=_h(users, op))).json()["alerts"]}
    assert "capture_failed" not in alerts
    sensors = alerts["sensors_stale"]
    assert sensors["details"] == {"stale": 1, "silent": 1, "total": 3} and sensors["severity"] == "warning"
    clock.advance(minutes=2)
    alerts = {a["kind"]: a for a in (await client.get(url, headers=_h(users, op))).json()["alerts"]}
    failed = alerts["capture_failed"]
    assert failed["severity"] == "critical" and failed["details"]["amount"]["amount"] > 0
    assert (await client.get(url, headers=_h(users, op))).json()["alerts"][0]["severity"] == "critical"  # first


async def test_charger_alerts_offline_then_faulted(client: httpx.AsyncClient, ctx: AppContext, users: UserFactory,
                                                   clock: ManualClock) -> None:
    """A charger that never connected is offline; one reporting Faulted is critical (controllers.chargers)."""
    from controllers.chargers import register_charger

    op = await users.create("operator")
    gl = await gate_lot(ctx, organisation_id=op.organisation_id)
    async with (await ctx.pg()).acquire() as pg:
        charger = await register_charger(conn=pg, lot_id=gl.lot_id, connectors=1, charge_point_id="CP-DASH-1")
    url = f"/api/v1/lots/{gl.lot_id}/dashboard"
    alerts = (await client.get(url, headers=_h(users, op))).json()["alerts"]
    offline = [a for a in alerts if a["kind"] == "charger_offline"]
    assert [a["details"] for a in offline] == [{"charge_point_id": "CP-DASH-1", "connector_id": 1}], alerts
    assert "never connected" in offline[0]["message"] and charger
    async with ctx.engine.begin() as conn:  # the connector reports a fault (as a StatusNotification records it)
        await conn.execute(text(
            "UPDATE charger_connectors SET status = 'Faulted', error_code = 'GroundFailure', status_at = :now"
            " WHERE lot_id = :lot"), {"now": clock.now(), "lot": gl.lot_id})
        await conn.execute(text("UPDATE chargers SET last_seen_at = :now WHERE lot_id = :lot"),
                           {"now": clock.now(), "lot": gl.lot_id})
    alerts = (await client.get(url, headers=_h(users, op))).json()["alerts"]
    faulted = [a for a in alerts if a["kind"] == "charger_faulted"]
    assert len(faulted) == 1 and faulted[0]["severity"] == "critical" and "GroundFailure" in faulted[0]["message"]
    assert not [a for a in alerts if a["kind"] == "charger_offline"]
