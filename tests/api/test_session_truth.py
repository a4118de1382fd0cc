"""Sessions tell the truth about money: a prepaid reservation's session shows what was paid for it, and an exit
whose card was declined is marked unpaid and listed in the lot's debts."""

from __future__ import annotations

from datetime import timedelta

import httpx

from core.clock import ManualClock
from core.context import AppContext
from tests import factories
from tests.api.test_gates_world import event, gate_lot, post_event, scalar
from tests.factories import UserFactory


def _h(users: UserFactory, user: factories.TestUser) -> dict[str, str]:
    return users.headers_for(user.id, user.role, user.organisation_id)


async def paid_reservation(client: httpx.AsyncClient, users: UserFactory, clock: ManualClock, lot: str,
                           plate: str, starts_in: timedelta = timedelta(minutes=5)) -> dict[str, object]:
    """A reservation held and confirmed through the API with the local provider's good test card."""
    driver = await users.create()
    start = clock.now() + starts_in
    held = await client.post("/api/v1/reservations", headers=driver.headers, json={
        "lot_id": lot, "vehicle_type": "regular", "plate": plate, "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=2)).isoformat()})
    assert held.status_code == 201, held.text
    ok = await client.post(f"/api/v1/reservations/{held.json()['id']}/confirm",
                           json={"payment_token": "pm_card_visa"}, headers=driver.headers)
    assert ok.status_code == 200, ok.text
    return held.json()  # type: ignore[no-any-return]


async def test_a_prepaid_reservations_session_shows_what_was_paid(
        client: httpx.AsyncClient, ctx: AppContext, users: UserFactory, clock: ManualClock) -> None:
    op = await users.create("operator")
    gl = await gate_lot(ctx, organisation_id=op.organisation_id)
    held = await paid_reservation(client, users, clock, str(gl.lot_id), "PRE 1")
    price = held["price"]
    assert isinstance(price, dict) and price["amount"] > 0
    entry = await post_event(client, gl, gl.entry, event(ctx, plate="PRE1"))
    assert entry["decision"] == "open"

    url = f"/api/v1/lots/{gl.lot_id}/sessions"
    active = (await client.get(url, headers=_h(users, op))).json()["items"][0]
    assert active["prepaid"] == price and active["payment_status"] == "open"

    clock.advance(hours=1)
    out = await post_event(client, gl, gl.exit, event(ctx, plate="PRE1"))
    assert out["decision"] == "open" and out["fee"] is None  # nothing due at the gate: it was prepaid
    captured = await scalar(ctx, "SELECT amount_captured FROM payments WHERE reservation_id = :r", r=held["id"])
    assert captured == price["amount"]

    done = (await client.get(url, params={"status": "completed"}, headers=_h(users, op))).json()["items"][0]
    assert done["fee"] == price and done["paid"] == price, done  # today's main said fee 0, paid 0
    assert done["prepaid"] == price and done["unpaid"] is None and done["payment_status"] == "paid"


async def test_a_declined_exit_is_marked_unpaid_and_listed_in_the_debts(
        client: httpx.AsyncClient, ctx: AppContext, users: UserFactory, clock: ManualClock) -> None:
    op = await users.create("operator")
    stranger = await users.create("operator")
    gl = await gate_lot(ctx, organisation_id=op.organisation_id)
    entry = await post_event(client, gl, gl.entry, event(ctx, plate="DECL 9"))
    clock.advance(hours=2)
    out = await post_event(client, gl, gl.exit, event(ctx, plate="DECL9", payment_token="pm_card_chargeDeclined"))
    assert out["decision"] == "open" and out["fee"]["amount"] > 0  # never trapped

    items = (await client.get(f"/api/v1/lots/{gl.lot_id}/sessions", headers=_h(users, op))).json()["items"]
    s = items[0]
    assert s["id"] == entry["session_id"]
    assert s["fee"] == out["fee"] and s["paid"] == {"amount": 0, "currency": "usd"}
    assert s["unpaid"] == out["fee"] and s["payment_status"] == "unpaid" and "unpaid" in s["flags"], s

    debts = await client.get(f"/api/v1/lots/{gl.lot_id}/debts", headers=_h(users, op))
    assert debts.status_code == 200, debts.text
    [debt] = debts.json()["items"]
    assert debt["session_id"] == entry["session_id"] and debt["amount"] == out["fee"]
    assert debt["reason"] == "payment_failed" and debt["plate"] == "DECL9" and debt["settled_at"] is None
    assert debts.json()["total"] == out["fee"]
    other = await client.get(f"/api/v1/lots/{gl.lot_id}/debts", headers=_h(users, stranger))
    assert other.status_code == 404


async def test_a_paid_walk_in_is_paid_not_unpaid(client: httpx.AsyncClient, ctx: AppContext, users: UserFactory,
                                                 clock: ManualClock) -> None:
    op = await users.create("operator")
    gl = await gate_lot(ctx, organisation_id=op.organisation_id)
    await post_event(client, gl, gl.entry, event(ctx, plate="GOOD1"))
    clock.advance(hours=1)
    out = await post_event(client, gl, gl.exit, event(ctx, plate="GOOD1", payment_token="pm_card_visa"))
    s = (await client.get(f"/api/v1/lots/{gl.lot_id}/sessions", headers=_h(users, op))).json()["items"][0]
    assert s["fee"] == s["paid"] == out["fee"] and s["unpaid"] is None and s["payment_status"] == "paid"
    assert s["prepaid"] is None
    assert (await client.get(f"/api/v1/lots/{gl.lot_id}/debts", headers=_h(users, op))).json()["items"] == []
