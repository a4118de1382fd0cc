"""3-D Secure: pm_card_authenticationRequired answers what the app needs, and a later confirm completes the hold."""

from datetime import timedelta

import httpx
import stripe

from core.clock import ManualClock
from core.context import AppContext
from tests.booking_helpers import fixed_pricer
from tests.factories import UserFactory, insert_lot


async def test_authentication_required_then_confirm_completes_the_hold(
        client: httpx.AsyncClient, ctx: AppContext, users: UserFactory, clock: ManualClock) -> None:
    ctx.extras["pricer"] = fixed_pricer(1500)
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 1})
    driver = await users.create()
    start = clock.now() + timedelta(hours=2)
    held = (await client.post("/api/v1/reservations", headers=driver.headers, json={
        "lot_id": str(lot), "vehicle_type": "regular", "plate": "SCA 3DS", "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=1)).isoformat()})).json()
    confirm = f"/api/v1/reservations/{held['id']}/confirm"

    first = await client.post(confirm, headers=driver.headers, json={"payment_token": "pm_card_authenticationRequired"})
    assert first.status_code == 402 and first.headers["content-type"].startswith("application/problem+json")
    problem = first.json()
    assert problem["type"].endswith("/payment-requires-action")
    pay = problem["payment"]
    assert pay["status"] == "requires_action" and pay["client_secret"] == held["payment"]["client_secret"]
    # the shape Stripe's own SDK reads (what a Stripe.js / mobile SDK client is handed)
    intent = stripe.PaymentIntent.construct_from(
        {"id": pay["intent_id"], "object": "payment_intent", "status": pay["status"],
         "client_secret": pay["client_secret"], "next_action": pay["next_action"]}, "sk_test_x")
    assert intent.next_action is not None and intent.next_action.type == "redirect_to_url"
    url = intent.next_action.redirect_to_url.url
    assert (await client.get(f"/api/v1/reservations/{held['id']}", headers=driver.headers)).json()["status"] == "held"

    # not authenticated yet: confirming again asks again (the negative control of the step below)
    again = await client.post(confirm, headers=driver.headers, json={"payment_token": "pm_card_authenticationRequired"})
    assert again.status_code == 402 and again.json()["type"].endswith("/payment-requires-action")
    wrong = await client.post(url.split("?")[0], params={"client_secret": "pi_x_secret_wrong"})
    assert wrong.status_code == 404

    done = await client.post(url)  # the customer completes the challenge
    assert done.status_code == 200 and done.json() == {"intent_id": pay["intent_id"], "authenticated": True}
    ok = await client.post(confirm, headers=driver.headers, json={"payment_token": "pm_card_authenticationRequired"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "confirmed"
    assert ok.json()["payment"]["state"] == "authorised"
    assert ok.json()["payment"]["authorised"] == {"amount": 1500, "currency": "usd"}
