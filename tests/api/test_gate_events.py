"""Gate events over HTTP: entry and exit for reservations, passes, walk-ins, QR tokens; full lots; unsure plates."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from sqlalchemy import text

from booking import holds, transitions
from booking.wiring import booking_deps
from controllers.gates import GATE_TTL
from core.clock import ManualClock
from core.context import AppContext
from pricing.engine import overstay_fee, price_window
from pricing.examples import demo_rate_card
from pricing.service import put_rate_card
from tests.api.test_gates_world import (
    GateLot,
    add_pass,
    confirmed_reservation,
    event,
    gate_lot,
    local_month,
    post_event,
    reservation_token,
    rows,
    scalar,
)
from tests.payment_fakes import StrictProvider
from tests.pricing_helpers import card


async def test_reservation_entry_opens_shows_the_spot_and_exit_in_time_is_prepaid(
        client: httpx.AsyncClient, ctx: AppContext, clock: ManualClock) -> None:
    gl = await gate_lot(ctx)
    rid = await confirmed_reservation(ctx, gl, plate="AB-123 CD", starts_in=timedelta(minutes=10))
    entry = await post_event(client, gl, gl.entry, event(ctx, plate="ab 123 cd"))  # early arrival grace: 15 min
    assert entry["decision"] == "open", entry
    assert entry["spot"]["label"].startswith("L0-") and entry["fee"] is None
    assert entry["spot"]["label"] in entry["message"]
    assert await scalar(ctx, "SELECT status FROM reservations WHERE id = :id", id=rid) == "active"
    session = (await rows(ctx, "SELECT * FROM parking_sessions WHERE id = :id", id=entry["session_id"]))[0]
    assert (session.kind, session.status, session.reservation_id, session.plate) == ("reservation", "active", rid,
                                                                                     "AB123CD")
    assert await scalar(ctx, "SELECT cds_event_type FROM controller_events") == "enter_area"

    clock.advance(hours=1)
    out = await post_event(client, gl, gl.exit, event(ctx, plate="AB123CD"))
    assert out["decision"] == "open" and out["session_id"] == entry["session_id"] and out["fee"] is None
    assert await scalar(ctx, "SELECT status FROM reservations WHERE id = :id", id=rid) == "completed"
    assert await scalar(ctx, "SELECT status FROM parking_sessions WHERE id = :id", id=entry["session_id"]) == "completed"
    assert await scalar(ctx, "SELECT count(*) FROM controller_events WHERE cds_event_type = 'exit_area'") == 1


async def test_too_early_for_the_reservation_is_a_walk_in(client: httpx.AsyncClient, ctx: AppContext) -> None:
    gl = await gate_lot(ctx, spots={"regular": 3})
    rid = await confirmed_reservation(ctx, gl, plate="EARLY1", starts_in=timedelta(hours=4))
    entry = await post_event(client, gl, gl.entry, event(ctx, plate="EARLY1"))
    assert entry["decision"] == "open"
    kind = await scalar(ctx, "SELECT kind FROM parking_sessions WHERE id = :id", id=entry["session_id"])
    assert kind == "walk_in"
    assert await scalar(ctx, "SELECT status FROM reservations WHERE id = :id", id=rid) == "confirmed"


async def test_overstay_pays_once_then_opens_and_records_a_debt(client: httpx.AsyncClient, ctx: AppContext,
                                                               clock: ManualClock) -> None:
    gl = await gate_lot(ctx)
    await confirmed_reservation(ctx, gl, plate="OVER1", hours=1)
    entry = await post_event(client, gl, gl.entry, event(ctx, plate="OVER1"))
    clock.advance(minutes=60 + 40)  # 40 minutes past the end, beyond the card's 10-minute grace
    card = demo_rate_card()
    base = overstay_fee(card=card, minutes_over=40).amount
    expected = base + (base * 825 + 5000) // 10000

    first = await post_event(client, gl, gl.exit, event(ctx, plate="OVER1"))
    assert first["decision"] == "pay" and first["fee"] == {"amount": expected, "currency": "usd"}
    assert await scalar(ctx, "SELECT status FROM parking_sessions WHERE id = :id", id=entry["session_id"]) == "active"
    assert await scalar(ctx, "SELECT cds_event_type FROM controller_events ORDER BY sequence DESC LIMIT 1") \
        == "decision_only"

    second = await post_event(client, gl, gl.exit, event(ctx, plate="OVER1"))  # never trapped
    assert second["decision"] == "open" and second["fee"]["amount"] == expected
    debt = (await rows(ctx, "SELECT amount, reason, session_id FROM plate_debts"))[0]
    assert (debt.amount, debt.reason, str(debt.session_id)) == (expected, "unpaid_exit", entry["session_id"])
    fee = await scalar(ctx, "SELECT fee_amount FROM parking_sessions WHERE id = :id", id=entry["session_id"])
    assert fee == expected


async def test_exit_payment_failure_still_opens_and_records_a_debt(client: httpx.AsyncClient, ctx: AppContext,
                                                                  clock: ManualClock) -> None:
    gl = await gate_lot(ctx)
    await post_event(client, gl, gl.entry, event(ctx, plate="DECLINE1"))
    clock.advance(hours=2)
    out = await post_event(client, gl, gl.exit, event(ctx, plate="DECLINE1", payment_token="pm_card_chargeDeclined"))
    assert out["decision"] == "open" and out["fee"]["amount"] > 0
    debt = (await rows(ctx, "SELECT amount, reason FROM plate_debts"))[0]
    assert (debt.amount, debt.reason) == (out["fee"]["amount"], "payment_failed")
    pay = (await rows(ctx, "SELECT purpose, status, amount_captured FROM payments"))[0]
    assert (pay.purpose, pay.amount_captured) == ("exit_fee", 0) and pay.status != "succeeded"


async def test_exit_payment_success_opens_without_debt(client: httpx.AsyncClient, ctx: AppContext,
                                                       clock: ManualClock) -> None:
    gl = await gate_lot(ctx)
    entry = await post_event(client, gl, gl.entry, event(ctx, plate="PAYER1"))
    clock.advance(minutes=95)
    asked = await post_event(client, gl, gl.exit, event(ctx, plate="PAYER1"))
    assert asked["decision"] == "pay"
    paid = await post_event(client, gl, gl.exit, event(ctx, plate="PAYER1", payment_token="pm_card_visa"))
    assert paid["decision"] == "open" and paid["fee"] == asked["fee"]
    assert await scalar(ctx, "SELECT count(*) FROM plate_debts") == 0
    s = (await rows(ctx, "SELECT fee_amount, paid_amount FROM parking_sessions WHERE id = :id",
                    id=entry["session_id"]))[0]
    assert s.fee_amount == s.paid_amount == asked["fee"]["amount"]
    assert await scalar(ctx, "SELECT amount_captured FROM payments WHERE purpose = 'exit_fee'") == s.paid_amount


async def test_walk_in_is_booked_and_priced_from_entry_on_the_rate_card(client: httpx.AsyncClient, ctx: AppContext,
                                                                        clock: ManualClock) -> None:
    gl = await gate_lot(ctx)
    entered = clock.now()
    entry = await post_event(client, gl, gl.entry, event(ctx, plate="WALK 1"))
    assert entry["decision"] == "open" and entry["spot"] is not None
    res = (await rows(ctx, "SELECT r.kind, r.status, r.starts_at, r.ends_at, r.price_amount FROM reservations r"))[0]
    assert (res.kind, res.status, res.price_amount) == ("walk_in", "active", 0)
    assert res.ends_at - res.starts_at == timedelta(minutes=120)  # the lot's walk-in horizon
    clock.advance(minutes=75)
    expected = price_window(card=demo_rate_card(), spot_type="regular", starts_at=entered, ends_at=clock.now(),
                            tz="America/Los_Angeles").total.as_json()
    asked = await post_event(client, gl, gl.exit, event(ctx, plate="WALK1"))
    assert asked["decision"] == "pay" and asked["fee"] == expected
    done = await post_event(client, gl, gl.exit, event(ctx, plate="WALK1", payment_token="pm_card_visa"))
    assert done["decision"] == "open"
    assert await scalar(ctx, "SELECT status FROM reservations") == "completed"


async def test_walk_in_without_rate_card_is_free(client: httpx.AsyncClient, ctx: AppContext,
                                                 clock: ManualClock) -> None:
    gl = await gate_lot(ctx, rates=False)
    await post_event(client, gl, gl.entry, event(ctx, plate="FREE1"))
    clock.advance(hours=1)
    out = await post_event(client, gl, gl.exit, event(ctx, plate="FREE1"))
    assert out["decision"] == "open" and out["fee"] is None


async def test_monthly_pass_opens_both_ways_without_a_fee(client: httpx.AsyncClient, ctx: AppContext,
                                                          clock: ManualClock) -> None:
    gl = await gate_lot(ctx)
    await add_pass(ctx, gl, plate="PASS1", month=local_month(clock.now()))
    entry = await post_event(client, gl, gl.entry, event(ctx, plate="pass-1"))
    assert entry["decision"] == "open" and entry["spot"] is None
    assert await scalar(ctx, "SELECT kind FROM parking_sessions") == "pass"
    assert await scalar(ctx, "SELECT count(*) FROM reservations") == 0
    clock.advance(hours=9)
    out = await post_event(client, gl, gl.exit, event(ctx, plate="PASS1"))
    assert out["decision"] == "open" and out["fee"] is None


async def test_full_lot_denies_walk_ins_and_never_breaks_a_confirmed_reservation(
        client: httpx.AsyncClient, ctx: AppContext, clock: ManualClock) -> None:
    gl = await gate_lot(ctx, spots={"regular": 2})
    await confirmed_reservation(ctx, gl, plate="BOOKED1", starts_in=timedelta(minutes=60))  # inside the horizon
    first = await post_event(client, gl, gl.entry, event(ctx, plate="WALKA"))
    assert first["decision"] == "open"
    full = await post_event(client, gl, gl.entry, event(ctx, plate="WALKB"))
    assert full == {"decision": "deny", "session_id": None, "spot": None, "fee": None, "message": "Full"}
    assert await scalar(ctx, "SELECT count(*) FROM parking_sessions") == 1
    clock.advance(minutes=50)  # within the 15-minute early-arrival grace
    booked = await post_event(client, gl, gl.entry, event(ctx, plate="BOOKED1"))  # its spot is still there
    assert booked["decision"] == "open"


async def test_low_confidence_plate_calls_an_attendant(client: httpx.AsyncClient, ctx: AppContext) -> None:
    gl = await gate_lot(ctx)
    entry = await post_event(client, gl, gl.entry, event(ctx, plate="BLURRY1", confidence=0.5))
    assert entry["decision"] == "attendant" and entry["session_id"] is None
    no_plate = await post_event(client, gl, gl.entry, event(ctx))
    assert no_plate["decision"] == "attendant"
    assert await scalar(ctx, "SELECT count(*) FROM parking_sessions") == 0
    sure = await post_event(client, gl, gl.entry, event(ctx, plate="BLURRY1", confidence=0.81))
    assert sure["decision"] == "open"


async def test_qr_token_opens_the_reservation_and_another_lots_token_is_denied(
        client: httpx.AsyncClient, ctx: AppContext, clock: ManualClock) -> None:
    gl = await gate_lot(ctx)
    other = await gate_lot(ctx)
    rid = await confirmed_reservation(ctx, gl, plate="QR1")
    token = await reservation_token(ctx, rid)
    foreign = await post_event(client, other, other.entry, event(ctx, qr_token=token))
    assert foreign["decision"] == "deny"
    forged = await post_event(client, gl, gl.entry, event(ctx, qr_token=token[:-3] + "AAA"))
    assert forged["decision"] == "deny"
    entry = await post_event(client, gl, gl.entry, event(ctx, qr_token=token))
    assert entry["decision"] == "open" and entry["spot"] is not None
    assert await scalar(ctx, "SELECT status FROM reservations WHERE id = :id", id=rid) == "active"
    clock.advance(minutes=30)
    out = await post_event(client, gl, gl.exit, event(ctx, qr_token=token))
    assert out["decision"] == "open" and out["session_id"] == entry["session_id"]


async def test_exit_of_an_unknown_car_opens_and_is_logged(client: httpx.AsyncClient, ctx: AppContext) -> None:
    gl = await gate_lot(ctx)
    out = await post_event(client, gl, gl.exit, event(ctx, plate="GHOST1"))
    assert out["decision"] == "open" and out["session_id"] is None
    assert await scalar(ctx, "SELECT cds_event_type FROM controller_events") == "exit_area"


async def test_edge_replayed_entry_is_accepted_even_when_full_and_its_exit_records_the_debt(
        client: httpx.AsyncClient, ctx: AppContext, clock: ManualClock) -> None:
    gl = await gate_lot(ctx, spots={"regular": 1})
    assert (await post_event(client, gl, gl.entry, event(ctx, plate="INSIDE1")))["decision"] == "open"
    replay = await post_event(client, gl, gl.entry, event(ctx, plate="EDGE1", decided_locally=True, decision="open"))
    assert replay["decision"] == "open"
    s = (await rows(ctx, "SELECT flags, spot_id, kind FROM parking_sessions WHERE id = :id", id=replay["session_id"]))[0]
    assert "entered_while_full" in s.flags and s.spot_id is None
    assert await scalar(ctx, "SELECT source FROM controller_events WHERE payload->>'decided_locally' = 'true'") == "edge"
    clock.advance(hours=1)
    out = await post_event(client, gl, gl.exit, event(ctx, plate="EDGE1", replayed=True, decision="open"))
    assert out["decision"] == "open" and out["fee"]["amount"] > 0
    assert await scalar(ctx, "SELECT reason FROM plate_debts") == "offline_exit"


async def test_early_exit_frees_the_remaining_slots(client: httpx.AsyncClient, ctx: AppContext,
                                                    clock: ManualClock) -> None:
    gl = await gate_lot(ctx, spots={"regular": 1})
    await confirmed_reservation(ctx, gl, plate="EARLYOUT", hours=4)
    later = clock.now() + timedelta(hours=2)
    params = {"vehicle_type": "regular", "starts_at": later.isoformat(),
              "ends_at": (later + timedelta(hours=1)).isoformat()}

    async def available() -> int:
        res = await client.get(f"/api/v1/lots/{gl.lot_id}/availability", params=params)
        assert res.status_code == 200, res.text
        return int(res.json()["available"])

    assert await available() == 0
    await post_event(client, gl, gl.entry, event(ctx, plate="EARLYOUT"))
    clock.advance(minutes=50)
    out = await post_event(client, gl, gl.exit, event(ctx, plate="EARLYOUT"))
    assert out["decision"] == "open"
    assert await available() == 1


async def test_walk_in_exit_frees_its_spot(client: httpx.AsyncClient, ctx: AppContext, clock: ManualClock) -> None:
    gl = await gate_lot(ctx, spots={"regular": 1}, rates=False)
    await post_event(client, gl, gl.entry, event(ctx, plate="W1"))
    assert (await post_event(client, gl, gl.entry, event(ctx, plate="W2")))["decision"] == "deny"
    clock.advance(minutes=20)
    assert (await post_event(client, gl, gl.exit, event(ctx, plate="W1")))["decision"] == "open"
    assert (await post_event(client, gl, gl.entry, event(ctx, plate="W2")))["decision"] == "open"


async def test_a_changed_rate_card_prices_the_next_exit(client: httpx.AsyncClient, ctx: AppContext,
                                                        clock: ManualClock) -> None:
    """The exit keeps the lot's card parsed and reads the body again only when its version changed."""
    gl = await gate_lot(ctx)
    entered = clock.now()
    await post_event(client, gl, gl.entry, event(ctx, plate="REPRICE1"))
    clock.advance(minutes=75)
    asked = await post_event(client, gl, gl.exit, event(ctx, plate="REPRICE1"))
    assert asked["fee"] == price_window(card=demo_rate_card(), spot_type="regular", starts_at=entered,
                                        ends_at=clock.now(), tz="America/Los_Angeles").total.as_json()
    async with ctx.engine.begin() as conn:
        new_card, _ = await put_rate_card(conn, lot_id=gl.lot_id, data=card(tax_percent="20"), now=clock.now())
    expected = price_window(card=new_card, spot_type="regular", starts_at=entered, ends_at=clock.now(),
                            tz="America/Los_Angeles").total.as_json()
    assert expected != asked["fee"]
    paid = await post_event(client, gl, gl.exit, event(ctx, plate="REPRICE1", payment_token="pm_card_visa"))
    assert paid["decision"] == "open" and paid["fee"] == expected


