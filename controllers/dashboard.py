"""The operators' dashboard of one lot: occupancy now, gates, alerts, today's revenue, today's occupancy curve.

Occupancy is what the display boards show (controllers.displays: sensors where a group has them, else the booking
view), summed by level and by type; unknown is not a number (a stale group makes its totals null, never a guess).
Alerts are computed from the state each time (nothing to keep in sync); an acknowledgement is stored per
(alert id, the alert's `since`), so a condition that clears and comes back is a new, unacknowledged alert.
Revenue is the money that moved in the lot's local day (payments stamped when an amount first left 0).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from controllers import queries_dashboard as q
from controllers.chargers import charger_alerts
from controllers.displays import lot_displays
from controllers.gates import gate_deps
from controllers.live import REDIS_ERRORS, live_publisher
from controllers.occupancy import counters_for
from controllers.sessions import violations
from core.errors import NotFound
from core.keys import Keys
from core.money import Money

#: a lot at or above this share of its capacity is "nearly full" (critical when full)
NEARLY_FULL = 0.9
#: how far back one-off alerts (unpaid exits, failed captures, Redis repairs) are shown
RECENT = timedelta(hours=24)
#: a reservation's capture is "failed" when it still has not happened this long after the reservation ended
CAPTURE_GRACE = timedelta(minutes=5)
STEP_MINUTES = 15
MAX_ALERTS_PER_KIND = 50
SEVERITIES = ("info", "warning", "critical")
#: kinds of alert this build raises; faulted EV chargers join them when the chargers' issue lands
ALERT_KINDS = ("sensors_stale", "gate_silent", "lot_nearly_full", "overstay", "unpaid_exit", "capture_failed",
               "redis_repair")

#: what reads a lot's forecast, once the forecasts issue lands: (lot_id, from, to, now) -> forecast JSON or None.
#: Put in AppContext.extras["forecast_reader"]; until then the dashboard says why there is no forecast.
ForecastReader = Callable[[uuid.UUID, datetime, datetime, datetime], Awaitable[dict[str, Any] | None]]
NO_FORECAST_READER = "no forecast reader in this build: forecasts (issue 17) are not merged yet"


@dataclass(frozen=True)
class Alert:
    id: str  # stable for one condition of one object: "<kind>" or "<kind>:<object id>"
    kind: str
    severity: str
    since: datetime
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    acknowledged: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "severity": self.severity, "since": self.since,
                "message": self.message, "details": self.details, "acknowledged": self.acknowledged}


def _money(amount: int, currency: str) -> dict[str, Any]:
    return Money(int(amount), currency.strip().lower()).as_json()


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


async def _lot(conn: AsyncConnection, lot_id: uuid.UUID) -> Any:
    lot = (await conn.execute(q.LOT, {"lot_id": lot_id})).first()
    if lot is None:
        raise NotFound(f"lot {lot_id} not found")
    return lot


# -- occupancy --------------------------------------------------------------------------------------------------

def _sum_or_none(values: list[int | None]) -> int | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def _source(sources: set[str]) -> str:
    return next(iter(sources)) if len(sources) == 1 else ("mixed" if sources else "none")


def summarise_occupancy(displays: dict[str, Any]) -> dict[str, Any]:
    """Totals, by level and by type, from what the display boards show (lot_displays)."""
    groups = [(level, g) for level in displays["levels"] for g in level["types"]]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for _, g in groups:
        by_type.setdefault(g["spot_type"], []).append(g)

    def total(items: list[dict[str, Any]]) -> dict[str, Any]:
        capacity = sum(int(g["capacity"]) for g in items)
        free = _sum_or_none([g["free"] for g in items])
        ages = [g["freshness"]["as_of"] for g in items if g["freshness"]["as_of"] is not None]
        return {"capacity": capacity, "free": free,
                "occupied": capacity - free if free is not None else None,
                "unknown": sum(int(g["unknown"]) for g in items),
                "occupancy": round((capacity - free) / capacity, 4) if free is not None and capacity else None,
                "stale": any(g["stale"] for g in items),
                "freshness": {"source": _source({g["freshness"]["source"] for g in items}),
                              "as_of": min(ages) if ages else None}}

    return {
        "total": total([g for _, g in groups]),
        "by_level": [{"level_id": str(level["level_id"]), "name": level["name"],
                      **total(level["types"]), "types": level["types"]} for level in displays["levels"]],
        "by_type": [{"spot_type": t, **total(items)} for t, items in sorted(by_type.items())],
    }


async def lot_occupancy(ctx: Any, *, lot_id: uuid.UUID, now: datetime) -> dict[str, Any]:
    """The lot's occupancy now (display boards' numbers, with source and freshness)."""
    displays = await lot_displays(engine=ctx.engine, counters=counters_for(ctx), lot_id=lot_id, now=now)
    return summarise_occupancy(displays)


# -- gates -------------------------------------------------------------------------------------------------------

def _decision(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    data = orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw
    return {"decision": data.get("decision"), "message": data.get("message")}


async def gates_status(conn: AsyncConnection, *, lot_id: uuid.UUID, now: datetime,
                       silent_after: timedelta) -> list[dict[str, Any]]:
    """Each gate with its newest event, its newest decision, and whether it was heard from within `silent_after`."""
    out = []
    for g in await conn.execute(q.GATES, {"lot_id": lot_id}):
        decision = _decision(g.decision)
        out.append({
            "id": str(g.id), "name": g.name, "direction": g.direction,
            "online": g.received_at is not None and now - g.received_at <= silent_after,
            "last_event": None if g.event_id is None else {
                "event_id": g.event_id, "occurred_at": g.occurred_at, "received_at": g.received_at,
                "type": g.cds_event_type, "source": g.source},
            "last_decision": None if decision is None else {**decision, "at": g.decided_at},
        })
    return out


# -- alerts ------------------------------------------------------------------------------------------------------

async def _full_since(ctx: Any, lot_id: uuid.UUID, *, full: bool, now: datetime) -> datetime:
    """Since when the lot has been nearly full (kept in Redis; `now` when Redis is away)."""
    key = Keys(ctx.settings.redis_prefix).live_state(str(lot_id))
    try:
        if not full:
            await ctx.redis.hdel(key, "full_since")
            return now
        await ctx.redis.hsetnx(key, "full_since", now.isoformat())
        raw = await ctx.redis.hget(key, "full_since")
        return datetime.fromisoformat(raw.decode()) if raw else now
    except REDIS_ERRORS:
        return now


async def compute_alerts(ctx: Any, conn: AsyncConnection, *, lot: Any, occupancy: dict[str, Any],
                         gates: list[dict[str, Any]], now: datetime) -> list[Alert]:
    """Every alert the lot has now, acknowledged ones marked, most severe and oldest first."""
    lot_id, out = lot.id, []
    params = {"lot_id": lot_id, "now": now, "since": now - RECENT, "limit": MAX_ALERTS_PER_KIND}

    h = (await conn.execute(q.SENSOR_HEALTH, params)).one()
    if h.stale or h.silent:
        parts = [f"{h.stale} stale" if h.stale else "", f"{h.silent} never reported" if h.silent else ""]
        since = h.stale_since if h.stale else lot.created_at
        out.append(Alert("sensors_stale", "sensors_stale", "critical" if h.stale + h.silent >= h.total else "warning",
                         since, f"Bay sensors without news: {', '.join(p for p in parts if p)} (of {h.total})",
                         {"stale": int(h.stale), "silent": int(h.silent), "total": int(h.total)}))

    silent_after = timedelta(minutes=ctx.settings.dashboard_gate_silent_minutes)
    for g in gates:
        if not g["online"]:
            heard = g["last_event"]["received_at"] if g["last_event"] else None
            since = heard + silent_after if heard else lot.created_at
            what = f"nothing since {heard:%Y-%m-%d %H:%M} UTC" if heard else "never heard from"
            out.append(Alert(f"gate_silent:{g['id']}", "gate_silent", "warning", since,
                             f"Gate {g['name']} ({g['direction']}) is silent: {what}", {"gate_id": g["id"]}))

    share = occupancy["total"]["occupancy"]
    full = share is not None and share >= NEARLY_FULL
    since = await _full_since(ctx, lot_id, full=full, now=now)
    if full:
        t = occupancy["total"]
        out.append(Alert("lot_nearly_full", "lot_nearly_full", "critical" if t["free"] == 0 else "warning", since,
                         f"{share:.0%} full: {t['free']} of {t['capacity']} free",
                         {"free": t["free"], "capacity": t["capacity"], "occupancy": share}))

    for v in await violations(deps=gate_deps(ctx), conn=conn, lot_id=lot_id, now=now, limit=MAX_ALERTS_PER_KIND):
        if v.kind not in ("overstay", "overstay_risk") or v.session_id is None or v.ends_at is None:
            continue
        where = f"spot {v.spot['label']}" if v.spot else "no spot"
        text = (f"Overstay at {where}: {v.minutes_over} min past the end" if v.kind == "overstay"
                else f"Walk-in at {where} cannot be extended: the spot is booked next")
        out.append(Alert(f"overstay:{v.session_id}", "overstay", "warning", v.ends_at, text,
                         {"session_id": str(v.session_id), "spot": v.spot, "minutes_over": v.minutes_over,
                          "type": v.kind, "fee_so_far": v.fee_so_far.as_json() if v.fee_so_far else None}))

    for d in await conn.execute(q.RECENT_OPEN_DEBTS, params):
        where = f" at spot {d.spot_label}" if d.spot_label else ""
        out.append(Alert(f"unpaid_exit:{d.id}", "unpaid_exit", "warning", d.created_at,
                         f"Unpaid exit{where}: {int(d.amount) / 100:.2f} {d.currency.strip().upper()} ({d.reason})",
                         {"debt_id": str(d.id), "amount": _money(d.amount, d.currency), "reason": d.reason}))

    for p in await conn.execute(q.FAILED_CAPTURES, {**params, "grace": CAPTURE_GRACE}):
        out.append(Alert(f"capture_failed:{p.id}", "capture_failed", "critical", p.updated_at + CAPTURE_GRACE,
                         f"Payment not captured: {int(p.amount_authorised) / 100:.2f}"
                         f" {p.currency.strip().upper()} of a {p.reservation_status.replace('_', '-')} reservation",
                         {"payment_id": str(p.id), "reservation_id": str(p.reservation_id),
                          "amount": _money(p.amount_authorised, p.currency), "status": p.status}))

    for r in await conn.execute(q.RECENT_REPAIRS, params):
        out.append(Alert(f"redis_repair:{r.id}", "redis_repair", "info", r.repaired_at,
                         f"The reconciler repaired this lot's Redis slot state ({r.bits_set} slots set,"
                         f" {r.bits_cleared} cleared)", {"bits_set": int(r.bits_set),
                                                         "bits_cleared": int(r.bits_cleared)}))

    for c in await charger_alerts(conn=conn, lot_id=lot_id, now=now):
        what = "faulted" if c.kind == "charger_faulted" else "offline"
        out.append(Alert(f"{c.kind}:{c.charge_point_id}:{c.connector_id}", c.kind,
                         "critical" if c.kind == "charger_faulted" else "warning", c.since or lot.created_at,
                         f"EV charger {c.charge_point_id} connector {c.connector_id} {what}: {c.detail}",
                         {"charge_point_id": c.charge_point_id, "connector_id": c.connector_id}))

    acks = {(a.alert_id, a.since): {"by": a.acknowledged_by_email, "at": a.acknowledged_at}
            for a in await conn.execute(q.ACKS, {"lot_id": lot_id, "since": now - timedelta(days=30)})}
    out = [Alert(a.id, a.kind, a.severity, a.since, a.message, a.details, acks.get((a.id, a.since))) for a in out]
    out.sort(key=lambda a: (-SEVERITIES.index(a.severity), a.since, a.id))
    return out


# -- revenue and today's curve -----------------------------------------------------------------------------------

def local_day(now: datetime, tz: str) -> tuple[datetime, datetime]:
    """[start, end) of the lot's local calendar day containing `now`, in UTC (23 or 25 hours on DST days)."""
    zone = ZoneInfo(tz)
    day = now.astimezone(zone).date()
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


