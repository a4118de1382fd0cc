"""Signed partner webhooks (Standard Webhooks) when a lot turns full, nearly full (>= 90 %), closes or reopens.

A tick (Celery beat, `geo.tasks`) reads the city's snapshot (geo.feed_snapshot), derives each lot's alert state and
records it in lot_alert_states with one conditional upsert: a transition is found once however many workers tick at
once, and its deliveries (one per subscribed webhook) are written in the same transaction, so a detected transition
is never lost. Deliveries are claimed with a lease (a crashed sender's claim comes due again), POSTed with the
Standard Webhooks headers `webhook-id` (the delivery id: the same on every retry, for the receiver's replay
protection), `webhook-timestamp` and `webhook-signature` (`v1,<base64 HMAC-SHA256>`; two signatures while a
rotated secret's old value is still honoured), and retried with exponential backoff until delivered or given up.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncConnection
from standardwebhooks import Webhook

from core.errors import NotFound, ValidationFailed
from geo import open_queries as q
from geo.feed_formats import iso
from geo.feed_snapshot import FeedLot

EVENTS = ("lot.full", "lot.nearly_full", "lot.closed", "lot.reopened")
NEARLY_FULL = 0.9  # occupancy share from which a lot is nearly full
MAX_ATTEMPTS = 8
BACKOFF_FIRST = timedelta(seconds=10)
BACKOFF_MAX = timedelta(hours=1)
LEASE = timedelta(seconds=60)
ROTATION_OVERLAP = timedelta(hours=24)


def alert_state(lot: FeedLot) -> str:
    """open | nearly_full | full | closed | unknown, from what the feeds publish."""
    if lot.status == "closed":
        return "closed"
    if lot.available is None or not lot.capacity:
        return "unknown"
    if lot.available == 0:
        return "full"
    if (lot.capacity - lot.available) / lot.capacity >= NEARLY_FULL:
        return "nearly_full"
    return "open"


def event_for(previous: str, state: str) -> str | None:
    """The event a change of alert state raises, if any (unknown counts raise nothing)."""
    if state == "closed":
        return "lot.closed"
    if previous == "closed" and state != "unknown":
        return "lot.reopened"
    if state == "full":
        return "lot.full"
    if state == "nearly_full" and previous == "open":
        return "lot.nearly_full"
    return None


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, *, msg_id: str, timestamp: datetime, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, by the Standard Webhooks reference library."""
    return Webhook(secret).sign(msg_id=msg_id, timestamp=timestamp, data=body)


@dataclass
class TickReport:
    transitions: int = 0
    enqueued: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0


async def record_states(conn: asyncpg.Connection, *, lot_ids: Sequence[uuid.UUID], states: Sequence[str],
                        now: datetime) -> list[tuple[uuid.UUID, str, str]]:
    """Store these lots' alert states (inside the caller's transaction); (lot, previous, state) for each change of
    a lot seen before. Two workers recording the same change at once: one reports it, the other waits on the
    first's row lock, then finds the state already set."""
    locked = await conn.fetch(q.LOCK_ALERT_STATES, list(lot_ids))
    previous = {r["lot_id"]: r["state"] for r in locked}
    written = await conn.fetch(q.UPSERT_ALERT_STATES, list(lot_ids), list(states), now)
    return [(r["lot_id"], previous[r["lot_id"]], r["state"]) for r in written
            if r["lot_id"] in previous and previous[r["lot_id"]] != r["state"]]


async def detect(pg: asyncpg.Pool, *, lots: Sequence[FeedLot], now: datetime) -> tuple[int, int]:
    """Record every lot's alert state; enqueue a delivery per transition and subscribed webhook. (transitions,
    deliveries)."""
    stored = {r["lot_id"]: r["state"] for r in await pg.fetch(q.ALERT_STATES)}
    changed = [(lot.id, state) for lot in lots if stored.get(lot.id) != (state := alert_state(lot))]
    if not changed:
        return 0, 0
    async with pg.acquire() as conn, conn.transaction():
        rows = await record_states(conn, lot_ids=[c[0] for c in changed], states=[c[1] for c in changed], now=now)
        if not rows:
            return 0, 0
        by_id = {lot.id: lot for lot in lots}
        hooks = await conn.fetch(q.ACTIVE_WEBHOOKS)
        ids, hook_ids, events, payloads = [], [], [], []
        transitions = 0
        for lot_id, before, state in rows:
            event = event_for(before, state)
            if event is None:
                continue
            transitions += 1
            lot = by_id[lot_id]
            payload = orjson.dumps({"type": event, "timestamp": iso(now), "data": {
                "lot_id": str(lot.id), "name": lot.name, "state": state, "previous_state": before,
                "status": lot.status, "status_reason": lot.status_reason, "available": lot.available,
                "capacity": lot.capacity, "location": {"lat": lot.lat, "lng": lot.lng}}}).decode()
            for hook in hooks:
                if event in hook["events"]:
                    ids.append(f"msg_{uuid.uuid4().hex}")
                    hook_ids.append(hook["id"])
                    events.append(event)
                    payloads.append(payload)
        if ids:
            await conn.execute(q.INSERT_DELIVERIES, ids, hook_ids, events, payloads, now)
        return transitions, len(ids)