async def test_a_closed_lot_takes_no_walk_in_even_while_the_gate_cache_says_open(
        client: httpx.AsyncClient, ctx: AppContext, clock: ManualClock) -> None:
    """A gate's lot settings are cached for GATE_TTL (docs/adr/0008), but the walk-in's hold reads the lot itself:
    closing it refuses walk-ins at once; the gate's own "Closed" answer follows once the cache expires."""
    gl = await gate_lot(ctx, spots={"regular": 5})
    assert (await post_event(client, gl, gl.entry, event(ctx, plate="OPEN1")))["decision"] == "open"
    async with ctx.engine.begin() as conn:
        await conn.execute(text("UPDATE lots SET status = 'closed' WHERE id = :l"), {"l": gl.lot_id})
    clock.advance(GATE_TTL - timedelta(microseconds=1))
    assert (await post_event(client, gl, gl.entry, event(ctx, plate="OPEN2")))["decision"] == "deny"
    clock.advance(microseconds=1)
    closed = await post_event(client, gl, gl.entry, event(ctx, plate="OPEN3"))
    assert (closed["decision"], closed["message"]) == ("deny", "Closed")
    assert await scalar(ctx, "SELECT count(*) FROM reservations WHERE kind = 'walk_in'") == 1


async def _paid_reservation(ctx: AppContext, gl: GateLot, plate: str) -> uuid.UUID:
    deps = booking_deps(ctx)
    now = ctx.clock.now()
    rid = await holds.hold(deps=deps, user_id=None, lot_id=gl.lot_id, vehicle_type="regular", starts_at=now,
                           ends_at=now + timedelta(hours=3), plate=plate, now=now)
    await transitions.create_payment_intent(deps=deps, reservation_id=rid)
    await transitions.confirm(deps=deps, reservation_id=rid, user_id=None, payment_token="pm_card_visa", now=now)
    return rid