async def revenue_today(conn: AsyncConnection, *, lot: Any, now: datetime) -> dict[str, Any]:
    """Captured, authorised and refunded in the lot's local day, and the plate debts still open."""
    start, end = local_day(now, lot.timezone)
    params = {"lot_id": lot.id, "from": start, "to": end}
    cur = lot.currency.strip().lower()
    moved = {r.currency.strip().lower(): r for r in await conn.execute(q.REVENUE, params)}
    debts = {r.currency.strip().lower(): r for r in await conn.execute(q.DEBTS, params)}
    m, d = moved.get(cur), debts.get(cur)
    captured, refunded = (int(m.captured), int(m.refunded)) if m else (0, 0)
    return {
        "day": start.astimezone(ZoneInfo(lot.timezone)).date().isoformat(), "timezone": lot.timezone,
        "from": start, "to": end, "currency": cur,
        "captured": _money(captured, cur), "authorised": _money(int(m.authorised) if m else 0, cur),
        "refunded": _money(refunded, cur), "net": _money(captured - refunded, cur),
        "debts_outstanding": _money(int(d.outstanding) if d else 0, cur),
        "debts_today": _money(int(d.today) if d else 0, cur), "open_debts": int(d.n) if d else 0,
        "other_currencies": sorted((set(moved) | set(debts)) - {cur}),
    }


