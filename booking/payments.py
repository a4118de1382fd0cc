"""The payment provider interface and the local provider used by the demo and tests.

The local provider mimics Stripe's test cards: `pm_card_visa` succeeds, `pm_card_chargeDeclined`
declines, `pm_card_authenticationRequired` asks for customer action. Every call is idempotent by
its idempotency key, like Stripe's, so a retried request never moves money twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class IntentResult:
    intent_id: str
    status: str  # requires_payment_method | requires_action | requires_capture | succeeded | canceled
    client_secret: str | None = None
    amount_capturable: int = 0
    amount_received: int = 0
    decline_code: str | None = None


@dataclass(frozen=True)
class RefundResult:
    refund_id: str
    amount: int


class PaymentProvider(Protocol):
    """Manual-capture PaymentIntents. Amounts are integer minor units; every call carries an
    idempotency key derived from our ids, so a retried call never moves money twice."""

    name: str

    async def create_intent(self, *, amount: int, currency: str, idempotency_key: str,
                            metadata: dict[str, str]) -> IntentResult: ...

    async def authorize(self, *, intent_id: str, payment_method: str, amount: int,
                        idempotency_key: str) -> IntentResult: ...

    async def capture(self, *, intent_id: str, amount: int, idempotency_key: str) -> IntentResult: ...

    async def cancel(self, *, intent_id: str, idempotency_key: str) -> IntentResult: ...

    async def refund(self, *, intent_id: str, amount: int, idempotency_key: str) -> RefundResult: ...


class LocalProvider:
    """A stateless stand-in for Stripe: outcomes follow Stripe's test payment methods, ids are
    derived from idempotency keys (so retries get the same answer in any process), and the
    amounts are the caller's, whose payments table enforces the money invariants."""

    name = "local"

    @staticmethod
    def _id(prefix: str, key: str) -> str:
        return f"{prefix}_local_{hashlib.sha256(key.encode()).hexdigest()[:24]}"

    async def create_intent(self, *, amount: int, currency: str, idempotency_key: str,
                            metadata: dict[str, str]) -> IntentResult:
        intent_id = self._id("pi", idempotency_key)
        return IntentResult(intent_id=intent_id, status="requires_payment_method",
                            client_secret=f"{intent_id}_secret_{hashlib.sha256(intent_id.encode()).hexdigest()[:12]}")

    async def authorize(self, *, intent_id: str, payment_method: str, amount: int,
                        idempotency_key: str) -> IntentResult:
        if payment_method == "pm_card_visa":
            return IntentResult(intent_id=intent_id, status="requires_capture", amount_capturable=amount)
        if payment_method == "pm_card_authenticationRequired":
            return IntentResult(intent_id=intent_id, status="requires_action", decline_code="authentication_required")
        code = "card_declined" if payment_method == "pm_card_chargeDeclined" else "invalid_payment_method"
        return IntentResult(intent_id=intent_id, status="requires_payment_method", decline_code=code)

    async def capture(self, *, intent_id: str, amount: int, idempotency_key: str) -> IntentResult:
        return IntentResult(intent_id=intent_id, status="succeeded", amount_received=amount)

    async def cancel(self, *, intent_id: str, idempotency_key: str) -> IntentResult:
        return IntentResult(intent_id=intent_id, status="canceled")

    async def refund(self, *, intent_id: str, amount: int, idempotency_key: str) -> RefundResult:
        return RefundResult(refund_id=self._id("re", idempotency_key), amount=amount)
