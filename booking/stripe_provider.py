"""Stripe behind the PaymentProvider interface (official SDK), and webhook verification.

PaymentIntents with capture_method=manual: created at hold time (the id is stored before anything depends
on it), confirmed (authorised) on confirm, captured per the lot's policy, cancelled when unused, refunded
after capture. Every call carries an idempotency key derived from our ids, so a retry never moves money
twice; amounts are integer minor units.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import stripe

from booking.payments import IntentResult, RefundResult
from core.errors import DomainError
from core.settings import Settings

WEBHOOK_TOLERANCE_SECONDS = 300


class StripeProvider:
    """PaymentProvider on Stripe's PaymentIntents API (async methods of stripe.StripeClient)."""

    name = "stripe"

    def __init__(self, client: stripe.StripeClient) -> None:
        self.client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeProvider:
        if settings.stripe_api_key is None:
            raise ValueError("PARKGRID_STRIPE_API_KEY is required when PARKGRID_PAYMENT_PROVIDER=stripe")
        return cls(stripe.StripeClient(settings.stripe_api_key.get_secret_value(),
                                       http_client=stripe.HTTPXClient(), max_network_retries=2))

    @staticmethod
    def _result(intent: Any, decline_code: str | None = None) -> IntentResult:
        data = intent.to_dict()
        return IntentResult(intent_id=data["id"], status=data["status"], client_secret=data.get("client_secret"),
                            amount_capturable=int(data.get("amount_capturable") or 0),
                            amount_received=int(data.get("amount_received") or 0), decline_code=decline_code,
                            next_action=data.get("next_action") if data["status"] == "requires_action" else None)

    async def _current(self, intent_id: str, exc: stripe.InvalidRequestError) -> IntentResult:
        # The intent already moved on (a retry after our reply was lost, or a racing webhook path):
        # report where it is, so the caller records the truth instead of failing.
        if exc.code != "payment_intent_unexpected_state":
            raise exc
        return self._result(await self.client.v1.payment_intents.retrieve_async(intent_id))

    async def create_intent(self, *, amount: int, currency: str, idempotency_key: str,
                            metadata: dict[str, str]) -> IntentResult:
        intent = await self.client.v1.payment_intents.create_async(
            {"amount": int(amount), "currency": currency, "capture_method": "manual",
             "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"}, "metadata": metadata},
            {"idempotency_key": idempotency_key})
        return self._result(intent)

    async def authorize(self, *, intent_id: str, payment_method: str, amount: int,
                        idempotency_key: str) -> IntentResult:
        try:
            intent = await self.client.v1.payment_intents.confirm_async(
                intent_id, {"payment_method": payment_method,
                            # extending a confirmed reservation raises its authorisation (booking.amendments)
                            "payment_method_options": {"card": {"request_incremental_authorization": "if_available"}}},
                {"idempotency_key": idempotency_key})
        except stripe.CardError as exc:  # declined: the intent waits for another payment method
            return IntentResult(intent_id=intent_id, status="requires_payment_method",
                                decline_code=getattr(exc, "code", None) or "card_declined")
        except stripe.InvalidRequestError as exc:
            return await self._current(intent_id, exc)
        response = getattr(intent, "last_response", None)
        if response is not None and str(response.headers.get("Idempotent-Replayed", "")).lower() == "true":
            # A replayed reply describes the intent as it was: it may have been cancelled since (a cancel
            # whose reply we lost). Authorisation must be judged on the intent as it is now.
            intent = await self.client.v1.payment_intents.retrieve_async(intent_id)
        return self._result(intent, "authentication_required" if intent.status == "requires_action" else None)

    async def increment_authorization(self, *, intent_id: str, amount: int,
                                      idempotency_key: str) -> IntentResult:
        try:
            intent = await self.client.v1.payment_intents.increment_authorization_async(
                intent_id, {"amount": int(amount)}, {"idempotency_key": idempotency_key})
        except stripe.CardError as exc:  # the issuer refused more: the authorisation stays as it was
            current = await self.client.v1.payment_intents.retrieve_async(intent_id)
            return self._result(current, getattr(exc, "code", None) or "card_declined")
        except stripe.InvalidRequestError as exc:
            return await self._current(intent_id, exc)
        return self._result(intent)

    async def update_amount(self, *, intent_id: str, amount: int, idempotency_key: str) -> IntentResult:
        intent = await self.client.v1.payment_intents.update_async(intent_id, {"amount": int(amount)},
                                                                   {"idempotency_key": idempotency_key})
        return self._result(intent)

    async def capture(self, *, intent_id: str, amount: int, idempotency_key: str) -> IntentResult:
        try:
            intent = await self.client.v1.payment_intents.capture_async(
                intent_id, {"amount_to_capture": int(amount)}, {"idempotency_key": idempotency_key})
        except stripe.InvalidRequestError as exc:
            return await self._current(intent_id, exc)
        return self._result(intent)

    async def cancel(self, *, intent_id: str, idempotency_key: str) -> IntentResult:
        try:
            intent = await self.client.v1.payment_intents.cancel_async(intent_id, None,
                                                                        {"idempotency_key": idempotency_key})
        except stripe.InvalidRequestError as exc:
            return await self._current(intent_id, exc)
        return self._result(intent)

    async def refund(self, *, intent_id: str, amount: int, idempotency_key: str) -> RefundResult:
        refund = await self.client.v1.refunds.create_async({"payment_intent": intent_id, "amount": int(amount)},
                                                           {"idempotency_key": idempotency_key})
        return RefundResult(refund_id=refund.id, amount=int(refund.amount))


