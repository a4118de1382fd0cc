"""A Hypothesis state machine over payments on real PostgreSQL: authorise, capture, refund and cancel with
retries, lost replies, and webhooks duplicated and delivered in any order.

Invariants after every step: refunded <= captured <= authorised <= amount in the database; the strict fake
provider saw no money move Stripe would refuse and each intent authorised, captured, refunded and cancelled
at most once; the database never records more than the provider did. A convergence rule delivers every
event and runs the settlement sweeper, then the database must equal the provider.
"""

import asyncio
import contextlib
import uuid
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import text

from booking import holds, sweepers, transitions
from booking.settlement import PaymentEventDeferred, apply_payment_event, settle_reservation
from booking.wiring import booking_deps
from core.clock import ManualClock
from core.context import build_context
from core.errors import DomainError
from pricing.service import cancellation_refund_policy
from tests.conftest import make_settings
from tests.factories import insert_lot
from tests.payment_fakes import LostReply, StrictProvider
from tests.pricing_helpers import give_card

PLATES = ("AA1", "BB2", "CC3", "DD4")


def make_machine(db_url: str, prefix: str) -> type[RuleBasedStateMachine]:
    class Payments(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.clock = ManualClock()
            self.ctx = build_context(make_settings(database_url=db_url, redis_prefix=f"{prefix}{uuid.uuid4().hex[:6]}"),
                                     clock=self.clock)
            self.provider = StrictProvider()
            self.ctx.extras["payment_provider"] = self.provider
            self.deps = booking_deps(self.ctx)
            self.lots = self.run(self._setup())
            self.reservations: list[uuid.UUID] = []
            self.delivered: set[str] = set()

        def run(self, coro: Any) -> Any:
            return self.loop.run_until_complete(coro)

        async def _setup(self) -> list[uuid.UUID]:
            async with self.ctx.engine.begin() as conn:
                await conn.execute(text("TRUNCATE reservations, payments, payment_events, rate_cards CASCADE"))
                lots = []
                for capture, fee in (("at_exit", 500), ("at_start", 200), ("at_exit", 0)):
                    lot = await insert_lot(conn, spots={"regular": 4}, no_show_grace_minutes=30)
                    await give_card(conn, lot, capture=capture, no_show_fee=fee)
                    lots.append(lot)
                return lots

        def teardown(self) -> None:
            self.run(self.ctx.aclose())
            self.loop.close()

        def attempt(self, coro: Any) -> None:
            """Our side may fail (a lost reply, an impossible transition): that must never corrupt money."""
            with contextlib.suppress(LostReply, DomainError):
                self.run(coro)

        @precondition(lambda self: len(self.reservations) < 6)
        @rule(lot=st.integers(0, 2), start_h=st.sampled_from((0.5, 1, 3)), plate=st.sampled_from(PLATES),
              pay=st.sampled_from((True, True, False)))
        def hold(self, lot: int, start_h: float, plate: str, pay: bool) -> None:
            self.provider.lose_next_reply = False
            start = self.clock.now() + timedelta(hours=start_h)
            try:
                rid = self.run(holds.hold(deps=self.deps, user_id=None, lot_id=self.lots[lot],
                                          vehicle_type="regular", starts_at=start, ends_at=start + timedelta(hours=2),
                                          plate=plate, now=self.clock.now()))
            except DomainError:
                return
            self.reservations.append(rid)
            self.attempt(transitions.create_payment_intent(deps=self.deps, reservation_id=rid))
            if pay:  # most holds are paid at once, so captures, no-shows and refunds are reached often
                self.attempt(transitions.confirm(deps=self.deps, reservation_id=rid, user_id=None,
                                                 payment_token="pm_card_visa", now=self.clock.now()))

        def _pick(self, i: int) -> uuid.UUID:
            # an index drawn with the rule, not a draw among ids: the draws stay the same on replay
            return self.reservations[i % len(self.reservations)]

        @precondition(lambda self: self.reservations)
        @rule(i=st.integers(0, 11), card=st.sampled_from(("pm_card_visa", "pm_card_visa", "pm_card_chargeDeclined")),
              times=st.integers(1, 2), lose_first=st.booleans())
        def confirm(self, i: int, card: str, times: int, lose_first: bool) -> None:
            rid = self._pick(i)
            self.provider.lose_next_reply = lose_first
            for _ in range(times):  # a retried request
                self.attempt(transitions.confirm(deps=self.deps, reservation_id=rid, user_id=None, payment_token=card,
                                                 now=self.clock.now()))

        @precondition(lambda self: self.reservations)
        @rule(i=st.integers(0, 11), times=st.integers(1, 2), lose_first=st.booleans())
        def cancel(self, i: int, times: int, lose_first: bool) -> None:
            rid = self._pick(i)
            self.provider.lose_next_reply = lose_first
            for _ in range(times):
                self.attempt(transitions.cancel(deps=self.deps, reservation_id=rid, user_id=None, now=self.clock.now(),
                                                refund_policy=cancellation_refund_policy))

        @precondition(lambda self: self.reservations)
        @rule(i=st.integers(0, 11), leave=st.booleans())
        def enter_then_maybe_leave(self, i: int, leave: bool) -> None:
            rid = self._pick(i)
            self.attempt(transitions.check_in(deps=self.deps, reservation_id=rid, now=self.clock.now()))
            if leave:
                self.attempt(transitions.check_out(deps=self.deps, reservation_id=rid, now=self.clock.now()))

        @precondition(lambda self: self.reservations)
        @rule(i=st.integers(0, 11), lose_first=st.booleans())
        def settle_with_retry(self, i: int, lose_first: bool) -> None:
            rid = self._pick(i)
            self.provider.lose_next_reply = lose_first
            for _ in range(2):
                self.attempt(settle_reservation(deps=self.deps, reservation_id=rid, now=self.clock.now()))

        @rule(minutes=st.sampled_from((10, 20, 45)))
        def time_passes_and_sweepers_run(self, minutes: int) -> None:
            self.provider.lose_next_reply = False
            self.clock.advance(minutes=minutes)
            now = self.clock.now()
            self.attempt(sweepers.expire_holds(deps=self.deps, now=now))
            self.attempt(sweepers.mark_no_shows(deps=self.deps, now=now))
            self.attempt(sweepers.settle_payments(deps=self.deps, now=now))

        def _deliver(self, event: tuple[str, str, str, dict[str, Any]]) -> None:
            event_id, type_, intent_id, state = event

            async def go() -> None:
                async with self.ctx.engine.begin() as conn:
                    await apply_payment_event(conn, provider="local", event_id=event_id, event_type=type_,
                                              intent_id=intent_id, state=state, now=self.clock.now())

            with contextlib.suppress(PaymentEventDeferred):
                self.run(go())

        @precondition(lambda self: self.provider.events)
        @rule(i=st.integers(0, 63))
        def webhook_delivered_any_order_maybe_again(self, i: int) -> None:
            self._deliver(self.provider.events[i % len(self.provider.events)])

        @rule()
        def everything_delivered_and_settled_converges(self) -> None:
            self.provider.lose_next_reply = False
            for event in list(self.provider.events) * 2:  # every event, each twice
                self._deliver(event)
            self.run(sweepers.settle_payments(deps=self.deps, now=self.clock.now()))
            for event in list(self.provider.events):  # what settling did, reported back
                self._deliver(event)
            for row in self._rows():
                intent = self.provider.intents[row.intent_id]
                assert (row.amount_captured, row.amount_refunded) == (intent.captured, intent.refunded), row
                if intent.status != "canceled":  # a cancelled authorisation is released, recorded or not
                    assert row.amount_authorised == intent.authorised, row
                assert (row.status == "canceled") == (intent.status == "canceled"), row

        def _rows(self) -> list[Any]:
            async def go() -> list[Any]:
                async with self.ctx.engine.connect() as conn:
                    return list(await conn.execute(text(
                        "SELECT intent_id, status, amount, amount_authorised, amount_captured, amount_refunded"
                        " FROM payments")))
            return self.run(go())  # type: ignore[no-any-return]

        @invariant()
        def money_moves_at_most_once(self) -> None:
            assert not self.provider.violations, self.provider.violations
            for intent in self.provider.intents.values():
                for move in ("authorise", "capture", "refund", "cancel"):
                    assert intent.moves.count(move) <= 1, intent.moves
                assert 0 <= intent.refunded <= intent.captured <= intent.authorised <= intent.amount
            for row in self._rows():
                assert 0 <= row.amount_refunded <= row.amount_captured <= row.amount_authorised <= row.amount
                intent = self.provider.intents[row.intent_id]
                assert row.amount_captured in (0, intent.captured) and row.amount_refunded <= intent.refunded
                assert row.amount_authorised in (0, intent.authorised)
                assert not (row.status == "canceled" and intent.status == "succeeded"), row

    return Payments


def test_payment_state_machine(db_url: str, redis_prefix: str) -> None:
    machine = make_machine(db_url, redis_prefix)
    machine.TestCase.settings = settings(max_examples=20, stateful_step_count=20, deadline=None,
                                         suppress_health_check=list(HealthCheck))
    machine.TestCase().runTest()
