"""`parkgrid simulate`: a city with a believable past, driven through the real domain functions on a moved clock.

The past is cut in two (docs/adr/0018):
- the older part is written in bulk: visits drawn by analytics.demand are placed on spots by a per-type
  allocator that keeps every spot to one car per 15-minute slot, and written as completed reservations and
  parking sessions with COPY (cars still parked at the cut are written as active, and leave through the gate
  later);
- the recent part (`domain_hours`, by default the last hour) is driven through the domain: holds, payment
  confirmations, cancellations and no-shows (booking.holds, booking.transitions, booking.sweepers), gate
  entries and exits by plate with walk-ins admitted by the gate (controllers.gates), bay sensor events at the sensor lots
  (controllers.sensors), walk-in extensions and overstays, each at its moment on a ManualClock.
Then the occupancy history is computed from those rows (analytics.history). Same seed and end, same history.

This module is a driver (like the CLI): it is the one analytics module that imports booking, controllers and geo.
"""

from __future__ import annotations

import heapq
import math
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import text

from analytics import history
from analytics.demand import LotDemand, Visit, city_visits
from booking import holds, sweepers, transitions
from booking import reconcile as rc
from booking.runtime import slot_store
from booking.wiring import booking_deps
from controllers import gates
from controllers.occupancy import counters_for
from controllers.sensors import ingest_sensor_events
from controllers.walkins import extend_walk_ins
from core.clock import ManualClock
from core.context import AppContext, build_context
from core.errors import Conflict, DomainError
from core.security import plate_hash
from geo.seed import CITY_TZ, plan_city, seed_city

SEED_NS = uuid.UUID("0b7f3f7e-3c1e-4d43-9a0e-5f0c1d2a9b11")
SWEEP_EVERY = timedelta(minutes=15)
DEFAULT_DOMAIN_HOURS = 1.0
PAYMENT_METHOD = "pm_card_visa"


def _floor15(value: datetime) -> datetime:
    return history.floor_bucket(value)


def _ceil15(value: datetime) -> datetime:
    floor = _floor15(value)
    return floor if floor == value else floor + timedelta(minutes=15)


@dataclass
class Tally:
    visits: int = 0
    reservations: int = 0
    walk_ins: int = 0
    cancellations: int = 0
    no_shows: int = 0
    overstays: int = 0
    turned_away: int = 0
    sold_out: int = 0
    sensor_events: int = 0
    domain_calls: int = 0
    errors: Counter[str] = field(default_factory=Counter)


@dataclass
class _Lot:
    id: uuid.UUID
    entry: uuid.UUID
    exit: uuid.UUID
    sensors: bool
    #: spot type -> heap of (free from, spot index)
    free: dict[str, list[tuple[datetime, int]]]
    spot_ids: dict[int, uuid.UUID]
    labels: dict[int, str]


def _base36(n: int) -> str:
    digits = ""
    while True:
        n, r = divmod(n, 36)
        digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[r] + digits
        if n == 0:
            return digits


class _Plates:
    """Deterministic plates: one per visit."""

    def __init__(self, seed: int, secret: bytes) -> None:
        self.seed, self.secret, self.n = seed, secret, 0

    def next(self) -> tuple[str, bytes]:
        self.n += 1
        plate = f"S{self.seed % 100:02d}{_base36(self.n):0>6}"  # at most 12 characters (core.security)
        return plate, plate_hash(self.secret, plate)


