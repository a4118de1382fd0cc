"""StripeProvider through the real SDK with a recording HTTP client: no network, real request encoding."""

import json
from typing import Any
from urllib.parse import parse_qs

import stripe

from booking.stripe_provider import StripeProvider


class Recorder(stripe.HTTPClient):
    name = "recorder"

    def __init__(self, replies: list[tuple[int, dict[str, Any], dict[str, str]]]) -> None:
        super().__init__()
        self.replies = replies
        self.calls: list[tuple[str, str, dict[str, str], dict[str, list[str]]]] = []

    def request(self, method, url, headers, post_data=None):  # type: ignore[no-untyped-def]
        raise AssertionError("sync call")

    async def request_async(self, method, url, headers, post_data=None):  # type: ignore[no-untyped-def]
        body = post_data.decode() if isinstance(post_data, bytes) else (post_data or "")
        self.calls.append((method, url, dict(headers), parse_qs(body)))
        status, reply, extra = self.replies.pop(0)
        return json.dumps(reply).encode(), status, {"Request-Id": "req_1", **extra}


def intent(status: str, **fields: Any) -> dict[str, Any]:
    return {"id": "pi_123", "object": "payment_intent", "status": status, "amount": 1250, "amount_capturable": 0,
            "amount_received": 0, "client_secret": "pi_123_secret_x", **fields}


def provider(replies: list[tuple[int, dict[str, Any], dict[str, str]]]) -> tuple[StripeProvider, Recorder]:
    http = Recorder(replies)
    return StripeProvider(stripe.StripeClient("sk_test_fake", http_client=http, max_network_retries=0)), http


async def test_manual_capture_intents_with_our_idempotency_keys() -> None:
    p, http = provider([(200, intent("requires_payment_method"), {}),
                        (200, intent("requires_capture", amount_capturable=1250), {}),
                        (200, intent("succeeded", amount_received=500), {}),
                        (200, {"id": "re_1", "object": "refund", "amount": 100, "payment_intent": "pi_123"}, {})])
    created = await p.create_intent(amount=1250, currency="usd", idempotency_key="reservation:r1:intent",
                                    metadata={"reservation_id": "r1"})
    assert (created.intent_id, created.client_secret) == ("pi_123", "pi_123_secret_x")
    auth = await p.authorize(intent_id="pi_123", payment_method="pm_card_visa", amount=1250,
                             idempotency_key="reservation:r1:authorize:pm_card_visa")
    assert (auth.status, auth.amount_capturable) == ("requires_capture", 1250)
    cap = await p.capture(intent_id="pi_123", amount=500, idempotency_key="reservation:r1:capture")
    assert (cap.status, cap.amount_received) == ("succeeded", 500)
    ref = await p.refund(intent_id="pi_123", amount=100, idempotency_key="reservation:r1:refund")
    assert (ref.refund_id, ref.amount) == ("re_1", 100)
    (m1, u1, h1, b1), (_, u2, h2, b2), (_, u3, h3, b3), (_, u4, h4, b4) = http.calls
    assert (m1, u1.endswith("/v1/payment_intents")) == ("post", True)
    assert b1["amount"] == ["1250"] and b1["capture_method"] == ["manual"] and b1["metadata[reservation_id]"] == ["r1"]
    assert h1["Idempotency-Key"] == "reservation:r1:intent"
    assert u2.endswith("/v1/payment_intents/pi_123/confirm") and b2["payment_method"] == ["pm_card_visa"]
    assert h2["Idempotency-Key"] == "reservation:r1:authorize:pm_card_visa"
    assert u3.endswith("/capture") and b3["amount_to_capture"] == ["500"] and h3["Idempotency-Key"].endswith(":capture")
    assert u4.endswith("/v1/refunds") and b4["payment_intent"] == ["pi_123"] and b4["amount"] == ["100"]
    assert h4["Idempotency-Key"] == "reservation:r1:refund"


async def test_decline_and_unexpected_state_and_replayed_authorisation() -> None:
    declined = {"error": {"type": "card_error", "code": "card_declined", "message": "Your card was declined."}}
    unexpected = {"error": {"type": "invalid_request_error", "code": "payment_intent_unexpected_state",
                            "message": "already canceled"}}
    p, http = provider([(402, declined, {}),
                        (400, unexpected, {}), (200, intent("canceled"), {}),
                        (200, intent("requires_capture", amount_capturable=1250), {"Idempotent-Replayed": "true"}),
                        (200, intent("canceled"), {})])
    res = await p.authorize(intent_id="pi_123", payment_method="pm_card_chargeDeclined", amount=1250,
                            idempotency_key="k1")
    assert (res.status, res.decline_code) == ("requires_payment_method", "card_declined")
    res = await p.cancel(intent_id="pi_123", idempotency_key="k2")  # already cancelled: read back, not an error
    assert res.status == "canceled" and http.calls[2][0] == "get"
    res = await p.authorize(intent_id="pi_123", payment_method="pm_card_visa", amount=1250, idempotency_key="k3")
    assert res.status == "canceled" and http.calls[-1][0] == "get"  # a replayed success is re-read


async def test_three_d_secure_next_action_and_incremental_authorisation() -> None:
    action = {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": "x"}}
    declined = {"error": {"type": "card_error", "code": "card_declined", "message": "Your card was declined."}}
    p, http = provider([(200, intent("requires_action", next_action=action), {}),
                        (200, intent("requires_capture", amount=1750, amount_capturable=1750), {}),
                        (402, declined, {}),
                        (200, intent("requires_capture", amount=1750, amount_capturable=1750), {}),
                        (200, intent("requires_payment_method", amount=900), {})])
    auth = await p.authorize(intent_id="pi_123", payment_method="pm_card_authenticationRequired", amount=1250,
                             idempotency_key="reservation:r1:authorize:pm_card_authenticationRequired")
    assert (auth.status, auth.client_secret, auth.next_action) == ("requires_action", "pi_123_secret_x", action)
    assert http.calls[0][3]["payment_method_options[card][request_incremental_authorization]"] == ["if_available"]
    more = await p.increment_authorization(intent_id="pi_123", amount=1750, idempotency_key="reservation:r1:increment:1750")
    assert (more.status, more.amount_capturable, more.next_action) == ("requires_capture", 1750, None)
    _, url, headers, body = http.calls[1]
    assert url.endswith("/v1/payment_intents/pi_123/increment_authorization") and body["amount"] == ["1750"]
    assert headers["Idempotency-Key"] == "reservation:r1:increment:1750"
    refused = await p.increment_authorization(intent_id="pi_123", amount=2500,
                                              idempotency_key="reservation:r1:increment:2500")
    assert refused.decline_code == "card_declined"  # the intent as it is now, with the issuer's refusal
    changed = await p.update_amount(intent_id="pi_123", amount=900, idempotency_key="reservation:r1:amount:900")
    assert changed.status == "requires_payment_method"
    _, url, headers, body = http.calls[4]
    assert url.endswith("/v1/payment_intents/pi_123") and body["amount"] == ["900"]
