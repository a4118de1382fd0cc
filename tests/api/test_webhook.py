"""Stripe webhook: payloads signed locally with the SDK's own helper; verified, deduplicated, order-free."""

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import text

from core.clock import ManualClock
from core.context import AppContext
from core.settings import Settings
from tests.conftest import make_settings
from tests.factories import insert_lot

SECRET = "whsec_test_" + "k" * 24
URL = "/api/v1/payments/stripe/webhook"


@pytest.fixture
def settings(db_url: str, redis_prefix: str) -> Iterator[Settings]:
    yield make_settings(database_url=db_url, redis_prefix=redis_prefix, celery_queue=f"q{redis_prefix}",
                        stripe_webhook_secret=SECRET)


def event(type_: str, obj: dict[str, Any], event_id: str | None = None) -> bytes:
    body = {"id": event_id or f"evt_{uuid.uuid4().hex[:16]}", "object": "event", "type": type_,
            "api_version": "2024-06-20", "created": 1, "data": {"object": obj}}
    return json.dumps(body).encode()


def signed(payload: bytes, clock: ManualClock, *, secret: str = SECRET, age: int = 0) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(payload.decode(), secret,
                                                               timestamp=int(clock.now().timestamp()) - age)
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


def intent(intent_id: str, status: str, **amounts: int) -> dict[str, Any]:
    return {"id": intent_id, "object": "payment_intent", "status": status, "amount": 1000,
            "amount_capturable": amounts.get("capturable", 0), "amount_received": amounts.get("received", 0)}


async def _payment(ctx: AppContext, intent_id: str, *, status: str = "requires_capture",
                   authorised: int = 1000) -> uuid.UUID:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn)
        await conn.execute(text(
            "INSERT INTO payments (lot_id, reservation_id, provider, intent_id, status, amount, amount_authorised)"
            " VALUES (:lot, :rid, 'stripe', :intent, :status, 1000, :auth)"),
            {"lot": lot, "rid": uuid.uuid4(), "intent": intent_id, "status": status, "auth": authorised})
    return lot


async def _row(ctx: AppContext, intent_id: str) -> Any:
    async with ctx.engine.connect() as conn:
        return (await conn.execute(text("SELECT status, amount_authorised, amount_captured, amount_refunded"
                                        " FROM payments WHERE intent_id = :i"), {"i": intent_id})).one()


async def test_valid_event_applies_once_and_replays_are_acknowledged(client: httpx.AsyncClient, ctx: AppContext,
                                                                     clock: ManualClock) -> None:
    await _payment(ctx, "pi_1")
    payload = event("payment_intent.succeeded", intent("pi_1", "succeeded", received=1000), "evt_once")
    first = await client.post(URL, content=payload, headers=signed(payload, clock))
    assert first.status_code == 200, first.text
    assert first.json()["outcome"] == "applied"
    assert tuple(await _row(ctx, "pi_1")) == ("succeeded", 1000, 1000, 0)
    for _ in range(2):  # replayed (even re-signed later): acknowledged, applied once
        clock.advance(seconds=30)
        again = await client.post(URL, content=payload, headers=signed(payload, clock))
        assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    async with ctx.engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM payment_events WHERE event_id = 'evt_once'")) == 1
    assert tuple(await _row(ctx, "pi_1")) == ("succeeded", 1000, 1000, 0)


async def test_tampered_stale_unsigned_or_wrong_secret_is_400(client: httpx.AsyncClient, ctx: AppContext,
                                                              clock: ManualClock) -> None:
    await _payment(ctx, "pi_2")
    payload = event("payment_intent.succeeded", intent("pi_2", "succeeded", received=1000))
    tampered = payload.replace(b'"amount_received": 1000', b'"amount_received": 9000')
    assert tampered != payload
    cases = [
        (tampered, signed(payload, clock)),
        (payload, signed(payload, clock, age=301)),  # stale by the server's (injected) clock
        (payload, {"Content-Type": "application/json"}),
        (payload, signed(payload, clock, secret="whsec_other_" + "x" * 20)),
        (payload, {"Stripe-Signature": "t=abc,v1=zz"}),
    ]
    for body, headers in cases:
        res = await client.post(URL, content=body, headers=headers)
        assert res.status_code == 400, res.text
        assert res.headers["content-type"].startswith("application/problem+json")
        assert res.json()["type"].endswith("/invalid-webhook")
    assert tuple(await _row(ctx, "pi_2")) == ("requires_capture", 1000, 0, 0)
    ok = await client.post(URL, content=payload, headers=signed(payload, clock, age=299))
    assert ok.status_code == 200 and ok.json()["outcome"] == "applied"


async def test_late_success_after_cancel_changes_nothing(client: httpx.AsyncClient, ctx: AppContext,
                                                         clock: ManualClock) -> None:
    await _payment(ctx, "pi_3")
    cancel = event("payment_intent.canceled", intent("pi_3", "canceled"))
    late = event("payment_intent.succeeded", intent("pi_3", "succeeded", received=1000))
    assert (await client.post(URL, content=cancel, headers=signed(cancel, clock))).json()["outcome"] == "applied"
    res = await client.post(URL, content=late, headers=signed(late, clock))
    assert res.status_code == 200 and res.json()["outcome"] == "ignored_after_cancel"
    assert tuple(await _row(ctx, "pi_3")) == ("canceled", 1000, 0, 0)


async def test_reordered_events_converge_and_refunds_never_exceed_captures(client: httpx.AsyncClient,
                                                                           ctx: AppContext,
                                                                           clock: ManualClock) -> None:
    await _payment(ctx, "pi_4", status="requires_payment_method", authorised=0)
    refunded = event("charge.refunded", {"id": "ch_1", "object": "charge", "payment_intent": "pi_4",
                                         "amount_captured": 700, "amount_refunded": 200})
    succeeded = event("payment_intent.succeeded", intent("pi_4", "succeeded", received=700))
    authorised = event("payment_intent.amount_capturable_updated", intent("pi_4", "requires_capture", capturable=1000))
    too_much = event("charge.refunded", {"id": "ch_1", "object": "charge", "payment_intent": "pi_4",
                                         "amount_refunded": 5000})
    early = await client.post(URL, content=refunded, headers=signed(refunded, clock))
    assert early.status_code == 409  # refund before its capture: not recorded, so Stripe's retry applies it
    outcomes = []
    for payload in (succeeded, authorised, refunded, refunded):  # success before authorisation: any order
        res = await client.post(URL, content=payload, headers=signed(payload, clock))
        assert res.status_code == 200, res.text
        outcomes.append(res.json()["outcome"])
    assert outcomes == ["applied", "no_change", "applied", "duplicate"]
    assert (await client.post(URL, content=too_much, headers=signed(too_much, clock))).status_code == 409
    assert tuple(await _row(ctx, "pi_4")) == ("succeeded", 700, 700, 200)


async def test_unknown_types_and_unknown_intents_are_acknowledged(client: httpx.AsyncClient, ctx: AppContext,
                                                                  clock: ManualClock) -> None:
    customer = event("customer.created", {"id": "cus_1", "object": "customer"})
    res = await client.post(URL, content=customer, headers=signed(customer, clock))
    assert res.status_code == 200 and res.json()["outcome"] == "ignored"
    stranger = event("payment_intent.succeeded", intent("pi_nobody", "succeeded", received=5))
    res = await client.post(URL, content=stranger, headers=signed(stranger, clock))
    assert res.status_code == 200 and res.json()["outcome"] == "unknown_intent"
