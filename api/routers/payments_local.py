"""The local payment provider's stand-in for a card issuer's 3-D Secure page (PARKGRID_PAYMENT_PROVIDER=local).

A confirm answered 402 `payment-requires-action` carries Stripe's `next_action` object; with the local provider
its `redirect_to_url.url` points here. POSTing it (as the customer finishing the challenge) marks the intent
authenticated; the app then confirms the reservation again. With Stripe, Stripe.js plays this part.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import CtxDep
from booking.payments import LocalProvider
from booking.runtime import payment_provider
from core.errors import NotFound

router = APIRouter(prefix="/api/v1/payments/local", tags=["payments"])


class Authenticated(BaseModel):
    intent_id: str
    authenticated: bool


@router.post("/intents/{intent_id}/authenticate", response_model=Authenticated,
             summary="Complete 3-D Secure for a local-provider intent",
             description="The customer's side of a `redirect_to_url` next action. 404 when the intent and client "
                         "secret do not match, or when the server does not use the local provider.",
             responses={404: {"description": "unknown intent or wrong client secret"}})
async def authenticate(intent_id: str, ctx: CtxDep,
                       client_secret: Annotated[str, Query(min_length=1, max_length=200)]) -> Authenticated:
    provider = payment_provider(ctx)
    if not isinstance(provider, LocalProvider) or len(intent_id) > 100 \
            or not await provider.authenticate(intent_id=intent_id, client_secret=client_secret):
        raise NotFound("no local payment intent with this id and client secret")
    return Authenticated(intent_id=intent_id, authenticated=True)