async def occupancy_today(conn: AsyncConnection, *, lot: Any, now: datetime) -> dict[str, Any]:
    """Cars inside (gate sessions) every STEP_MINUTES of the lot's local day so far."""
    start, _ = local_day(now, lot.timezone)
    rows = await conn.execute(q.OCCUPANCY_SERIES, {"lot_id": lot.id, "from": start, "now": now,
                                                   "step": STEP_MINUTES})
    cap = int(lot.capacity) or 1
    return {"step_minutes": STEP_MINUTES, "capacity": int(lot.capacity), "source": "gate_sessions",
            "points": [{"at": r.at, "inside": int(r.inside), "occupancy": round(min(int(r.inside) / cap, 1), 4)}
                       for r in rows]}


async def forecast_slot(ctx: Any, *, lot_id: uuid.UUID, now: datetime) -> tuple[dict[str, Any] | None, str | None]:
    """The next hours' forecast from the forecast reader when one is installed, else (None, why not)."""
    reader = ctx.extras.get("forecast_reader")
    if reader is None:
        return None, NO_FORECAST_READER
    found = await reader(lot_id, now, now + timedelta(hours=6), now)
    return (found, None) if found is not None else (None, "no trained forecast for this lot yet")


# -- the dashboard, acknowledgements, the live refresh -----------------------------------------------------------

