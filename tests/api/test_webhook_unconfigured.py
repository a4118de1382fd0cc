"""Without PARKGRID_STRIPE_WEBHOOK_SECRET the webhook refuses everything, even a well-signed event."""

import httpx
import stripe

from core.clock import ManualClock

URL = "/api/v1/payments/stripe/webhook"


async def test_no_secret_refuses_every_call(client: httpx.AsyncClient, clock: ManualClock) -> None:
    payload = b'{"id": "evt_1", "object": "event", "type": "customer.created", "data": {"object": {}}}'
    for secret in ("", "whsec_anything_at_all_1234"):
        headers = {"Stripe-Signature": stripe.WebhookSignature.generate_signature_header(
            payload.decode(), secret or "x", timestamp=int(clock.now().timestamp()))}
        res = await client.post(URL, content=payload, headers=headers)
        assert res.status_code == 503
        assert res.json()["type"].endswith("/webhook-not-configured")
    assert (await client.post(URL, content=b"{}")).status_code == 503