# --- webhooks ---------------------------------------------------------------------------------------------------

class WebhookRejected(DomainError):
    status, slug, title = 400, "invalid-webhook", "Webhook signature invalid"


class WebhookNotConfigured(DomainError):
    status, slug, title = 503, "webhook-not-configured", "Webhook secret not configured"


@dataclass(frozen=True)
class WebhookEvent:
    """A verified event, reduced to what booking.settlement.apply_payment_event needs."""

    event_id: str
    type: str
    intent_id: str | None
    state: dict[str, Any] | None  # apply_intent_state keyword arguments, None for types we ignore


def verify_webhook(*, payload: bytes, header: str | None, secret: str | None, now: datetime,
                   tolerance: int = WEBHOOK_TOLERANCE_SECONDS) -> WebhookEvent:
    """Check the Stripe-Signature on the raw body with the SDK, and its age against our clock (not the SDK's).

    The SDK checks the signature (`WebhookSignature.verify_header` without tolerance, since it would read
    `time.time()`); the timestamp is then checked against the injected clock: older (or newer) than
    `tolerance` seconds is refused, like the SDK's own 300 s rule.
    """
    if not secret:
        raise WebhookNotConfigured("PARKGRID_STRIPE_WEBHOOK_SECRET is not set: every webhook is refused")
    try:
        stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=None)
        stamp = int(next(part.split("=", 1)[1] for part in (header or "").split(",") if part.startswith("t=")))
    except (stripe.SignatureVerificationError, StopIteration, ValueError) as exc:
        raise WebhookRejected(f"signature check failed: {str(exc)[:120]}") from None
    if abs(now.timestamp() - stamp) > tolerance:
        raise WebhookRejected(f"signature timestamp outside the {tolerance} s tolerance")
    try:
        event = stripe.Webhook.construct_event_without_verification(payload)
        return _reduce(str(event.id), str(event.type), event.data.object.to_dict())
    except (ValueError, KeyError, TypeError) as exc:
        raise WebhookRejected(f"not a Stripe event: {str(exc)[:120]}") from None


def _reduce(event_id: str, type_: str, obj: dict[str, Any]) -> WebhookEvent:
    if type_.startswith("payment_intent."):
        state: dict[str, Any] | None = {
            "status": obj.get("status", ""), "amount_capturable": int(obj.get("amount_capturable") or 0),
            "amount_received": int(obj.get("amount_received") or 0)}
        if type_ == "payment_intent.canceled":
            state = {"status": "canceled"}
        elif type_ == "payment_intent.payment_failed":
            state = {"status": "requires_payment_method"}
        return WebhookEvent(event_id, type_, obj.get("id"), state)
    if type_ == "charge.refunded":
        return WebhookEvent(event_id, type_, obj.get("payment_intent"),
                            {"status": "refunded", "amount_refunded": int(obj.get("amount_refunded") or 0)})
    return WebhookEvent(event_id, type_, None, None)