async def build_dashboard(ctx: Any, *, lot_id: uuid.UUID, now: datetime) -> dict[str, Any]:
    """Everything the operators' page shows for one lot."""
    occupancy = await lot_occupancy(ctx, lot_id=lot_id, now=now)
    silent_after = timedelta(minutes=ctx.settings.dashboard_gate_silent_minutes)
    async with ctx.engine.connect() as conn:
        lot = await _lot(conn, lot_id)
        gates = await gates_status(conn, lot_id=lot_id, now=now, silent_after=silent_after)
        alerts = await compute_alerts(ctx, conn, lot=lot, occupancy=occupancy, gates=gates, now=now)
        revenue = await revenue_today(conn, lot=lot, now=now)
        curve = await occupancy_today(conn, lot=lot, now=now)
    forecast, why_not = await forecast_slot(ctx, lot_id=lot_id, now=now)
    publisher = live_publisher(ctx)
    return {
        "lot": {"id": str(lot.id), "name": lot.name, "timezone": lot.timezone, "capacity": int(lot.capacity),
                "status": lot.status},
        "as_of": now, "occupancy": occupancy, "gates": gates, "alerts": [a.as_json() for a in alerts],
        "revenue_today": revenue, "occupancy_today": curve,
        "forecast": forecast, "forecast_status": {"available": forecast is not None, "reason": why_not},
        "live": {"url": f"/api/v1/lots/{lot_id}/live", "last_event_id": await publisher.last_id(lot_id)},
    }