async def _lots(ctx: AppContext, plans: list[Any], seed: int) -> dict[int, _Lot]:
    ids = [p.id for p in plans]
    async with ctx.engine.connect() as conn:
        spots = (await conn.execute(text(
            "SELECT lot_id, id, idx, type, label FROM spots WHERE lot_id = ANY(:ids) AND status = 'in_service' "
            "ORDER BY lot_id, idx"), {"ids": ids})).all()
        gate_rows = (await conn.execute(text(
            "SELECT lot_id, id, direction, name FROM gates WHERE lot_id = ANY(:ids) ORDER BY lot_id, name"),
            {"ids": ids})).all()
    by_lot: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for s in spots:
        by_lot[s.lot_id].append(s)
    entry: dict[uuid.UUID, uuid.UUID] = {}
    exit_: dict[uuid.UUID, uuid.UUID] = {}
    for g in gate_rows:
        (entry if g.direction == "entry" else exit_).setdefault(g.lot_id, g.id)
    out = {}
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    for i, plan in enumerate(plans):
        free: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
        for s in by_lot[plan.id]:
            free[s.type].append((epoch, s.idx))
        out[i] = _Lot(plan.id, entry[plan.id], exit_[plan.id], sensors=(plan.kind == "surface" and i % 4 == 1),
                      free=dict(free), spot_ids={s.idx: s.id for s in by_lot[plan.id]},
                      labels={s.idx: s.label for s in by_lot[plan.id]})
    return out


def _demand(plans: list[Any], lots: dict[int, _Lot]) -> list[LotDemand]:
    out = []
    for i, plan in enumerate(plans):
        caps = {t: len(h) for t, h in lots[i].free.items()}
        out.append(LotDemand(plan.id, i, plan.kind, caps, plan.lat, plan.lng))
    return out


def _place(lot: _Lot, spot_type: str, start: datetime, end: datetime) -> int | None:
    """A spot of `spot_type` free over whole slots [start, end) (the one free the longest), or None."""
    heap = lot.free.get(spot_type)
    if not heap or heap[0][0] > start:
        return None
    _, idx = heapq.heappop(heap)
    heapq.heappush(heap, (end, idx))
    return idx


@dataclass
class _Bulk:
    reservations: list[tuple[Any, ...]] = field(default_factory=list)
    sessions: list[tuple[Any, ...]] = field(default_factory=list)


def _fee(entered: datetime, exited: datetime) -> int:
    """The demo card's day rate, per started quarter hour, capped at the daily maximum (bulk rows only)."""
    quarters = max(1, math.ceil((exited - entered).total_seconds() / 900))
    return min(quarters * 100, 3200)


# One scheduled domain action: (when, order, kind, payload)
_Action = tuple[datetime, int, str, dict[str, Any]]


def _bulk_visit(v: Visit, lot: _Lot, bulk: _Bulk, plates: _Plates, cut: datetime, tally: Tally,
                actions: list[_Action], seed: int) -> None:
    """Place one visit of the older part and write its rows; a car still parked at `cut` leaves in the domain part."""
    rid = uuid.uuid5(SEED_NS, f"{seed}:r:{plates.n + 1}")
    plate, p_hash = plates.next()
    if v.channel == "reservation":
        assert v.starts_at is not None and v.ends_at is not None and v.booked_at is not None
        tally.reservations += 1
        occ_start = _floor15(min(v.arrive, v.starts_at))
        if v.outcome == "cancelled":
            occ_end = occ_start  # frees its slots when cancelled
        elif v.outcome == "no_show":
            occ_end = _ceil15(v.starts_at + timedelta(minutes=30))
        else:
            occ_end = _ceil15(max(v.depart, v.ends_at))
        idx = _place(lot, v.spot_type, occ_start, occ_end)
        if idx is None:
            tally.sold_out += 1
            return
        period = asyncpg.Range(_floor15(v.starts_at), _ceil15(v.ends_at), lower_inc=True, upper_inc=False)
        base = (lot.id, rid, "reservation", lot.spot_ids[idx], v.spot_type, plate, p_hash, v.starts_at, v.ends_at,
                period)
        if v.outcome in ("cancelled", "no_show"):
            tally.cancellations += v.outcome == "cancelled"
            tally.no_shows += v.outcome == "no_show"
            cancelled = v.booked_at + (v.starts_at - v.booked_at) / 2 if v.outcome == "cancelled" else None
            bulk.reservations.append((*base, v.outcome, v.booked_at, v.booked_at, None, None, cancelled))
            return
        tally.overstays += v.outcome == "overstay"
        kind = "reservation"
    else:
        tally.walk_ins += 1
        occ_start, occ_end = _floor15(v.arrive), _ceil15(v.depart)
        idx = _place(lot, v.spot_type, occ_start, occ_end)
        if idx is None:
            tally.turned_away += 1
            return
        period = asyncpg.Range(occ_start, occ_end, lower_inc=True, upper_inc=False)
        base = (lot.id, rid, "walk_in", lot.spot_ids[idx], v.spot_type, plate, p_hash, v.arrive, occ_end, period)
        kind = "walk_in"
    tally.visits += 1
    sid = uuid.uuid5(SEED_NS, f"{seed}:s:{plates.n}")
    done = v.depart <= cut
    bulk.reservations.append((*base, "completed" if done else "active", v.booked_at or v.arrive,
                              v.booked_at if kind == "reservation" else None, v.arrive,
                              v.depart if done else None, None))
    bulk.sessions.append((lot.id, sid, kind, rid, lot.spot_ids[idx], plate, p_hash, "completed" if done else "active",
                          v.arrive, v.depart if done else None, lot.entry, lot.exit if done else None,
                          _fee(v.arrive, v.depart) if done else None))
    if not done:
        actions.append((v.depart, 3, "exit", {"lot": lot, "plate": plate, "label": lot.labels[idx]}))


