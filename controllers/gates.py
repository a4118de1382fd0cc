"""Gate events: entry and exit decisions by plate or QR token, applied exactly once.

Decisions are `open`, `deny`, `pay` or `attendant`. Every event goes through the controller_events
ledger (primary key lot_id + event_id): the ledger row is inserted and the decision written in ONE
transaction, so a repeated event_id -- sequential or concurrent -- gets the first decision back (a
concurrent duplicate waits on the primary key until the first transaction commits, then reads it).

Never trap a car (docs/design.md invariant 7). The exit rule:
  1. nothing due (prepaid, pass, within grace, no rates, unknown session) -> `open`;
  2. the event carries a `payment_token` (pay terminal or saved card) -> charge it: `open` whatever the
     outcome; a failed charge (declined, or the provider unreachable) records a plate debt;
  3. otherwise the first exit event of the session answers `pay` with the amount (the session stays
     active and remembers it asked); ANY later exit event of that session opens and records the unpaid
     amount as a plate debt -- so `pay` is answered at most once per session;
  4. an exit the edge agent already opened (`decided_locally`) is a fact: the session is closed and
     anything due becomes a plate debt.
Physical events are facts: an exit with no known session opens (logged); an entry the edge agent
already let in is recorded even when the lot looks full (session flagged `entered_while_full`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import orjson
from cachetools import TTLCache
from sqlalchemy.ext.asyncio import AsyncConnection

from booking import repair
from booking.access import verify_qr_token
from booking.deps import BookingDeps
from booking.settlement import settle_quietly
from booking.wiring import booking_deps
from controllers import charging, walkins
from controllers import queries_gates as q
from controllers.fees import session_fee
from controllers.live import LivePublisher, live_publisher
from controllers.messages import GateEventIn
from core.clock import Clock, SystemClock
from core.context import AppContext
from core.db import raw_pool_size
from core.errors import Conflict, NotFound, SoldOut, ValidationFailed
from core.logging import get_logger
from core.money import Money
from core.security import mask_plate, normalise_plate, plate_hash
from core.ttlcache import ttl_cache
from pricing.rates import RateCard, parse_rate_card

log = get_logger("parkgrid.gates")

OPEN, DENY, PAY, ATTENDANT = "open", "deny", "pay", "attendant"
DECISIONS = (OPEN, DENY, PAY, ATTENDANT)

#: how long a process uses a gate's lot settings (status, timezone, early arrival, walk-in horizon) before it
#: reads them again. A closed lot refuses walk-ins at once (the booking hold reads the lot itself); only the
#: gate's "Closed" wording waits for this (docs/adr/0010)
GATE_TTL = timedelta(seconds=10)


@dataclass(frozen=True)
class GateEvent:
    """One event from a gate controller (or replayed by the edge agent)."""

    event_id: str
    sequence: int
    occurred_at: datetime
    direction: str | None = None  # defaults to the gate's own direction
    plate: str | None = None
    plate_confidence: float | None = None
    qr_token: str | None = None
    vehicle_type: str = "regular"  # what a walk-in is booked as (ALPR rarely knows better)
    payment_token: str | None = None  # a pay terminal's card token, charged at the exit
    decided_locally: bool = False  # the edge agent already acted on this event: a fact to record
    local_decision: str | None = None  # what the edge agent decided


@dataclass(frozen=True)
class Decision:
    decision: str
    session_id: uuid.UUID | None
    spot: dict[str, Any] | None
    fee: Money | None
    message: str
    #: what the fee is made of when it is more than parking: EV idle fees (controllers.charging.EvCharge)
    fee_items: tuple[dict[str, Any], ...] = ()

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"decision": self.decision, "session_id": str(self.session_id) if self.session_id else None,
               "spot": self.spot, "fee": self.fee.as_json() if self.fee else None, "message": self.message}
        if self.fee_items:
            out["fee_items"] = list(self.fee_items)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Decision:
        fee = data.get("fee")
        sid = data.get("session_id")
        return cls(decision=data["decision"], session_id=uuid.UUID(sid) if sid else None, spot=data.get("spot"),
                   fee=Money(int(fee["amount"]), fee["currency"]) if fee else None, message=data.get("message", ""),
                   fee_items=tuple(data.get("fee_items") or ()))


@dataclass(frozen=True)
class GateOutcome:
    decision: Decision
    duplicate: bool


@dataclass(frozen=True)
class Gate:
    """A gate and the settings of its lot that decisions use."""

    id: uuid.UUID
    lot_id: uuid.UUID
    direction: str
    timezone: str
    lot_status: str
    early: int
    horizon: int


@dataclass
class GateDeps:
    """What gate decisions need; built per process (API, edge replay, tests)."""

    booking: BookingDeps
    #: the raw asyncpg pool the ledger transaction runs on (AppContext.pg, ADR 0007)
    pg: Callable[[], Awaitable[asyncpg.Pool]]
    min_plate_confidence: float = 0.8
    #: bounds concurrent decisions: each holds a raw connection for its ledger transaction while the booking
    #: calls inside it take other connections, so gate_deps keeps it below the raw pool's size
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(6))
    rate_cards: dict[uuid.UUID, tuple[Any, RateCard]] = field(default_factory=dict)
    #: the clock the gate cache ages by (the process's: ctx.clock)
    clock: Clock = field(default_factory=SystemClock)
    gates: TTLCache[uuid.UUID, Gate] = field(init=False)
    #: where decisions are told to the operators' live stream (None: the edge agent's replay, some tests)
    live: LivePublisher | None = None

    def __post_init__(self) -> None:
        self.gates = ttl_cache(clock=self.clock, ttl=GATE_TTL)


async def find_gate(deps: GateDeps, lot_id: uuid.UUID, gate_id: uuid.UUID, now: datetime) -> Gate | None:
    """The lot's gate and the lot's settings (read at most once per GATE_TTL per process), or None if the lot
    has no such gate. Always looked up within its lot (the caller knows it: the device's lot, the MQTT topic's),
    so the statement stays on one shard when lots are distributed (docs/adr/0024)."""
    gate = deps.gates.get(gate_id)
    if gate is not None and gate.lot_id != lot_id:
        return None
    if gate is None:
        row = await (await deps.pg()).fetchrow(q.GATE, lot_id, gate_id)
        if row is None:
            return None
        gate = Gate(gate_id, row["lot_id"], row["direction"], row["timezone"], row["lot_status"],
                    row["early_arrival_minutes"], row["walk_in_horizon_minutes"])
        deps.gates[gate_id] = gate
    return gate


async def _gate(deps: GateDeps, lot_id: uuid.UUID, gate_id: uuid.UUID, now: datetime) -> Gate:
    gate = await find_gate(deps, lot_id, gate_id, now)
    if gate is None:
        raise NotFound(f"gate {gate_id} not found in lot {lot_id}")
    return gate


def _json(data: dict[str, Any]) -> str:
    return orjson.dumps(data).decode()


async def decide(*, deps: GateDeps, lot_id: uuid.UUID, device_id: uuid.UUID | None, gate_id: uuid.UUID,
                 event: GateEvent, now: datetime) -> GateOutcome:
    """Decide (once) what the gate of `lot_id` does for this event; a repeated event_id returns the first
    decision."""
    gate = await _gate(deps, lot_id, gate_id, now)
    async with deps.slots:
        # Waits on a concurrent duplicate are bounded by the connection's statement_timeout (core.db).
        async with (await deps.pg()).acquire() as ledger, ledger.transaction():
            inserted = await ledger.fetchval(q.LEDGER_INSERT, *_ledger_row(gate, device_id, event, now))
            if inserted is None:
                return GateOutcome(await _stored(ledger, gate.lot_id, event.event_id), duplicate=True)
            run = _run(deps, ledger, gate, event, now)
            decision, cds = await _decide(run)
            await ledger.execute(q.LEDGER_SET_DECISION, gate.lot_id, event.event_id, _json(decision.as_json()), cds)
        await run.committed()
    if deps.live is not None:
        await _tell_live(deps.live, gate, event, decision, cds, run.at)
    log.info("gate_decision", lot_id=str(gate.lot_id), gate_id=str(gate_id), event_id=event.event_id,
             decision=decision.decision, cds=cds, decided_locally=event.decided_locally)
    return GateOutcome(decision, duplicate=False)


async def _tell_live(live: LivePublisher, gate: Gate, event: GateEvent, decision: Decision, cds: str,
                     at: datetime) -> None:
    """The decision, on the lot's live stream (no plate: plates never leave in a feed); a car in or out also
    has the lot's occupancy recomputed."""
    await live.publish(gate.lot_id, "gate", {
        "gate_id": str(gate.id), "direction": event.direction or gate.direction, "event_id": event.event_id,
        "decision": decision.decision, "message": decision.message, "type": cds, "at": at,
        "spot": decision.spot["label"] if decision.spot else None,
        "fee": decision.fee.as_json() if decision.fee else None})
    if cds in ("enter_area", "exit_area"):
        live.changed(gate.lot_id)