async def acknowledge(ctx: Any, *, lot_id: uuid.UUID, alert_id: str, user_id: uuid.UUID,
                      now: datetime) -> dict[str, Any]:
    """Record that `user_id` acknowledged the lot's current alert `alert_id` (404 when the lot has no such
    alert now); acknowledging twice keeps the first who and when."""
    occupancy = await lot_occupancy(ctx, lot_id=lot_id, now=now)
    silent_after = timedelta(minutes=ctx.settings.dashboard_gate_silent_minutes)
    async with ctx.engine.begin() as conn:
        lot = await _lot(conn, lot_id)
        gates = await gates_status(conn, lot_id=lot_id, now=now, silent_after=silent_after)
        alerts = {a.id: a for a in await compute_alerts(ctx, conn, lot=lot, occupancy=occupancy, gates=gates, now=now)}
        alert = alerts.get(alert_id)
        if alert is None:
            raise NotFound(f"lot {lot_id} has no alert {alert_id!r} now")
        await conn.execute(q.INSERT_ACK, {"lot_id": lot_id, "alert_id": alert_id, "since": alert.since,
                                          "user_id": user_id, "now": now})
        acked = {(a.alert_id, a.since): {"by": a.acknowledged_by_email, "at": a.acknowledged_at}
                 for a in await conn.execute(q.ACKS, {"lot_id": lot_id, "since": now - timedelta(days=30)})}
    live_publisher(ctx).changed(lot_id)
    return Alert(alert.id, alert.kind, alert.severity, alert.since, alert.message, alert.details,
                 acked.get((alert.id, alert.since))).as_json()


def _fingerprint(data: Any) -> str:
    return hashlib.blake2b(orjson.dumps(data, default=_iso, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()


async def refresh_lot(ctx: Any, *, lot_id: uuid.UUID) -> None:
    """Append the lot's occupancy and alerts to its live stream when they changed (LivePublisher.changed)."""
    now = ctx.clock.now()
    publisher = live_publisher(ctx)
    occupancy = await lot_occupancy(ctx, lot_id=lot_id, now=now)
    numbers = [(x["free"], x["occupied"], x["unknown"], x["stale"]) for x in [occupancy["total"],
                                                                             *occupancy["by_level"],
                                                                             *occupancy["by_type"]]]
    await publisher.publish_if_changed(lot_id, "occupancy", {"at": now, **occupancy}, _fingerprint(numbers))
    silent_after = timedelta(minutes=ctx.settings.dashboard_gate_silent_minutes)
    async with ctx.engine.connect() as conn:
        lot = await _lot(conn, lot_id)
        gates = await gates_status(conn, lot_id=lot_id, now=now, silent_after=silent_after)
        alerts = await compute_alerts(ctx, conn, lot=lot, occupancy=occupancy, gates=gates, now=now)
    items = [a.as_json() for a in alerts]
    await publisher.publish_if_changed(lot_id, "alerts", {"at": now, "items": items},
                                       _fingerprint([(a.id, a.since, a.acknowledged is not None, a.message)
                                                     for a in alerts]))