async def _write_bulk(ctx: AppContext, bulk: _Bulk) -> None:
    async with ctx.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        pg = raw.driver_connection
        assert pg is not None
        async with pg.transaction():
            await pg.execute("SET LOCAL statement_timeout = 0")
            await pg.copy_records_to_table(
                "reservations", records=[(*r[:10], r[10], r[11], r[11], r[12], r[13], r[14], r[15])
                                         for r in bulk.reservations],
                columns=["lot_id", "id", "kind", "spot_id", "vehicle_type", "plate", "plate_hash", "starts_at",
                         "ends_at", "period", "status", "created_at", "updated_at", "confirmed_at", "entered_at",
                         "exited_at", "cancelled_at"], timeout=1800)
            await pg.copy_records_to_table(
                "parking_sessions", records=[(*s, s[8]) for s in bulk.sessions],
                columns=["lot_id", "id", "kind", "reservation_id", "spot_id", "plate", "plate_hash", "status",
                         "entered_at", "exited_at", "entry_gate_id", "exit_gate_id", "fee_amount", "created_at"],
                timeout=1800)


class _Driver:
    """Runs the recent part's actions through the domain on a ManualClock."""

    def __init__(self, ctx: AppContext, clock: ManualClock, tally: Tally, seed: int) -> None:
        self.ctx, self.clock, self.tally, self.seed = ctx, clock, tally, seed
        self.deps = booking_deps(ctx)
        self.gate_deps = gates.gate_deps(ctx)
        self.sequence = 0
        self.booked: dict[int, uuid.UUID] = {}

    def _event(self, **kw: Any) -> gates.GateEvent:
        self.sequence += 1
        return gates.GateEvent(event_id=f"sim-{self.seed}-{self.sequence}", sequence=self.sequence,
                               occurred_at=self.clock.now(), plate_confidence=0.99, **kw)

    async def _sensor(self, lot: _Lot, label: str, state: str) -> None:
        if not lot.sensors:
            return
        self.sequence += 1
        event = {"event_id": f"sim-{self.seed}-sensor-{self.sequence}", "sensor_id": label, "state": state,
                 "confidence": 0.97, "occurred_at": self.clock.now().isoformat()}
        result = await ingest_sensor_events(pg=await self.ctx.pg(), counters=counters_for(self.ctx), lot_id=lot.id,
                                            events=[event], now=self.clock.now())
        self.tally.sensor_events += result.accepted

    async def run(self, kind: str, p: dict[str, Any]) -> None:
        now = self.clock.now()
        lot: _Lot = p["lot"]
        self.tally.domain_calls += 1
        if kind == "book":
            v: Visit = p["visit"]
            try:
                rid = await holds.hold(deps=self.deps, user_id=None, lot_id=lot.id, vehicle_type=v.spot_type,
                                       starts_at=v.starts_at, ends_at=v.ends_at, plate=p["plate"], now=now)  # type: ignore[arg-type]
                await transitions.confirm(deps=self.deps, reservation_id=rid, user_id=None, payment_token=PAYMENT_METHOD,
                                          now=now)
            except Conflict:
                self.tally.sold_out += 1
                return
            self.booked[p["key"]] = rid
        elif kind == "cancel":
            booked = self.booked.get(p["key"])
            if booked is not None:
                await transitions.cancel(deps=self.deps, reservation_id=booked, user_id=None, now=now)
                self.tally.cancellations += 1
        elif kind == "enter":
            v = p["visit"]
            if v.channel == "reservation" and p["key"] not in self.booked:
                return  # its booking was sold out
            out = await gates.decide(deps=self.gate_deps, lot_id=lot.id, device_id=None, gate_id=lot.entry,
                                     event=self._event(plate=p["plate"], vehicle_type=v.spot_type), now=now)
            if out.decision.decision != gates.OPEN:
                self.tally.turned_away += 1
                return
            self.tally.visits += 1
            label = (out.decision.spot or {}).get("label")
            if label:
                await self._sensor(lot, label, "occupied")
            if v.depart <= p["end"]:
                p["schedule"]((v.depart, 3, "exit", {"lot": lot, "plate": p["plate"], "label": label}))
        elif kind == "exit":
            await gates.decide(deps=self.gate_deps, lot_id=lot.id, device_id=None, gate_id=lot.exit,
                               event=self._event(plate=p["plate"], payment_token=PAYMENT_METHOD), now=now)
            if p.get("label"):
                await self._sensor(lot, p["label"], "vacant")

    async def sweep(self) -> None:
        now = self.clock.now()
        self.tally.no_shows += await sweepers.mark_no_shows(deps=self.deps, now=now)
        await sweepers.expire_holds(deps=self.deps, now=now)
        await extend_walk_ins(deps=self.deps, now=now)
        await sweepers.release_early_departures(deps=self.deps, now=now)


