"""The payment provider interface and the local provider used by the demo and tests.

The local provider mimics Stripe's test cards: `pm_card_visa` succeeds, `pm_card_chargeDeclined`
declines, `pm_card_authenticationRequired` asks for customer action. Every call is idempotent by
its idempotency key, like Stripe's, so a retried request never moves money twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis

from core.errors import PaymentFailed
from core.keys import Keys


@dataclass(frozen=True)
class IntentResult:
    intent_id: str
    status: str  # requires_payment_method | requires_action | requires_capture | succeeded | canceled
    client_secret: str | None = None
    amount_capturable: int = 0
    amount_received: int = 0
    decline_code: str | None = None
    #: what the customer must do before the intent can be authorised (Stripe's `next_action` object), when
    #: status is requires_action; the app finishes it with the client secret (Stripe.js handleNextAction)
    next_action: dict[str, Any] | None = None


@dataclass(frozen=True)
class RefundResult:
    refund_id: str
    amount: int


class PaymentActionRequired(PaymentFailed):
    """The card needs the customer (3-D Secure): the app finishes `next_action` with the client secret, then
    confirms again. Answered as 402 with a `payment` member holding both."""

    slug, title = "payment-requires-action", "Payment requires customer action"

    @classmethod
    def of(cls, result: IntentResult) -> PaymentActionRequired:
        return cls("the card requires authentication (3-D Secure): complete payment.next_action with "
                   "payment.client_secret, then confirm again",
                   payment={"intent_id": result.intent_id, "status": result.status,
                            "client_secret": result.client_secret, "next_action": result.next_action})


class PaymentProvider(Protocol):
    """Manual-capture PaymentIntents. Amounts are integer minor units; every call carries an
    idempotency key derived from our ids, so a retried call never moves money twice."""

    name: str

    async def create_intent(self, *, amount: int, currency: str, idempotency_key: str,
                            metadata: dict[str, str]) -> IntentResult: ...

    async def authorize(self, *, intent_id: str, payment_method: str, amount: int,
                        idempotency_key: str) -> IntentResult: ...

    async def increment_authorization(self, *, intent_id: str, amount: int,
                                      idempotency_key: str) -> IntentResult:
        """Raise an authorised (uncaptured) intent's authorisation to `amount` in total."""
        ...

    async def update_amount(self, *, intent_id: str, amount: int, idempotency_key: str) -> IntentResult:
        """Change the amount of an intent not yet authorised (a held reservation whose window changed)."""
        ...

    async def capture(self, *, intent_id: str, amount: int, idempotency_key: str) -> IntentResult: ...

    async def cancel(self, *, intent_id: str, idempotency_key: str) -> IntentResult: ...

    async def refund(self, *, intent_id: str, amount: int, idempotency_key: str) -> RefundResult: ...


class LocalProvider:
    """A stateless stand-in for Stripe: outcomes follow Stripe's test payment methods, ids are
    derived from idempotency keys (so retries get the same answer in any process), and the
    amounts are the caller's, whose payments table enforces the money invariants."""

    name = "local"
    #: where the customer finishes 3-D Secure for a local intent (api/routers/payments_local.py)
    AUTHENTICATE_PATH = "/api/v1/payments/local/intents/{intent_id}/authenticate"

    def __init__(self, redis: aioredis.Redis | None = None, keys: Keys | None = None) -> None:
        # The one piece of state: which intents' customers completed 3-D Secure (Redis, like the card issuer's
        # record of it). Without Redis, authentication can never be completed.
        self.redis, self.keys = redis, keys

    @staticmethod
    def _id(prefix: str, key: str) -> str:
        return f"{prefix}_local_{hashlib.sha256(key.encode()).hexdigest()[:24]}"

    @staticmethod
    def client_secret(intent_id: str) -> str:
        """The intent's client secret (derived from its id, as the intent's ids are)."""
        return f"{intent_id}_secret_{hashlib.sha256(intent_id.encode()).hexdigest()[:12]}"

    async def create_intent(self, *, amount: int, currency: str, idempotency_key: str,
                            metadata: dict[str, str]) -> IntentResult:
        intent_id = self._id("pi", idempotency_key)
        return IntentResult(intent_id=intent_id, status="requires_payment_method",
                            client_secret=self.client_secret(intent_id))

    async def authenticate(self, *, intent_id: str, client_secret: str) -> bool:
        """The customer completed 3-D Secure for the intent (the local stand-in for the issuer's page)."""
        if self.redis is None or self.keys is None or client_secret != self.client_secret(intent_id):
            return False
        await self.redis.set(self.keys.local_payment_auth(intent_id), "1", ex=86_400)
        return True

    async def _authenticated(self, intent_id: str) -> bool:
        if self.redis is None or self.keys is None:
            return False
        return bool(await self.redis.exists(self.keys.local_payment_auth(intent_id)))

    async def authorize(self, *, intent_id: str, payment_method: str, amount: int,
                        idempotency_key: str) -> IntentResult:
        if payment_method == "pm_card_visa":
            return IntentResult(intent_id=intent_id, status="requires_capture", amount_capturable=amount)
        if payment_method == "pm_card_authenticationRequired":
            if await self._authenticated(intent_id):
                return IntentResult(intent_id=intent_id, status="requires_capture", amount_capturable=amount)
            secret = self.client_secret(intent_id)
            # Stripe's next_action object for a redirect (the shape stripe.PaymentIntent.next_action takes)
            action = {"type": "redirect_to_url", "redirect_to_url": {
                "url": self.AUTHENTICATE_PATH.format(intent_id=intent_id) + f"?client_secret={secret}",
                "return_url": None}}
            return IntentResult(intent_id=intent_id, status="requires_action", client_secret=secret,
                                decline_code="authentication_required", next_action=action)
        code = "card_declined" if payment_method == "pm_card_chargeDeclined" else "invalid_payment_method"
        return IntentResult(intent_id=intent_id, status="requires_payment_method", decline_code=code)

    async def increment_authorization(self, *, intent_id: str, amount: int,
                                      idempotency_key: str) -> IntentResult:
        return IntentResult(intent_id=intent_id, status="requires_capture", amount_capturable=amount)

    async def update_amount(self, *, intent_id: str, amount: int, idempotency_key: str) -> IntentResult:
        return IntentResult(intent_id=intent_id, status="requires_payment_method",
                            client_secret=self.client_secret(intent_id))

    async def capture(self, *, intent_id: str, amount: int, idempotency_key: str) -> IntentResult:
        return IntentResult(intent_id=intent_id, status="succeeded", amount_received=amount)

    async def cancel(self, *, intent_id: str, idempotency_key: str) -> IntentResult:
        return IntentResult(intent_id=intent_id, status="canceled")

    async def refund(self, *, intent_id: str, amount: int, idempotency_key: str) -> RefundResult:
        return RefundResult(refund_id=self._id("re", idempotency_key), amount=amount)
