"""Operators' sessions API: the list (plates in full for the lot's operators only), lost tickets, violations."""

from __future__ import annotations

from datetime import timedelta

import httpx

from core.clock import ManualClock
from core.context import AppContext
from tests import factories
from tests.api.test_gates_world import confirmed_reservation, event, gate_lot, post_event, scalar
from tests.factories import UserFactory


def _h(users: UserFactory, user: factories.TestUser) -> dict[str, str]:
    """Fresh bearer headers: the tests move the clock past the access-token lifetime."""
    return users.headers_for(user.id, user.role, user.organisation_id)


async def test_sessions_list_for_the_lots_operators_only(client: httpx.AsyncClient, ctx: AppContext,
                                                         users: UserFactory, clock: ManualClock) -> None:
    op = await users.create("operator")
    stranger = await users.create("operator")
    driver = await users.create("driver")
    gl = await gate_lot(ctx, organisation_id=op.organisation_id, spots={"regular": 5})
    rid = await confirmed_reservation(ctx, gl, plate="RES1")
    await post_event(client, gl, gl.entry, event(ctx, plate="RES1"))
    for i in range(3):
        clock.advance(minutes=1)
        await post_event(client, gl, gl.entry, event(ctx, plate=f"WALK{i}"))
    clock.advance(minutes=30)
    await post_event(client, gl, gl.exit, event(ctx, plate="RES1"))

    url = f"/api/v1/lots/{gl.lot_id}/sessions"
    res = await client.get(url, headers=_h(users, op))
    assert res.status_code == 200, res.text
    items = res.json()["items"]
    assert len(items) == 4 and res.json()["next_cursor"] is None
    assert {"id", "plate", "spot", "entered_at", "exited_at", "reservation_id", "fee"} <= set(items[0])
    assert [i["plate"] for i in items] == ["WALK2", "WALK1", "WALK0", "RES1"]  # newest entry first, plates in full
    done = items[-1]
    assert done["reservation_id"] == str(rid) and done["exited_at"] is not None
    assert done["fee"] == done["prepaid"]  # the reservation's price; nothing more was due at the exit

    active = (await client.get(url, params={"status": "active"}, headers=_h(users, op))).json()["items"]
    assert len(active) == 3 and all(i["exited_at"] is None for i in active)
    completed = (await client.get(url, params={"status": "completed"}, headers=_h(users, op))).json()["items"]
    assert [i["plate"] for i in completed] == ["RES1"]

    page1 = (await client.get(url, params={"limit": 2}, headers=_h(users, op))).json()
    page2 = (await client.get(url, params={"limit": 2, "cursor": page1["next_cursor"]}, headers=_h(users, op))).json()
    assert [i["plate"] for i in page1["items"] + page2["items"]] == ["WALK2", "WALK1", "WALK0", "RES1"]
    assert page2["next_cursor"] is None

    assert (await client.get(url, headers=_h(users, stranger))).status_code == 404
    assert (await client.get(url, headers=_h(users, driver))).status_code == 403
    assert (await client.get(url, headers=gl.headers)).status_code == 401


async def test_lost_ticket_charges_from_entry_or_the_lots_flat_fee(client: httpx.AsyncClient, ctx: AppContext,
                                                                   users: UserFactory, clock: ManualClock) -> None:
    op = await users.create("operator")
    gl = await gate_lot(ctx, organisation_id=op.organisation_id, lost_ticket_fee_amount=2500)
    entry = await post_event(client, gl, gl.entry, event(ctx, plate="LOST1"))
    clock.advance(hours=3)
    url = f"/api/v1/lots/{gl.lot_id}/sessions/lost-ticket"
    found = await client.post(url, json={"plate": "lost 1"}, headers=_h(users, op))
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["session_id"] == entry["session_id"] and body["basis"] == "entry_time" and body["fee"]["amount"] > 0
    assert await scalar(ctx, "SELECT lost_ticket_at IS NOT NULL FROM parking_sessions")
    asked = await post_event(client, gl, gl.exit, event(ctx, plate="LOST1"))
    assert asked["decision"] == "pay" and asked["fee"] == body["fee"]

    unknown = await client.post(url, json={"plate": "NOBODY"}, headers=_h(users, op))
    assert unknown.json() == {"session_id": None, "plate": "NOBODY", "entered_at": None,
                              "fee": {"amount": 2500, "currency": "usd"}, "basis": "lost_ticket_fee"}

    no_fee = await gate_lot(ctx, organisation_id=op.organisation_id)
    res = await client.post(f"/api/v1/lots/{no_fee.lot_id}/sessions/lost-ticket", json={"plate": "NOBODY"},
                            headers=_h(users, op))
    assert res.status_code == 404


async def test_violations_list_overstays_with_the_fee_so_far(client: httpx.AsyncClient, ctx: AppContext,
                                                             users: UserFactory, clock: ManualClock) -> None:
    op = await users.create("operator")
    gl = await gate_lot(ctx, organisation_id=op.organisation_id)
    await confirmed_reservation(ctx, gl, plate="LATE1", hours=1)
    await confirmed_reservation(ctx, gl, plate="ONTIME1", hours=3)
    await post_event(client, gl, gl.entry, event(ctx, plate="LATE1"))
    await post_event(client, gl, gl.entry, event(ctx, plate="ONTIME1"))
    clock.advance(minutes=90)
    res = await client.get(f"/api/v1/lots/{gl.lot_id}/violations", headers=_h(users, op))
    assert res.status_code == 200, res.text
    body = res.json()
    assert [v["plate"] for v in body["items"]] == ["LATE1"]
    v = body["items"][0]
    assert v["kind"] == "overstay" and v["minutes_over"] == 30 and v["fee_so_far"]["amount"] > 0
    assert body["not_checked"] == []
    clock.advance(timedelta(minutes=1))
    other = await users.create("operator")
    assert (await client.get(f"/api/v1/lots/{gl.lot_id}/violations", headers=_h(users, other))).status_code == 404


async def test_bay_sensors_reveal_unbooked_cars_and_wrong_spot_types(client: httpx.AsyncClient, ctx: AppContext,
                                                                    users: UserFactory, clock: ManualClock) -> None:
    op = await users.create("operator")
    gl = await gate_lot(ctx, organisation_id=op.organisation_id, spots={"regular": 2, "ev": 1})
    entered = await post_event(client, gl, gl.entry, event(ctx, plate="WALKIN1"))
    assert entered["decision"] == "open"
    taken = entered["spot"]["label"]
    labels = ["L0-001", "L0-002", "L0-003"]  # two regular bays, then the EV bay
    free_regular = next(label for label in labels[:2] if label != taken)
    now = clock.now().isoformat()
    batch = {"events": [{"event_id": f"s-{label}", "sensor_id": label, "state": "occupied", "confidence": 0.95,
                         "occurred_at": now} for label in labels]}
    res = await client.post(f"/api/v1/lots/{gl.lot_id}/sensor-events", json=batch, headers=gl.headers)
    assert res.status_code == 202 and res.json()["accepted"] == 3, res.text
    body = (await client.get(f"/api/v1/lots/{gl.lot_id}/violations", headers=_h(users, op))).json()
    found = {(v["kind"], v["spot"]["label"]) for v in body["items"]}
    assert found == {("occupied_without_session", free_regular), ("wrong_spot_type", "L0-003")}
