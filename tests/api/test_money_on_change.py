"""Money on every change: a reservation's price is its current window's; extending collects the difference,
shortening keeps only the policy's fee, and cancel's refund agrees with the payment's amounts (issue 20)."""

from datetime import datetime, timedelta
from typing import Any

import httpx

from booking import transitions
from booking.wiring import booking_deps
from core.clock import ManualClock
from core.context import AppContext
from tests.factories import UserFactory, insert_lot
from tests.payment_fakes import StrictProvider
from tests.pricing_helpers import WEEK, give_card

HOURLY = 400


async def _priced_lot(ctx: AppContext) -> str:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 2})
        await give_card(conn, lot, tax_percent="0", rules=[
            {"name": "all day", "spot_types": ["regular"], "days": WEEK, "from": "00:00", "to": "24:00",
             "rate_per_hour": HOURLY, "increment_minutes": 15}],
            cancellation={"free_until_minutes_before": 60, "fee_percent": 50})
    return str(lot)


def _window(clock: ManualClock, *, start_h: float, hours: float) -> dict[str, str]:
    start = clock.now() + timedelta(hours=start_h)
    return {"starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=hours)).isoformat()}


async def _book(client: httpx.AsyncClient, lot: str, headers: dict[str, str], clock: ManualClock, *,
                start_h: float = 3, hours: float = 2, confirm: bool = True) -> dict[str, Any]:
    res = await client.post("/api/v1/reservations", headers=headers, json={
        "lot_id": lot, "vehicle_type": "regular", "plate": "MNY 100", **_window(clock, start_h=start_h, hours=hours)})
    assert res.status_code == 201, res.text
    if not confirm:
        return res.json()  # type: ignore[no-any-return]
    ok = await client.post(f"/api/v1/reservations/{res.json()['id']}/confirm", headers=headers,
                           json={"payment_token": "pm_card_visa"})
    assert ok.status_code == 200, ok.text
    return ok.json()  # type: ignore[no-any-return]


def _usd(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "usd"}


async def _finish(ctx: AppContext, reservation_id: str, clock: ManualClock, *, after_h: float) -> None:
    deps = booking_deps(ctx)
    clock.advance(timedelta(hours=after_h))
    await transitions.check_in(deps=deps, reservation_id=reservation_id, now=clock.now())  # type: ignore[arg-type]
    await transitions.check_out(deps=deps, reservation_id=reservation_id, now=clock.now())  # type: ignore[arg-type]


async def test_extending_a_confirmed_reservation_authorises_and_captures_the_difference(
        client: httpx.AsyncClient, ctx: AppContext, users: UserFactory, clock: ManualClock) -> None:
    provider = ctx.extras["payment_provider"] = StrictProvider()
    lot, driver = await _priced_lot(ctx), await users.create()
    booked = await _book(client, lot, driver.headers, clock)
    assert booked["price"] == _usd(2 * HOURLY) and booked["payment"]["authorised"] == _usd(2 * HOURLY)

    res = await client.patch(f"/api/v1/reservations/{booked['id']}", headers={**driver.headers,
                             "Idempotency-Key": "ext-1"}, json=_window(clock, start_h=3, hours=3))
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["price"] == _usd(3 * HOURLY)  # the price of the window it now holds
    assert body["change"]["previous_price"] == _usd(2 * HOURLY) and body["change"]["difference"] == _usd(HOURLY)
    assert body["change"]["authorised_added"] == _usd(HOURLY)
    assert body["payment"]["state"] == "authorised" and body["payment"]["authorised"] == _usd(3 * HOURLY)
    quote = await client.get(f"/api/v1/lots/{lot}/availability", headers=driver.headers,
                             params={"vehicle_type": "regular", **_window(clock, start_h=3, hours=3)})
    assert quote.json()["quote"]["total"] == body["price"]  # what a new booking of that window would cost

    replay = await client.patch(f"/api/v1/reservations/{booked['id']}", headers={**driver.headers,
                                "Idempotency-Key": "ext-1"}, json=_window(clock, start_h=3, hours=3))
    assert replay.json() == body  # same key and body: the first answer, no second increment
    intent = provider.intents[body["payment"]["intent_id"]]
    assert intent.moves == ["authorise", "increment"] and intent.authorised == 3 * HOURLY

    await _finish(ctx, booked["id"], clock, after_h=3)
    fresh = users.headers_for(driver.id, "driver", None)  # the clock moved past the first token's life
    done = (await client.get(f"/api/v1/reservations/{booked['id']}", headers=fresh)).json()
    assert done["payment"]["captured"] == _usd(3 * HOURLY) and done["payment"]["state"] == "captured"
    assert provider.violations == []


async def test_a_declined_extension_changes_nothing(client: httpx.AsyncClient, ctx: AppContext,
                                                     users: UserFactory, clock: ManualClock) -> None:
    provider = ctx.extras["payment_provider"] = StrictProvider()
    provider.decline_increments = True
    lot, driver = await _priced_lot(ctx), await users.create()
    booked = await _book(client, lot, driver.headers, clock)
    res = await client.patch(f"/api/v1/reservations/{booked['id']}", headers=driver.headers,
                             json=_window(clock, start_h=3, hours=3))
    assert res.status_code == 402 and res.json()["type"].endswith("/payment-failed"), res.text
    after = (await client.get(f"/api/v1/reservations/{booked['id']}", headers=driver.headers)).json()
    assert datetime.fromisoformat(after["ends_at"]) == datetime.fromisoformat(booked["ends_at"])
    assert after["price"] == booked["price"]
    assert after["payment"]["authorised"] == booked["payment"]["authorised"]


async def test_a_held_reservation_is_repriced_before_it_is_paid(client: httpx.AsyncClient, ctx: AppContext,
                                                                 users: UserFactory, clock: ManualClock) -> None:
    provider = ctx.extras["payment_provider"] = StrictProvider()
    lot, driver = await _priced_lot(ctx), await users.create()
    held = await _book(client, lot, driver.headers, clock, confirm=False)
    res = await client.patch(f"/api/v1/reservations/{held['id']}", headers=driver.headers,
                             json=_window(clock, start_h=3, hours=4))
    assert res.status_code == 200 and res.json()["price"] == _usd(4 * HOURLY)
    ok = await client.post(f"/api/v1/reservations/{held['id']}/confirm", headers=driver.headers,
                           json={"payment_token": "pm_card_visa"})
    assert ok.json()["payment"]["authorised"] == _usd(4 * HOURLY)
    assert provider.intents[ok.json()["payment"]["intent_id"]].authorised == 4 * HOURLY


async def test_shortening_keeps_only_the_policys_fee(client: httpx.AsyncClient, ctx: AppContext,
                                                      users: UserFactory, clock: ManualClock) -> None:
    provider = ctx.extras["payment_provider"] = StrictProvider()
    lot, driver = await _priced_lot(ctx), await users.create()
    early = await _book(client, lot, driver.headers, clock, start_h=3, hours=3)
    free = await client.patch(f"/api/v1/reservations/{early['id']}", headers=driver.headers,
                              json=_window(clock, start_h=3, hours=2))
    # more than 60 minutes before the start: the removed hour is released in full
    assert free.json()["price"] == _usd(2 * HOURLY)
    assert free.json()["change"]["fee"] == _usd(0) and free.json()["change"]["released"] == _usd(HOURLY)

    clock.advance(timedelta(hours=2, minutes=30))  # 30 minutes before the start: 50 % of removed time is kept
    late = await client.patch(f"/api/v1/reservations/{early['id']}", headers=users.headers_for(driver.id, "driver", None),
                              json={"starts_at": early["starts_at"],
                                    "ends_at": (clock.now() + timedelta(minutes=30, hours=1)).isoformat()})
    assert late.status_code == 200, late.text
    assert late.json()["price"] == _usd(HOURLY)
    assert late.json()["change"]["fee"] == _usd(HOURLY // 2)
    assert late.json()["change"]["released"] == _usd(HOURLY // 2)

    await _finish(ctx, early["id"], clock, after_h=0.5)
    fresh = users.headers_for(driver.id, "driver", None)  # the clock moved past the first token's life
    done = (await client.get(f"/api/v1/reservations/{early['id']}", headers=fresh)).json()
    pay = done["payment"]
    assert pay["captured"] == _usd(HOURLY + HOURLY // 2)  # the hour kept + the fee of the removed hour
    assert pay["voided"] == _usd(3 * HOURLY - HOURLY - HOURLY // 2)
    assert pay["authorised"]["amount"] == pay["captured"]["amount"] + pay["voided"]["amount"]
    assert provider.violations == []


async def test_cancel_refund_agrees_with_the_payment(client: httpx.AsyncClient, ctx: AppContext,
                                                     users: UserFactory, clock: ManualClock) -> None:
    lot, driver = await _priced_lot(ctx), await users.create()
    booked = await _book(client, lot, driver.headers, clock, start_h=0.5, hours=2)  # inside the fee window
    res = await client.post(f"/api/v1/reservations/{booked['id']}/cancel", headers=driver.headers)
    assert res.status_code == 200, res.text
    body = res.json()
    pay = body["payment"]
    assert body["refund"] == _usd(HOURLY)  # 50 % of 800 back
    assert pay["captured"] == _usd(HOURLY) and pay["state"] == "captured"
    assert body["refund"]["amount"] == pay["voided"]["amount"] + pay["refunded"]["amount"]

    free = await _book(client, lot, {**driver.headers}, clock, start_h=5, hours=1)
    res = await client.post(f"/api/v1/reservations/{free['id']}/cancel", headers=driver.headers)
    body = res.json()
    assert body["refund"] == _usd(HOURLY) and body["payment"]["state"] == "voided"
    assert body["payment"]["voided"] == body["refund"] and body["payment"]["captured"] == _usd(0)