def _backoff(attempts: int) -> timedelta:
    return min(BACKOFF_FIRST * (2 ** max(attempts - 1, 0)), BACKOFF_MAX)


async def deliver_due(pg: asyncpg.Pool, *, http: httpx.AsyncClient, now: datetime, batch: int = 100,
                      max_attempts: int = MAX_ATTEMPTS) -> tuple[int, int, int]:
    """POST the deliveries that are due; (delivered, to retry, given up)."""
    claimed = await pg.fetch(q.CLAIM_DELIVERIES, now, now + LEASE, batch)
    delivered = retried = failed = 0
    for d in claimed:
        body = d["payload"].encode()
        signatures = [sign(d["secret"], msg_id=d["id"], timestamp=now, body=body)]
        if d["previous_secret"] and d["previous_secret_until"] and now < d["previous_secret_until"]:
            signatures.append(sign(d["previous_secret"], msg_id=d["id"], timestamp=now, body=body))
        headers = {"content-type": "application/json", "webhook-id": d["id"],
                   "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": " ".join(signatures)}
        error: str | None
        try:
            res = await http.post(d["url"], content=body, headers=headers)
            error = None if 200 <= res.status_code < 300 else f"HTTP {res.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        if error is None:
            await pg.execute(q.DELIVERED, d["id"], now)
            delivered += 1
            continue
        await pg.execute(q.RETRY_LATER, d["id"], now + _backoff(d["attempts"]), error, max_attempts)
        if d["attempts"] >= max_attempts:
            failed += 1
        else:
            retried += 1
    return delivered, retried, failed


async def tick(pg: asyncpg.Pool, *, lots: Sequence[FeedLot], http: httpx.AsyncClient, now: datetime) -> TickReport:
    """Detect transitions, then send what is due."""
    report = TickReport()
    report.transitions, report.enqueued = await detect(pg, lots=lots, now=now)
    report.delivered, report.retried, report.failed = await deliver_due(pg, http=http, now=now)
    return report


async def subscribe(conn: AsyncConnection, *, partner_id: uuid.UUID, url: str, events: Sequence[str],
                    now: datetime) -> tuple[uuid.UUID, str]:
    """A partner's new webhook; returns (webhook id, secret). The secret is shown once."""
    if not url.startswith(("http://", "https://")) or len(url) > 2000:
        raise ValidationFailed("url must be an http(s) URL", loc=("url",))
    unknown = sorted(set(events) - set(EVENTS))
    if unknown or not events:
        raise ValidationFailed(f"events must be among {list(EVENTS)}", loc=("events",))
    secret = new_secret()
    row = (await conn.execute(q.INSERT_WEBHOOK, {"partner_id": partner_id, "url": url, "secret": secret,
                                                 "events": sorted(set(events)), "now": now})).first()
    if row is None:
        raise NotFound(f"partner {partner_id} not found")
    return row.id, secret


async def rotate_secret(conn: AsyncConnection, *, webhook_id: uuid.UUID, now: datetime,
                        overlap: timedelta = ROTATION_OVERLAP) -> str:
    """A new secret for the webhook; the old one still signs (a second signature) until now + overlap."""
    secret = new_secret()
    row = (await conn.execute(q.ROTATE_WEBHOOK_SECRET, {"webhook_id": webhook_id, "secret": secret,
                                                        "until": now + overlap})).first()
    if row is None:
        raise NotFound(f"webhook {webhook_id} not found")
    return secret


async def list_webhooks(conn: AsyncConnection, *, partner_id: uuid.UUID | None) -> list[dict[str, Any]]:
    rows = await conn.execute(q.LIST_WEBHOOKS, {"partner_id": partner_id})
    return [{"id": str(r.id), "partner_id": str(r.partner_id), "url": r.url, "events": list(r.events),
             "created_at": iso(r.created_at), "disabled": r.disabled_at is not None, "pending": int(r.pending),
             "failed": int(r.failed)} for r in rows]
