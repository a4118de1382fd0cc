"""Payment provider webhooks: verified on the raw body, deduplicated by event id, applied in any order."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request

from api.deps import CtxDep, NowDep
from booking.settlement import apply_payment_event
from booking.stripe_provider import verify_webhook

router = APIRouter(prefix="/api/v1/payments", tags=["payments"])


@router.post("/stripe/webhook", summary="Stripe webhook (raw body, Stripe-Signature header)",
             description="Verified with the Stripe SDK against PARKGRID_STRIPE_WEBHOOK_SECRET; a missing, bad, "
                         "tampered or stale (over 300 s by the server clock) signature is 400. Without a configured "
                         "secret every call is 503. Events are applied once by event id, in any order; unknown types "
                         "are acknowledged (200) and ignored; an event that builds on one not yet received (a refund "
                         "before its capture) is 409 and not recorded, so Stripe's redelivery applies it.",
             responses={400: {"description": "bad signature"}, 409: {"description": "arrived too early"},
                        503: {"description": "no webhook secret configured"}})
async def stripe_webhook(request: Request, ctx: CtxDep, now: NowDep,
                         stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature", max_length=2000)]
                         = None) -> dict[str, Any]:
    secret = ctx.settings.stripe_webhook_secret
    event = verify_webhook(payload=await request.body(), header=stripe_signature,
                           secret=secret.get_secret_value() if secret else None, now=now)
    async with ctx.engine.begin() as conn:
        outcome = await apply_payment_event(conn, provider="stripe", event_id=event.event_id, event_type=event.type,
                                            intent_id=event.intent_id, state=event.state, now=now)
    return {"received": True, "event_id": event.event_id, "outcome": outcome}