async def simulate(ctx: AppContext, *, lots: int, days: int, seed: int, end: datetime,
                   domain_hours: float = DEFAULT_DOMAIN_HOURS,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Seed (if needed) and simulate `lots` lots over the `days` days before `end`; the summary as JSON."""
    started = time.perf_counter()
    say = progress or (lambda _: None)
    end = _floor15(end)
    start = end - timedelta(days=days)
    cut = max(start, end - timedelta(hours=domain_hours))
    plans = plan_city(lots=lots, seed=seed)
    async with ctx.engine.connect() as conn:
        have = set((await conn.execute(text("SELECT id FROM lots WHERE id = ANY(:ids)"),
                                       {"ids": [p.id for p in plans]})).scalars())
        simulated = await conn.scalar(text("SELECT count(*) FROM parking_sessions WHERE lot_id = ANY(:ids)"),
                                      {"ids": [p.id for p in plans]})
    centre = {"lat": round(sum(p.lat for p in plans) / len(plans), 6),
              "lng": round(sum(p.lng for p in plans) / len(plans), 6)}
    summary: dict[str, Any] = {"lots": lots, "days": days, "seed": seed, "from": start.isoformat(),
                               "to": end.isoformat(), "center": centre, "lot_ids": [str(p.id) for p in plans[:5]]}
    if simulated:
        return {**summary, "skipped": True, "reason": "these lots already have sessions (simulated before)"}
    missing = [p for p in plans if p.id not in have]
    if missing:  # `parkgrid seed demo` with the same seed may have planned some of them already
        say(f"seeding {len(missing)} lots")
        await seed_city(ctx.engine, missing)
    lot_map = await _lots(ctx, plans, seed)
    first_day = (start - timedelta(days=1)).astimezone(UTC)
    visits, profiles, events = city_visits(_demand(plans, lot_map), seed=seed, first_day=first_day, days=days + 3,
                                           tz=CITY_TZ, venue=(centre["lat"], centre["lng"]))
    tally, bulk = Tally(), _Bulk()
    actions: list[_Action] = []
    plates = _Plates(seed, ctx.settings.secret_bytes)
    order = 0
    for v in visits:
        lot = lot_map[v.lot_index]
        if v.arrive < start or (v.booked_at or v.arrive) >= end:
            continue
        if v.arrive < cut and (v.channel == "walk_in" or (v.booked_at or v.arrive) < cut):
            _bulk_visit(v, lot, bulk, plates, cut, tally, actions, seed)
            continue
        if v.arrive < cut:
            continue  # booked after the cut for a time before it: cannot happen (bookings precede arrivals)
        order += 1
        plate, _ = plates.next()
        p = {"lot": lot, "visit": v, "plate": plate, "key": order, "end": end}
        if v.channel == "reservation":
            assert v.booked_at is not None and v.starts_at is not None
            tally.reservations += 1
            actions.append((max(v.booked_at, cut), 1, "book", p))
            if v.outcome == "cancelled":
                actions.append((v.booked_at + (v.starts_at - v.booked_at) / 2, 2, "cancel", p))
                continue
            if v.outcome == "no_show":
                continue
            tally.overstays += v.outcome == "overstay"
        else:
            tally.walk_ins += 1
        if v.arrive < end:
            actions.append((v.arrive, 4, "enter", p))
    say(f"writing {len(bulk.reservations)} reservations and {len(bulk.sessions)} sessions before {cut.isoformat()}")
    await _write_bulk(ctx, bulk)
    bulk_seconds = time.perf_counter() - started

    # the recent part: through the domain, on a clock moved from the cut to the end
    clock = ManualClock(cut)
    sim = build_context(ctx.settings, clock=clock)
    domain_started = time.perf_counter()
    try:
        await rc.reconcile(engine=sim.engine, slots=slot_store(sim), now=cut, lot_ids=[p.id for p in plans])
        driver = _Driver(sim, clock, tally, seed)
        queue: list[tuple[datetime, int, int, str, dict[str, Any]]] = []
        n = 0

        def schedule(action: _Action) -> None:
            nonlocal n
            n += 1
            heapq.heappush(queue, (action[0], action[1], n, action[2], action[3]))

        for action in actions:
            schedule(action)
        next_sweep = cut + SWEEP_EVERY
        say(f"driving {len(queue)} actions through the domain from {cut.isoformat()} to {end.isoformat()}")
        while queue and queue[0][0] < end:
            when, _, _, kind, payload = heapq.heappop(queue)
            while next_sweep <= when:
                clock.set(next_sweep)
                await driver.sweep()
                next_sweep += SWEEP_EVERY
            clock.set(max(when, clock.now()))
            payload.setdefault("schedule", schedule)
            try:
                await driver.run(kind, payload)
            except DomainError as exc:
                tally.errors[f"{kind}:{type(exc).__name__}"] += 1
        while next_sweep <= end:
            clock.set(next_sweep)
            await driver.sweep()
            next_sweep += SWEEP_EVERY
    finally:
        await sim.aclose()
    domain_seconds = time.perf_counter() - domain_started
    say("computing the occupancy history")
    hist = await history.backfill(engine=ctx.engine, t0=start, t1=end, now=end)
    return {**summary, "skipped": False, "profiles": dict(Counter(profiles.values())),
            "event_days": sorted((first_day + timedelta(days=d)).date().isoformat() for d in events),
            "visits": tally.visits, "reservations": tally.reservations, "walk_ins": tally.walk_ins,
            "cancellations": tally.cancellations, "no_shows": tally.no_shows, "overstays": tally.overstays,
            "turned_away": tally.turned_away, "sold_out": tally.sold_out, "sensor_events": tally.sensor_events,
            "bulk": {"until": cut.isoformat(), "reservations": len(bulk.reservations), "sessions": len(bulk.sessions),
                     "seconds": round(bulk_seconds, 2)},
            "domain": {"from": cut.isoformat(), "to": end.isoformat(), "calls": tally.domain_calls,
                       "errors": dict(tally.errors), "seconds": round(domain_seconds, 2)},
            "history": hist.as_json(), "seconds": round(time.perf_counter() - started, 2)}