async def test_the_money_of_a_paid_reservation_follows_its_gate_entry_and_exit(
        client: httpx.AsyncClient, ctx: AppContext, clock: ManualClock) -> None:
    """Check-in and check-out commit with the gate's ledger; settlement follows each commit as it follows
    booking.transitions.check_in/check_out: at_exit captures at the exit, at_start at the entry."""
    provider = StrictProvider()
    ctx.extras["payment_provider"] = provider
    exit_lot, start_lot = await gate_lot(ctx), await gate_lot(ctx)
    async with ctx.engine.begin() as conn:
        await put_rate_card(conn, lot_id=start_lot.lot_id, data=card(capture="at_start"), now=clock.now())
    at_exit, at_start = await _paid_reservation(ctx, exit_lot, "PAID1"), await _paid_reservation(ctx, start_lot, "PAID2")
    await post_event(client, exit_lot, exit_lot.entry, event(ctx, plate="PAID1"))
    await post_event(client, start_lot, start_lot.entry, event(ctx, plate="PAID2"))
    pay_sql = "SELECT amount, amount_captured, intent_id FROM payments WHERE reservation_id = :r"
    exit_pay, start_pay = (await rows(ctx, pay_sql, r=at_exit))[0], (await rows(ctx, pay_sql, r=at_start))[0]
    assert exit_pay.amount > 0 and exit_pay.amount_captured == 0
    assert start_pay.amount_captured == start_pay.amount > 0
    clock.advance(hours=1)
    for gl, plate in ((exit_lot, "PAID1"), (start_lot, "PAID2")):
        assert (await post_event(client, gl, gl.exit, event(ctx, plate=plate)))["decision"] == "open"
    assert (await rows(ctx, pay_sql, r=at_exit))[0].amount_captured == exit_pay.amount
    assert await scalar(ctx, "SELECT array_agg(DISTINCT status) FROM reservations") == ["completed"]
    assert [provider.intents[p.intent_id].moves for p in (exit_pay, start_pay)] == [["authorise", "capture"]] * 2
    assert not provider.violations
