"""A strict in-memory stand-in for Stripe's PaymentIntents: replays by idempotency key, and records (instead of
hiding) every attempt to move money that Stripe would refuse, so tests can assert there were none."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from booking.payments import IntentResult, RefundResult


class LostReply(ConnectionError):
    """The provider did the work but the reply never reached us."""


@dataclass
class Intent:
    amount: int
    status: str = "requires_payment_method"
    authorised: int = 0
    captured: int = 0
    refunded: int = 0
    moves: list[str] = field(default_factory=list)  # each money move that happened, in order


class StrictProvider:
    name = "local"

    def __init__(self) -> None:
        self.intents: dict[str, Intent] = {}
        self.replies: dict[str, Any] = {}
        self.violations: list[str] = []
        self.events: list[tuple[str, str, str, dict[str, Any]]] = []  # (event id, type, intent id, state)
        self.lose_next_reply = False
        self.decline_increments = False
        self._ids = itertools.count(1)

    def _emit(self, type_: str, intent_id: str, state: dict[str, Any]) -> None:
        self.events.append((f"evt_{next(self._ids)}", type_, intent_id, state))

    def _state(self, intent_id: str) -> IntentResult:
        i = self.intents[intent_id]
        return IntentResult(intent_id=intent_id, status=i.status, amount_capturable=i.authorised - i.captured
                            if i.status == "requires_capture" else 0, amount_received=i.captured)

    def _reply(self, key: str, value: Any) -> Any:
        self.replies[key] = value
        if self.lose_next_reply:
            self.lose_next_reply = False
            raise LostReply(key)
        return value

    async def create_intent(self, *, amount: int, currency: str, idempotency_key: str,
                            metadata: dict[str, str]) -> IntentResult:
        if idempotency_key in self.replies:
            return self.replies[idempotency_key]  # type: ignore[no-any-return]
        intent_id = f"pi_fake_{next(self._ids)}"
        self.intents[intent_id] = Intent(amount)
        return self._reply(idempotency_key, IntentResult(intent_id, "requires_payment_method", f"{intent_id}_secret"))

    async def authorize(self, *, intent_id: str, payment_method: str, amount: int,
                        idempotency_key: str) -> IntentResult:
        if idempotency_key in self.replies:  # like StripeProvider: a replayed authorisation is re-read
            replay: IntentResult = self.replies[idempotency_key]
            return replay if replay.status != "requires_capture" else self._state(intent_id)
        i = self.intents[intent_id]
        if i.status != "requires_payment_method":
            return self._reply(idempotency_key, self._state(intent_id))
        if payment_method != "pm_card_visa":
            return self._reply(idempotency_key, IntentResult(intent_id, "requires_payment_method",
                                                             decline_code="card_declined"))
        i.status, i.authorised = "requires_capture", amount
        i.moves.append("authorise")
        self._emit("payment_intent.amount_capturable_updated", intent_id,
                   {"status": "requires_capture", "amount_capturable": amount})
        return self._reply(idempotency_key, self._state(intent_id))

    async def increment_authorization(self, *, intent_id: str, amount: int,
                                      idempotency_key: str) -> IntentResult:
        if idempotency_key in self.replies:
            return self.replies[idempotency_key]  # type: ignore[no-any-return]
        i = self.intents[intent_id]
        if i.status != "requires_capture" or amount <= i.authorised:
            self.violations.append(f"increment to {amount} on {i.status} {intent_id} authorised={i.authorised}")
            return self._reply(idempotency_key, self._state(intent_id))
        if self.decline_increments:
            return self._reply(idempotency_key, IntentResult(intent_id, i.status, amount_capturable=i.authorised,
                                                             decline_code="card_declined"))
        i.authorised = amount
        i.moves.append("increment")
        return self._reply(idempotency_key, self._state(intent_id))

    async def update_amount(self, *, intent_id: str, amount: int, idempotency_key: str) -> IntentResult:
        i = self.intents[intent_id]
        if i.status != "requires_payment_method":
            self.violations.append(f"amount change on {i.status} {intent_id}")
        i.amount = amount
        return self._state(intent_id)

    async def capture(self, *, intent_id: str, amount: int, idempotency_key: str) -> IntentResult:
        if idempotency_key in self.replies:
            return self.replies[idempotency_key]  # type: ignore[no-any-return]
        i = self.intents[intent_id]
        if i.status != "requires_capture" or amount > i.authorised or amount <= 0:
            self.violations.append(f"capture {amount} on {i.status} {intent_id} ({idempotency_key})")
            return self._reply(idempotency_key, self._state(intent_id))
        i.status, i.captured = "succeeded", amount
        i.moves.append("capture")
        self._emit("payment_intent.succeeded", intent_id, {"status": "succeeded", "amount_received": amount})
        return self._reply(idempotency_key, self._state(intent_id))

    async def cancel(self, *, intent_id: str, idempotency_key: str) -> IntentResult:
        if idempotency_key in self.replies:
            return self.replies[idempotency_key]  # type: ignore[no-any-return]
        i = self.intents[intent_id]
        if i.status in ("succeeded", "canceled"):
            self.violations.append(f"cancel on {i.status} {intent_id} ({idempotency_key})")
            return self._reply(idempotency_key, self._state(intent_id))
        i.status = "canceled"
        i.moves.append("cancel")
        self._emit("payment_intent.canceled", intent_id, {"status": "canceled"})
        return self._reply(idempotency_key, self._state(intent_id))

    async def refund(self, *, intent_id: str, amount: int, idempotency_key: str) -> RefundResult:
        if idempotency_key in self.replies:
            return self.replies[idempotency_key]  # type: ignore[no-any-return]
        i = self.intents[intent_id]
        if i.status != "succeeded" or i.refunded > 0 or amount > i.captured or amount <= 0:
            self.violations.append(f"refund {amount} on {i.status} {intent_id} refunded={i.refunded}")
            return self._reply(idempotency_key, RefundResult("re_refused", 0))
        i.refunded = amount
        i.moves.append("refund")
        self._emit("charge.refunded", intent_id, {"status": "refunded", "amount_refunded": amount})
        return self._reply(idempotency_key, RefundResult(f"re_{next(self._ids)}", amount))