def _ledger_row(gate: Gate, device_id: uuid.UUID | None, event: GateEvent, now: datetime) -> tuple[Any, ...]:
    plate = _plate(event.plate)
    payload = {  # no plate in clear: the ledger outlives the plate retention period
        "gate_id": str(gate.id), "direction": event.direction or gate.direction,
        "plate_masked": mask_plate(plate), "plate_confidence": event.plate_confidence,
        "has_qr": event.qr_token is not None, "decided_locally": event.decided_locally,
        "local_decision": event.local_decision, "vehicle_type": event.vehicle_type,
    }
    return (gate.lot_id, event.event_id, device_id, event.sequence, "edge" if event.decided_locally else "gate",
            event.occurred_at, now, _json(payload))


async def _stored(conn: asyncpg.Connection, lot_id: uuid.UUID, event_id: str) -> Decision:
    data = await conn.fetchval(q.LEDGER_DECISION, lot_id, event_id)
    if data is None:  # only rows written by something other than decide() can lack a decision
        return Decision(ATTENDANT, None, None, None, "Event already received; please wait for an attendant")
    return Decision.from_json(orjson.loads(data))


def _plate(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return normalise_plate(raw)
    except ValidationFailed:
        return None  # an unreadable plate is a read failure, not a client error


def _spot(spot_id: uuid.UUID | None, label: str | None, level: str | None) -> dict[str, Any] | None:
    """A spot as the gate shows it."""
    return {"id": str(spot_id), "label": label, "level": level} if spot_id is not None and label is not None else None


@dataclass
class _Run:
    """One decision in progress: its inputs, resolved once."""

    deps: GateDeps
    conn: asyncpg.Connection  # the ledger transaction
    gate: Gate
    event: GateEvent
    now: datetime  # the server's clock
    at: datetime  # when it happened: now, or (replayed from the edge) occurred_at, never in the future
    plate: str | None
    plate_hash: bytes | None
    #: what follows the ledger commit: releasing slots and settling money need the new statuses committed
    after_commit: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def committed(self) -> None:
        for step in self.after_commit:
            await step()

    @property
    def secret(self) -> bytes:
        return self.deps.booking.secret

    @property
    def unsure(self) -> bool:
        c = self.event.plate_confidence
        return c is not None and c < self.deps.min_plate_confidence


def _run(deps: GateDeps, conn: asyncpg.Connection, gate: Gate, event: GateEvent, now: datetime) -> _Run:
    plate = _plate(event.plate)
    at = min(event.occurred_at, now) if event.decided_locally else now
    return _Run(deps, conn, gate, event, now, at, plate, plate_hash(deps.booking.secret, plate) if plate else None)


async def _decide(run: _Run) -> tuple[Decision, str]:
    if (run.event.direction or run.gate.direction) == "entry":
        return await _entry(run)
    return await _exit(run)


# -- entry ---------------------------------------------------------------------------------------

async def _entry(run: _Run) -> tuple[Decision, str]:
    ev = run.event
    if ev.decided_locally and ev.local_decision in (DENY, ATTENDANT):
        return Decision(ev.local_decision, None, None, None, "Decided at the edge; nobody entered"), "decision_only"
    if ev.qr_token:
        return await _entry_by_qr(run)
    if run.plate is None and not ev.decided_locally:
        return Decision(ATTENDANT, None, None, None, "Plate not read; an attendant is on the way"), "decision_only"
    if run.unsure and not ev.decided_locally:
        return Decision(ATTENDANT, None, None, None, "Plate not read clearly; an attendant is on the way"), \
            "decision_only"
    if run.plate_hash is None:
        return await _enter_walk_in(run)
    local = run.at.astimezone(ZoneInfo(run.gate.timezone)).date()
    found = await run.conn.fetchrow(q.ENTRY_LOOKUP, run.gate.lot_id, run.plate_hash, run.gate.early, run.at,
                                    date(local.year, local.month, 1), _walk_in_key(run))
    if found["id"] is not None:
        return await _enter_reservation(run, found)
    if found["session_id"] is not None:  # its exit was never seen: the same car, the same session
        spot = _spot(found["session_spot_id"], found["session_label"], found["session_level"])
        return Decision(OPEN, found["session_id"], spot, None, "Welcome back"), "enter_area"
    if found["has_pass"]:
        sid = await _insert_session(run, kind="pass", reservation_id=None, spot_id=None)
        return Decision(OPEN, sid, None, None, "Welcome, pass holder"), "enter_area"
    return await _enter_walk_in(run, found)


async def _entry_by_qr(run: _Run) -> tuple[Decision, str]:
    assert run.event.qr_token is not None
    try:
        grant = verify_qr_token(secret=run.secret, token=run.event.qr_token, now=run.at)
    except ValidationFailed as exc:
        if run.event.decided_locally:
            return await _enter_walk_in(run)
        return Decision(DENY, None, None, None, f"Ticket not valid: {exc.detail}"), "decision_only"
    if grant.lot_id != run.gate.lot_id:
        if run.event.decided_locally:
            return await _enter_walk_in(run)
        return Decision(DENY, None, None, None, "This ticket is for another car park"), "decision_only"
    return await _enter_reservation(run, await run.conn.fetchrow(q.RESERVATION_FOR_GATE, grant.reservation_id))


async def _enter_reservation(run: _Run, res: asyncpg.Record | None) -> tuple[Decision, str]:
    """Let in the car of `res` (q.RESERVATION_FOR_GATE's columns) if it is this lot's reservation, now."""
    in_window = res is not None and res["starts_at"] - timedelta(minutes=run.gate.early) <= run.at < res["ends_at"]
    if res is None or res["lot_id"] != run.gate.lot_id or res["kind"] != "reservation" \
            or res["status"] not in ("confirmed", "active") or not in_window:
        if run.event.decided_locally:
            return await _enter_walk_in(run)
        return Decision(DENY, None, None, None, "No valid reservation for this time"), "decision_only"
    # booking.transitions.check_in's transition, committed with the session (a concurrent event for the same car
    # may have checked it in first); the money follows the commit, as it follows check_in's.
    if res["status"] == "confirmed" and await run.conn.fetchval(q.CHECK_IN, res["id"], run.at) is not None:
        run.after_commit.append(partial(settle_quietly, deps=run.deps.booking, reservation_id=res["id"], now=run.at))
    sid = await _insert_session(run, kind="reservation", reservation_id=res["id"], spot_id=res["spot_id"],
                                plate=run.plate or res["plate"], p_hash=run.plate_hash or res["plate_hash"])
    spot = _spot(res["spot_id"], res["label"], res["level"])
    where = f"{spot['label']} (level {spot['level']})" if spot else "any free spot"
    return Decision(OPEN, sid, spot, None, f"Welcome. Your spot: {where}"), "enter_area"


def _walk_in_key(run: _Run) -> str:
    return f"gate:{run.event.event_id}"


async def _enter_walk_in(run: _Run, found: asyncpg.Record | None = None) -> tuple[Decision, str]:
    """Book a walk-in and open its session; `found` is q.ENTRY_LOOKUP's row when the entry was looked up."""
    if run.gate.lot_status != "open" and not run.event.decided_locally:
        return Decision(DENY, None, None, None, "Closed"), "decision_only"
    key = _walk_in_key(run)
    try:
        # Only an earlier attempt at this very event that crashed before its ledger commit can have booked one.
        rid = found["walk_in_id"] if found is not None else \
            await run.conn.fetchval(q.WALK_IN_BY_EVENT, run.gate.lot_id, key)
        if rid is None:
            rid = await walkins.admit_walk_in(deps=run.deps.booking, lot_id=run.gate.lot_id, plate=run.plate,
                                              vehicle_type=run.event.vehicle_type,
                                              horizon=timedelta(minutes=run.gate.horizon), event_key=key, now=run.now)
    except (SoldOut, Conflict):
        if not run.event.decided_locally:
            return Decision(DENY, None, None, None, "Full"), "decision_only"
        # The edge let the car in: it is inside. Record it without a spot; counts reconcile from sessions.
        sid = await _insert_session(run, kind="walk_in", reservation_id=None, spot_id=None,
                                    flags=["entered_while_full"])
        log.warning("edge_entry_while_full", lot_id=str(run.gate.lot_id), event_id=run.event.event_id)
        return Decision(OPEN, sid, None, None, "Welcome"), "enter_area"
    row = await run.conn.fetchrow(q.OPEN_WALK_IN_SESSION, rid, uuid.uuid4(), run.plate, run.plate_hash, run.at,
                                  run.gate.id, ["decided_locally"] if run.event.decided_locally else [], run.now)
    sid = row["session_id"]
    if sid is None:  # a retried event after a crash: the walk-in already has its session
        sid = await run.conn.fetchval(q.SESSION_ID_BY_RESERVATION, run.gate.lot_id, rid)
    spot = {"id": str(row["spot_id"]), "label": row["label"], "level": row["level"]}
    return Decision(OPEN, sid, spot, None, f"Welcome. Please park at {spot['label']}"), "enter_area"


async def _insert_session(run: _Run, *, kind: str, reservation_id: uuid.UUID | None, spot_id: uuid.UUID | None,
                          plate: str | None = None, p_hash: bytes | None = None,
                          flags: list[str] | None = None) -> uuid.UUID:
    flags = list(flags or [])
    if run.event.decided_locally:
        flags.append("decided_locally")
    sid = await run.conn.fetchval(q.INSERT_SESSION, run.gate.lot_id, uuid.uuid4(), kind, reservation_id, spot_id,
                                  plate or run.plate, p_hash or run.plate_hash, run.at, run.gate.id, flags, run.now)
    if sid is None:  # the reservation already has its session (the car re-entered, or a replay)
        sid = await run.conn.fetchval(q.SESSION_ID_BY_RESERVATION, run.gate.lot_id, reservation_id)
    return sid  # type: ignore[no-any-return]


# -- exit ----------------------------------------------------------------------------------------

async def _exit(run: _Run) -> tuple[Decision, str]:
    ev = run.event
    session = None
    cached_card = run.deps.rate_cards.get(run.gate.lot_id)
    card_key = cached_card[0] if cached_card is not None else (None, None)
    if ev.qr_token:
        try:
            # an overstayer's token has expired by now: accept it for a week past its end at the exit
            grant = verify_qr_token(secret=run.secret, token=ev.qr_token, now=run.at - timedelta(days=8))
        except ValidationFailed:
            grant = None
        if grant is not None and grant.lot_id == run.gate.lot_id:
            session = await run.conn.fetchrow(q.EXIT_SESSION_BY_RESERVATION, run.gate.lot_id, grant.reservation_id,
                                              *card_key)
            if session is not None and session["status"] != "active":
                session = None
    if session is None and run.plate_hash is not None:
        if run.unsure and not ev.decided_locally and not ev.qr_token:
            return Decision(ATTENDANT, None, None, None, "Plate not read clearly; an attendant is on the way"), \
                "decision_only"
        session = await run.conn.fetchrow(q.EXIT_SESSION_BY_PLATE, run.gate.lot_id, run.plate_hash, *card_key)
    if session is None:
        if run.plate is None and not ev.qr_token and not ev.decided_locally:
            return Decision(ATTENDANT, None, None, None, "Plate not read; an attendant is on the way"), "decision_only"
        log.warning("exit_without_session", lot_id=str(run.gate.lot_id), event_id=ev.event_id,
                    plate=mask_plate(run.plate))
        return Decision(OPEN, None, None, None, "Goodbye"), "exit_area"

    card = _exit_card(run, cached_card, session)
    parking = session_fee(card=card, timezone=run.gate.timezone, kind=session["kind"],
                          entered_at=session["entered_at"], ends_at=session["ends_at"], spot_type=session["spot_type"],
                          now=run.at)
    # EV charging sessions of this car since its entry, with their idle fees (billed when the session completes)
    charges = await charging.charges_at_exit(conn=run.conn, lot_id=run.gate.lot_id, plate_hash=session["plate_hash"],
                                             reservation_id=session["reservation_id"],
                                             entered_at=session["entered_at"], card=card, now=run.at)
    total = parking.amount
    for c in charges:
        if total.amount == 0 and c.fee.currency != total.currency:  # a pass's zero is in the default currency
            total = Money(0, c.fee.currency)
        total += c.fee
    items = (({"kind": "parking", "basis": parking.basis, "amount": parking.amount.as_json()},
              *(c.as_item() for c in charges)) if charges else ())
    done = partial(_complete, charges=charges)
    due = max(total.amount - session["paid_amount"], 0)
    spot = _spot(session["spot_id"], session["label"], session["level"])
    money_due = Money(due, total.currency)
    if due == 0:
        await done(run, session, fee=total, paid=0)
        return Decision(OPEN, session["id"], spot, total if total.amount else None, "Goodbye", items), "exit_area"
    if ev.decided_locally:
        await done(run, session, fee=total, paid=0, debt=(money_due, "offline_exit"))
        return Decision(OPEN, session["id"], spot, money_due, "Left while offline; the amount is recorded",
                        items), "exit_area"
    if ev.payment_token:
        paid = await _charge(run, session["id"], money_due)
        await done(run, session, fee=total, paid=due if paid else 0,
                   debt=None if paid else (money_due, "payment_failed"))
        message = "Paid. Goodbye" if paid else "Payment failed; the amount is recorded against your plate"
        return Decision(OPEN, session["id"], spot, money_due, message, items), "exit_area"
    if session["pay_requested_at"] is None:
        await run.conn.execute(q.SESSION_PAY_REQUESTED, run.gate.lot_id, session["id"], run.now)
        return Decision(PAY, session["id"], spot, money_due,
                        f"Please pay {due / 100:.2f} {money_due.currency.upper()}", items), "decision_only"
    # `pay` was answered once already: never keep the car at the barrier.
    await done(run, session, fee=total, paid=0, debt=(money_due, "unpaid_exit"))
    return Decision(OPEN, session["id"], spot, money_due, "Unpaid; the amount is recorded against your plate",
                    items), "exit_area"


def _exit_card(run: _Run, cached: tuple[Any, RateCard] | None, session: asyncpg.Record) -> RateCard | None:
    """The rate card read along with the exit's session: the process's parsed copy when the query found it current."""
    if session["card_version"] is None:
        return None
    if session["card_body"] is None:  # the query compared versions with the copy's: it is current
        assert cached is not None
        return cached[1]
    return _card_from_row(run.deps, run.gate.lot_id, session["card_version"], session["card_updated_at"],
                          orjson.loads(session["card_body"]))


def _card_from_row(deps: GateDeps, lot_id: uuid.UUID, version: int, updated_at: datetime,
                   body: Any) -> RateCard | None:
    """Parse a lot's rate card and keep it by version (None when it is invalid)."""
    try:
        card = parse_rate_card(body)
    except (ValueError, ValidationFailed):
        log.error("rate_card_invalid", lot_id=str(lot_id))
        return None
    deps.rate_cards[lot_id] = ((version, updated_at), card)
    return card


async def rate_card(deps: GateDeps, conn: AsyncConnection, lot_id: uuid.UUID) -> RateCard | None:
    """The lot's rate card, parsed once per version per process."""
    row = (await conn.execute(q.RATE_CARD, {"lot_id": lot_id})).first()
    if row is None:
        return None
    cached = deps.rate_cards.get(lot_id)
    if cached is not None and cached[0] == (row.version, row.updated_at):
        return cached[1]
    return _card_from_row(deps, lot_id, row.version, row.updated_at, row.body)


async def _complete(run: _Run, session: asyncpg.Record, *, fee: Money, paid: int,
                    debt: tuple[Money, str] | None = None, charges: Sequence[charging.EvCharge] = ()) -> None:
    """Close the session and its booking (with a plate debt for what is left unpaid) and bill its charging
    sessions; the rest of the booking's slots are freed after the commit."""
    flags = ["decided_locally"] if run.event.decided_locally else []
    if debt is not None:  # marked on the session itself too: a car without a readable plate has no plate debt
        flags.append("unpaid")
    booking = await run.conn.fetchrow(q.COMPLETE_SESSION, run.gate.lot_id, session["id"], run.at, run.gate.id,
                                      fee.amount, paid, fee.currency, flags)
    if charges:
        await charging.bill_charges(conn=run.conn, lot_id=run.gate.lot_id, session_id=session["id"], charges=charges)
    if debt is not None and session["plate_hash"] is not None:
        await run.conn.execute(q.INSERT_DEBT, run.gate.lot_id, session["plate_hash"], session["id"], debt[0].amount,
                               debt[0].currency, debt[1], run.now)
        log.warning("plate_debt_recorded", lot_id=str(run.gate.lot_id), session_id=str(session["id"]),
                    amount=debt[0].amount, reason=debt[1])
    if booking is not None:  # None: no booking, or already completed (a retried exit)
        run.after_commit.append(partial(_free_booking, run.deps.booking, run.gate.lot_id, session["kind"], booking,
                                        run.at))


async def _free_booking(deps: BookingDeps, lot_id: uuid.UUID, kind: str, booking: asyncpg.Record,
                        at: datetime) -> None:
    """After the commit that completed a booking at `at`: what booking.transitions.check_out does after its own
    (free the rest of its slots, settle its money); a walk-in also frees any extension's slots, and has no money
    to settle (its hold is free, its fee is the session's)."""
    if at < booking["ends_at"]:
        await repair.release_slots(deps, lot_id, booking["id"], from_=at)
    if kind == "walk_in":
        await walkins.free_extension(deps=deps, lot_id=lot_id, spot_idx=booking["spot_idx"],
                                     slot_end=booking["slot_end"], now=at)
    else:
        await settle_quietly(deps=deps, reservation_id=booking["id"], now=at)


async def _charge(run: _Run, session_id: uuid.UUID, amount: Money) -> bool:
    """Charge the exit fee to the event's payment token; False on any decline or provider failure."""
    payments = run.deps.booking.payments
    key = f"session:{session_id}:exit:{amount.amount}"
    status, captured = "failed", 0
    intent_id: str | None = None
    try:
        intent = await payments.create_intent(amount=amount.amount, currency=amount.currency,
                                              idempotency_key=f"{key}:intent",
                                              metadata={"session_id": str(session_id), "lot_id": str(run.gate.lot_id)})
        intent_id = intent.intent_id
        auth = await payments.authorize(intent_id=intent.intent_id, payment_method=run.event.payment_token or "",
                                        amount=amount.amount, idempotency_key=f"{key}:authorize")
        status = auth.status
        if auth.status == "requires_capture":
            cap = await payments.capture(intent_id=intent.intent_id, amount=amount.amount,
                                         idempotency_key=f"{key}:capture")
            status = cap.status
            captured = amount.amount if cap.status == "succeeded" else 0
    except Exception as exc:  # the provider is away or broke: open anyway (invariant 7); logged, never raised
        log.warning("exit_charge_failed", session_id=str(session_id), error=type(exc).__name__)
    if intent_id is not None:
        await run.conn.execute(q.INSERT_EXIT_PAYMENT, run.gate.lot_id, session_id, payments.name, intent_id, status,
                               amount.amount, captured, amount.currency, run.now)
    return captured > 0


def gate_deps(ctx: AppContext) -> GateDeps:
    """The process's GateDeps (one per context: the semaphore and the caches are shared)."""
    deps = ctx.extras.get("gate_deps")
    if not isinstance(deps, GateDeps):
        s = ctx.settings
        # One raw connection is always left for the booking calls inside decisions, should they use that pool.
        deps = GateDeps(booking=booking_deps(ctx), pg=ctx.pg, min_plate_confidence=s.gate_min_plate_confidence,
                        clock=ctx.clock,
                        slots=asyncio.Semaphore(raw_pool_size(s) - 1), live=live_publisher(ctx))
        ctx.extras["gate_deps"] = deps
    return deps


def gate_event(body: GateEventIn) -> GateEvent:
    """The domain event of a validated gate message (every lane validates with controllers.messages.GateEventIn)."""
    return GateEvent(event_id=body.event_id, sequence=body.sequence, occurred_at=body.occurred_at,
                     direction=body.direction, plate=body.plate, plate_confidence=body.plate_confidence,
                     qr_token=body.qr_token, vehicle_type=body.vehicle_type, payment_token=body.payment_token,
                     decided_locally=body.decided_locally or body.replayed, local_decision=body.decision)


async def decide_mqtt(*, deps: GateDeps, lot_id: uuid.UUID, gate_id: uuid.UUID, body: GateEventIn,
                      now: datetime) -> GateOutcome:
    """A gate event that arrived over MQTT, validated by the HTTP route's model: decided exactly like HTTP. The
    broker let only this lot's devices (and the ingest consumer) publish on the lot's topics (docs/adr/0016)."""
    event = gate_event(body)
    return await decide(deps=deps, lot_id=lot_id, device_id=None, gate_id=gate_id, event=event, now=now)
