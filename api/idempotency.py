"""Idempotency-Key for writes that create or move money or spots (docs/api.md conventions; docs/adr/0015).

The same key and body return the first response; the same key with another body is 422. A crash at any point
leaves a key either unused or answered, or (for a request between its recovery points) locked for a short
time only: the same client's retry after `idempotency_lock_timeout_seconds` takes it over.

Two protocols, one table (idempotency_keys, recovery points 'started' | 'finished' | 'hold_written'):

* run_keyed_hold: the hold's own statement writes the key's row with the hold (booking.queries.HOLD_WRITE), at
  'hold_written', holding the answered row. No claim, no second write: a new key costs no round trip, and the
  batched write (booking.holdwriter) carries keyed holds as it carries the others. A retry fails somewhere (the
  plate already holds the window, the lot is now full, or at the latest the key's primary key refuses the
  write, which rolls the whole statement back) and then finds the key and renders the first answer again.
* run_idempotent (confirm, cancel, window change, whose effects commit in their own transactions and call the
  payment provider): the key is claimed at 'started' with `locked_at`, the effect runs, and the answer is
  stored at 'finished'. A request that dies in between leaves a lock that times out; a failed request
  releases its key at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import orjson
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from booking.holds import KeyRecord
from core.context import AppContext
from core.errors import KeyInProgress, ValidationFailed

KEY_LOC = ("header", "Idempotency-Key")

_CLAIM = text(
    "INSERT INTO idempotency_keys AS k (scope, key, request_hash, recovery_point, locked_at, created_at)"
    " VALUES (:scope, :key, :hash, 'started', :now, :now)"
    " ON CONFLICT (scope, key) DO UPDATE SET locked_at = EXCLUDED.locked_at"
    " WHERE k.recovery_point = 'started' AND k.request_hash = EXCLUDED.request_hash AND k.locked_at <= :stale"
    " RETURNING k.locked_at, k.xmax = 0 AS inserted")
_GET = text("SELECT request_hash, status_code, response, recovery_point, locked_at FROM idempotency_keys"
            " WHERE scope = :scope AND key = :key")
_STORE = text("UPDATE idempotency_keys SET recovery_point = 'finished', status_code = :status,"
              " response = CAST(:response AS jsonb), locked_at = NULL"
              " WHERE scope = :scope AND key = :key AND recovery_point = 'started' AND locked_at = :locked")
_FORGET = text("DELETE FROM idempotency_keys WHERE scope = :scope AND key = :key AND recovery_point = 'started'"
               " AND locked_at = :locked")

Handler = Callable[[], Awaitable[tuple[int, dict[str, Any]]]]
#: a keyed hold: given the key's record (None without a key), hold and answer (status, payload)
HoldHandler = Callable[[KeyRecord | None], Awaitable[tuple[int, dict[str, Any]]]]
#: renders a 'hold_written' key's stored response (the hold's row and client secret) as its first answer
Render = Callable[[dict[str, Any]], dict[str, Any]]


def _dumps(payload: Any) -> bytes:
    # orjson writes datetimes (RFC 3339), UUIDs and nested dicts directly: the hot write paths answer
    # through here, and jsonable_encoder's recursive walk cost more than the SQL of a hold.
    return orjson.dumps(payload, default=jsonable_encoder)


def _json(payload: Any, status: int) -> Response:
    return Response(_dumps(payload), status_code=status, media_type="application/json")


def request_hash(body: Any) -> str:
    """The digest a key's body is compared by (a callable body is called first)."""
    body = body() if callable(body) else body
    try:  # a model's JSON-mode dump (the routes' bodies) is written as it is
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    except TypeError:  # anything else as FastAPI encodes it (the same text for a plain body: the same digest)
        text = json.dumps(jsonable_encoder(body), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _check_key(key: str) -> None:
    if not 1 <= len(key) <= 200:
        raise ValidationFailed("Idempotency-Key must be 1-200 characters", loc=KEY_LOC)


def _lock_timeout(ctx: AppContext) -> timedelta:
    return timedelta(seconds=ctx.settings.idempotency_lock_timeout_seconds)


def _in_progress(ctx: AppContext, locked_at: datetime, now: datetime) -> KeyInProgress:
    left = (locked_at + _lock_timeout(ctx) - now).total_seconds()
    return KeyInProgress("a request with this Idempotency-Key is still in progress; retry after its lock times out",
                         retry_after=max(1, int(left + 0.999)))


async def _read(ctx: AppContext, scope: str, key: str) -> Any:
    async with ctx.engine.connect() as conn:
        return (await conn.execute(_GET, {"scope": scope, "key": key})).first()


def _answer(row: Any, render: Render | None) -> Response:
    """The first answer of a key that has one ('finished' or 'hold_written'), marked as replayed."""
    headers = {"Idempotent-Replayed": "true"}
    if row.recovery_point == "hold_written":
        if render is None:
            raise RuntimeError("a hold's key replayed by a route that cannot render it")
        return Response(_dumps(render(row.response)), status_code=row.status_code, media_type="application/json",
                        headers=headers)
    return JSONResponse(row.response, status_code=row.status_code, headers=headers)


async def run_keyed_hold(ctx: AppContext, *, scope: str, key: str | None, body: Any, handler: HoldHandler,
                         render: Render) -> Response:
    """A hold whose key is recorded by the hold's own write; a retry of an answered key gets its first answer.
    `body` may be a callable that returns it: it is then only built when there is a key."""
    if key is None:
        status, payload = await handler(None)
        return _json(payload, status)
    _check_key(key)
    digest = request_hash(body)
    for _ in range(2):
        try:
            status, payload = await handler(KeyRecord(scope=scope, request_hash=digest))
        except Exception as exc:
            try:
                row = await _read(ctx, scope, key)
            except Exception:
                raise exc from None  # the database is away: the hold's own error says more
            if row is None:
                raise  # the key is unused: this request failed as it would have without one
            if row.request_hash != digest:
                raise ValidationFailed("this Idempotency-Key was used with a different request body",
                                       loc=KEY_LOC) from None
            if row.recovery_point == "started":  # claimed by the previous protocol and never answered
                now = ctx.clock.now()
                if row.locked_at > now - _lock_timeout(ctx):
                    raise _in_progress(ctx, row.locked_at, now) from None
                async with ctx.engine.begin() as conn:
                    await conn.execute(_FORGET, {"scope": scope, "key": key, "locked": row.locked_at})
                continue
            return _answer(row, render)
        return _json(payload, status)
    raise KeyInProgress("this Idempotency-Key is being taken over by another request", retry_after=1)


async def run_idempotent(ctx: AppContext, *, scope: str, key: str | None, body: Any, handler: Handler,
                         recover: Handler | None = None) -> Response:
    """Run `handler` once per (scope, key) through recovery points; replay its stored response for retries.
    `body` may be a callable that returns it: it is then only built when there is a key. A key taken over
    from a request that died runs `recover` (default: `handler`), which may find the effect already made."""
    if key is None:
        status, payload = await handler()
        return _json(payload, status)
    _check_key(key)
    digest = request_hash(body)
    now = ctx.clock.now()
    async with ctx.engine.begin() as conn:
        claim = (await conn.execute(_CLAIM, {"scope": scope, "key": key, "hash": digest, "now": now,
                                             "stale": now - _lock_timeout(ctx)})).first()
        row = None if claim is not None else (await conn.execute(_GET, {"scope": scope, "key": key})).one()
    if row is not None:
        if row.request_hash != digest:
            raise ValidationFailed("this Idempotency-Key was used with a different request body", loc=KEY_LOC)
        if row.recovery_point == "started":
            raise _in_progress(ctx, row.locked_at, now)
        return _answer(row, None)
    assert claim is not None
    ids = {"scope": scope, "key": key, "locked": claim.locked_at}
    try:
        status, payload = await (handler() if claim.inserted or recover is None else recover())
    except Exception:
        async with ctx.engine.begin() as conn:  # a failed attempt may be retried with the same key at once
            await conn.execute(_FORGET, ids)
        raise
    raw = _dumps(payload)
    async with ctx.engine.begin() as conn:
        await conn.execute(_STORE, {**ids, "status": status, "response": raw.decode()})
    return Response(raw, status_code=status, media_type="application/json")
