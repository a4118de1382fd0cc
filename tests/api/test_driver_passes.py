"""Monthly passes drivers buy (FR-7): priced by the card, charged at purchase and at each renewal, cancellable at
period end; a declined renewal lapses the pass with a notice, and the gate honours only a paid pass."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx

from booking.pass_subscriptions import renew_due
from booking.wiring import booking_deps
from core.clock import ManualClock
from core.context import AppContext
from core.security import plate_hash
from pricing.service import put_rate_card
from tests.api.test_gates_world import event, gate_lot, post_event, scalar
from tests.factories import UserFactory
from tests.payment_fakes import StrictProvider
from tests.pricing_helpers import card

PRICE = 9000


async def _lot(ctx: AppContext, clock: ManualClock):  # type: ignore[no-untyped-def]
    gl = await gate_lot(ctx, rates=False)
    async with ctx.engine.begin() as conn:
        await put_rate_card(conn, lot_id=gl.lot_id, data=card(monthly_pass_amount=PRICE), now=clock.now())
    return gl


async def _pass_entries(ctx: AppContext) -> int:
    return int(await scalar(ctx, "SELECT count(*) FROM parking_sessions WHERE kind = 'pass'"))


def _to(clock: ManualClock, when: datetime) -> None:
    clock.advance(when - clock.now())


async def test_bought_renewed_and_lapsed_on_a_declined_renewal(client: httpx.AsyncClient, ctx: AppContext,
                                                               users: UserFactory, clock: ManualClock) -> None:
    provider = ctx.extras["payment_provider"] = StrictProvider()
    gl, driver = await _lot(ctx, clock), await users.create()
    bought = await client.post("/api/v1/me/passes", headers=driver.headers, json={
        "lot_id": str(gl.lot_id), "plate": "PASS 1", "payment_token": "pm_card_visa"})
    assert bought.status_code == 201, bought.text
    sub = bought.json()
    assert sub["status"] == "active" and sub["current_month"] == "2030-01"
    assert sub["price"] == {"amount": PRICE, "currency": "usd"}
    charged = [i for i in provider.intents.values() if i.captured]
    assert [(i.captured, i.moves) for i in charged] == [(PRICE, ["authorise", "capture"])]

    entry = await post_event(client, gl, gl.entry, event(ctx, plate="PASS1"))
    assert entry["message"] == "Welcome, pass holder" and await _pass_entries(ctx) == 1

    _to(clock, datetime.fromisoformat("2030-02-01T09:00:00+00:00"))  # 01:00 on 1 February in Los Angeles
    assert await renew_due(deps=booking_deps(ctx), now=clock.now()) == {"renewed": 1, "ended": 0, "lapsed": 0}
    assert await renew_due(deps=booking_deps(ctx), now=clock.now()) == {"renewed": 0, "ended": 0, "lapsed": 0}
    assert sum(i.captured for i in provider.intents.values()) == 2 * PRICE  # charged once for February
    headers = users.headers_for(driver.id, "driver", None)
    listed = (await client.get("/api/v1/me/passes", headers=headers)).json()["items"]
    assert [(s["status"], s["current_month"]) for s in listed] == [("active", "2030-02")]

    # the card on file stops working: March's renewal is declined
    async with ctx.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(text("UPDATE pass_subscriptions SET payment_method = 'pm_card_chargeDeclined'"))
    _to(clock, datetime.fromisoformat("2030-03-01T09:00:00+00:00"))
    assert await renew_due(deps=booking_deps(ctx), now=clock.now()) == {"renewed": 0, "ended": 0, "lapsed": 1}
    headers = users.headers_for(driver.id, "driver", None)
    lapsed = (await client.get("/api/v1/me/passes", headers=headers)).json()["items"][0]
    assert lapsed["status"] == "lapsed" and "2030-03" in lapsed["notice"] and "declined" in lapsed["notice"]
    assert await scalar(ctx, "SELECT count(*) FROM monthly_passes WHERE month = '2030-03-01'") == 0
    await post_event(client, gl, gl.exit, event(ctx, plate="PASS1"))  # the January car leaves
    await post_event(client, gl, gl.entry, event(ctx, plate="PASS1"))
    assert await _pass_entries(ctx) == 1  # not admitted as a pass holder in March
    assert provider.violations == []


async def test_the_gate_honours_only_a_paid_pass(client: httpx.AsyncClient, ctx: AppContext,
                                                 clock: ManualClock) -> None:
    gl = await _lot(ctx, clock)
    ph = plate_hash(ctx.settings.secret_bytes, "UNPAID1")
    async with ctx.engine.begin() as conn:
        from sqlalchemy import text

        pass_id = await conn.scalar(text(
            "INSERT INTO monthly_passes (lot_id, plate_hash, month, price_amount, created_at)"
            " VALUES (:l, :ph, '2030-01-01', 9000, :now) RETURNING id"), {"l": gl.lot_id, "ph": ph, "now": clock.now()})
    await post_event(client, gl, gl.entry, event(ctx, plate="UNPAID1"))  # written, never paid: not a pass
    assert await _pass_entries(ctx) == 0
    await post_event(client, gl, gl.exit, event(ctx, plate="UNPAID1"))
    async with ctx.engine.begin() as conn:  # the control: the same pass, paid, opens as one
        await conn.execute(text("UPDATE monthly_passes SET paid_at = :now WHERE id = :id"),
                           {"now": clock.now(), "id": pass_id})
    await post_event(client, gl, gl.entry, event(ctx, plate="UNPAID1"))
    assert await _pass_entries(ctx) == 1


async def test_declined_purchase_keeps_nothing_and_cancel_ends_at_period_end(
        client: httpx.AsyncClient, ctx: AppContext, users: UserFactory, clock: ManualClock) -> None:
    provider = ctx.extras["payment_provider"] = StrictProvider()
    gl, driver = await _lot(ctx, clock), await users.create()
    declined = await client.post("/api/v1/me/passes", headers=driver.headers, json={
        "lot_id": str(gl.lot_id), "plate": "PASS2", "payment_token": "pm_card_chargeDeclined"})
    assert declined.status_code == 402 and declined.json()["type"].endswith("/payment-failed")
    assert (await client.get("/api/v1/me/passes", headers=driver.headers)).json()["items"] == []
    assert await scalar(ctx, "SELECT count(*) FROM monthly_passes") == 0

    sub = (await client.post("/api/v1/me/passes", headers=driver.headers, json={
        "lot_id": str(gl.lot_id), "plate": "PASS2", "payment_token": "pm_card_visa"})).json()
    other = await users.create()
    assert (await client.post(f"/api/v1/me/passes/{sub['id']}/cancel", headers=other.headers)).status_code == 404
    cancelled = await client.post(f"/api/v1/me/passes/{sub['id']}/cancel", headers=driver.headers)
    assert cancelled.status_code == 200 and cancelled.json()["cancel_at_period_end"] is True
    assert cancelled.json()["status"] == "active"  # January stays paid and valid
    await post_event(client, gl, gl.entry, event(ctx, plate="PASS2"))
    assert await _pass_entries(ctx) == 1

    clock.advance(timedelta(days=26))
    assert await renew_due(deps=booking_deps(ctx), now=clock.now()) == {"renewed": 0, "ended": 1, "lapsed": 0}
    assert sum(i.captured for i in provider.intents.values()) == PRICE  # nothing charged for February
    listed = (await client.get("/api/v1/me/passes", headers=users.headers_for(driver.id, "driver", None))).json()
    assert listed["items"][0]["status"] == "cancelled"

    no_passes = await gate_lot(ctx, rates=False)
    async with ctx.engine.begin() as conn:
        await put_rate_card(conn, lot_id=no_passes.lot_id, data=card(), now=clock.now())  # no monthly_pass_amount
    refused = await client.post("/api/v1/me/passes", headers=users.headers_for(driver.id, "driver", None), json={
        "lot_id": str(no_passes.lot_id), "plate": "PASS3", "payment_token": "pm_card_visa"})
    assert refused.status_code == 422 and refused.json()["errors"][0]["loc"] == ["body", "lot_id"]
