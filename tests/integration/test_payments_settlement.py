"""Capture, no-show, void and refund policies end to end on PostgreSQL, against a strict fake of Stripe."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from booking import holds, sweepers, transitions
from booking.wiring import booking_deps
from core.clock import ManualClock
from core.context import AppContext
from core.errors import InvalidTransition
from pricing.service import cancellation_refund_policy
from tests.factories import insert_lot
from tests.payment_fakes import StrictProvider
from tests.pricing_helpers import give_card


@pytest.fixture
def provider(ctx: AppContext) -> StrictProvider:
    fake = StrictProvider()
    ctx.extras["payment_provider"] = fake
    return fake


async def _confirmed(ctx: AppContext, clock: ManualClock, *, start_h: float = 2, confirm: bool = True,
                     **card: Any) -> uuid.UUID:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 2}, no_show_grace_minutes=30)
        await give_card(conn, lot, **card)
    deps = booking_deps(ctx)
    start = clock.now() + timedelta(hours=start_h)
    rid = await holds.hold(deps=deps, user_id=None, lot_id=lot, vehicle_type="regular", starts_at=start,
                           ends_at=start + timedelta(hours=2), plate=f"P{uuid.uuid4().hex[:5]}", now=clock.now())
    await transitions.create_payment_intent(deps=deps, reservation_id=rid)
    if confirm:
        await transitions.confirm(deps=deps, reservation_id=rid, user_id=None, payment_token="pm_card_visa", now=clock.now())
    return rid


async def _pay(ctx: AppContext, rid: uuid.UUID) -> Any:
    async with ctx.engine.connect() as conn:
        return (await conn.execute(text(
            "SELECT p.status, p.amount, p.amount_authorised, p.amount_captured, p.amount_refunded, p.intent_id"
            " FROM payments p WHERE p.reservation_id = :r"), {"r": rid})).one()


async def test_at_exit_captures_in_full_at_exit_only(ctx: AppContext, clock: ManualClock,
                                                     provider: StrictProvider) -> None:
    rid = await _confirmed(ctx, clock)
    pay = await _pay(ctx, rid)
    assert pay.status == "requires_capture" and pay.amount_authorised == pay.amount > 0
    clock.advance(hours=2)
    await transitions.check_in(deps=booking_deps(ctx), reservation_id=rid, now=clock.now())
    assert (await _pay(ctx, rid)).amount_captured == 0
    clock.advance(hours=1)
    await transitions.check_out(deps=booking_deps(ctx), reservation_id=rid, now=clock.now())
    pay = await _pay(ctx, rid)
    assert (pay.status, pay.amount_captured) == ("succeeded", pay.amount)
    assert provider.intents[pay.intent_id].moves == ["authorise", "capture"] and not provider.violations
    assert await sweepers.settle_payments(deps=booking_deps(ctx), now=clock.now()) == 0  # nothing left to do


async def test_at_start_captures_when_the_window_starts(ctx: AppContext, clock: ManualClock,
                                                        provider: StrictProvider) -> None:
    rid = await _confirmed(ctx, clock, capture="at_start")
    assert await sweepers.settle_payments(deps=booking_deps(ctx), now=clock.now()) == 0
    clock.advance(hours=2, minutes=1)
    assert await sweepers.settle_payments(deps=booking_deps(ctx), now=clock.now()) == 1
    pay = await _pay(ctx, rid)
    assert pay.amount_captured == pay.amount
    # a late cancellation (inside the fee window) refunds what exceeds the 20 % fee, once
    refund = await transitions.cancel(deps=booking_deps(ctx), reservation_id=rid, user_id=None, now=clock.now(),
                                      refund_policy=cancellation_refund_policy)
    pay = await _pay(ctx, rid)
    fee = round(pay.amount * 0.2)
    assert refund.amount == pay.amount - fee == pay.amount_refunded
    assert provider.intents[pay.intent_id].moves == ["authorise", "capture", "refund"] and not provider.violations


async def test_no_show_captures_the_fee_and_releases_the_rest(ctx: AppContext, clock: ManualClock,
                                                              provider: StrictProvider) -> None:
    rid = await _confirmed(ctx, clock, start_h=1, no_show_fee=200)  # 2 night hours: 325 authorised
    clock.advance(hours=1, minutes=31)
    assert await sweepers.mark_no_shows(deps=booking_deps(ctx), now=clock.now()) == 1
    pay = await _pay(ctx, rid)
    assert (pay.status, pay.amount_authorised, pay.amount_captured, pay.amount_refunded) == ("succeeded", 325, 200, 0)
    assert provider.intents[pay.intent_id].captured == 200
    assert await sweepers.mark_no_shows(deps=booking_deps(ctx), now=clock.now()) == 0
    assert await sweepers.settle_payments(deps=booking_deps(ctx), now=clock.now()) == 0
    assert not provider.violations


async def test_no_show_without_fee_cancels_the_intent(ctx: AppContext, clock: ManualClock,
                                                      provider: StrictProvider) -> None:
    rid = await _confirmed(ctx, clock, start_h=1, no_show_fee=0)
    clock.advance(hours=2)
    await sweepers.mark_no_shows(deps=booking_deps(ctx), now=clock.now())
    pay = await _pay(ctx, rid)
    assert (pay.status, pay.amount_captured) == ("canceled", 0)
    assert provider.intents[pay.intent_id].moves == ["authorise", "cancel"]


async def test_expired_hold_cancels_its_intent(ctx: AppContext, clock: ManualClock, provider: StrictProvider) -> None:
    rid = await _confirmed(ctx, clock, confirm=False)
    clock.advance(minutes=16)
    assert await sweepers.expire_holds(deps=booking_deps(ctx), now=clock.now()) == 1
    pay = await _pay(ctx, rid)
    assert pay.status == "canceled" and provider.intents[pay.intent_id].status == "canceled"


async def test_cancellation_policy_free_then_fee(ctx: AppContext, clock: ManualClock, provider: StrictProvider) -> None:
    early = await _confirmed(ctx, clock, start_h=3)
    refund = await transitions.cancel(deps=booking_deps(ctx), reservation_id=early, user_id=None, now=clock.now(),
                                      refund_policy=cancellation_refund_policy)
    pay = await _pay(ctx, early)
    assert refund.amount == pay.amount and pay.status == "canceled"
    late = await _confirmed(ctx, clock, start_h=0.5)
    refund = await transitions.cancel(deps=booking_deps(ctx), reservation_id=late, user_id=None, now=clock.now(),
                                      refund_policy=cancellation_refund_policy)
    pay = await _pay(ctx, late)
    fee = pay.amount - refund.amount
    assert fee == (pay.amount * 20 + 50) // 100 and pay.amount_captured == fee and pay.amount_refunded == 0
    assert not provider.violations


async def test_cancel_whose_provider_reply_is_lost_never_captures_a_voided_intent(ctx: AppContext,
                                                                                  clock: ManualClock) -> None:
    """Found by the payment state machine: the void happened at the provider but its reply was lost. The
    cancellation is committed first, so the car cannot enter on it, and the sweeper's retry replays the
    same idempotent call instead of capturing at exit."""
    provider = StrictProvider()
    ctx.extras["payment_provider"] = provider
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 2})
        await give_card(conn, lot, capture="at_exit", no_show_fee=500)
    deps = booking_deps(ctx)
    start = clock.now() + timedelta(hours=1)
    rid = await holds.hold(deps=deps, user_id=None, lot_id=lot, vehicle_type="regular", starts_at=start,
                           ends_at=start + timedelta(hours=2), plate="LOST1", now=clock.now())
    await transitions.create_payment_intent(deps=deps, reservation_id=rid)
    await transitions.confirm(deps=deps, reservation_id=rid, user_id=None, payment_token="pm_card_visa", now=clock.now())
    provider.lose_next_reply = True  # the void reaches the provider, its answer does not reach us
    await transitions.cancel(deps=deps, reservation_id=rid, user_id=None, now=clock.now())
    with pytest.raises(InvalidTransition):
        await transitions.check_in(deps=deps, reservation_id=rid, now=clock.now())
    await sweepers.settle_payments(deps=deps, now=clock.now())
    assert provider.violations == []
