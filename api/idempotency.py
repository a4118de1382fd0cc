"""Idempotency-Key for writes that create or move money or spots (API.md conventions).

The same key and body return the first response; the same key with another body is 422; a
second request while the first is still running is 409.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from core.context import AppContext
from core.errors import Conflict, ValidationFailed

_CLAIM = text("INSERT INTO idempotency_keys (scope, key, request_hash) VALUES (:scope, :key, :hash)"
              " ON CONFLICT (scope, key) DO NOTHING RETURNING key")
_GET = text("SELECT request_hash, status_code, response FROM idempotency_keys WHERE scope = :scope AND key = :key")
_STORE = text("UPDATE idempotency_keys SET status_code = :status, response = CAST(:response AS jsonb)"
              " WHERE scope = :scope AND key = :key")
_FORGET = text("DELETE FROM idempotency_keys WHERE scope = :scope AND key = :key AND status_code IS NULL")

Handler = Callable[[], Awaitable[tuple[int, dict[str, Any]]]]


def _dumps(payload: Any) -> bytes:
    # orjson writes datetimes (RFC 3339), UUIDs and nested dicts directly: the hot write paths answer
    # through here, and jsonable_encoder's recursive walk cost more than the SQL of a hold.
    return orjson.dumps(payload, default=jsonable_encoder)


def _json(payload: Any, status: int) -> Response:
    return Response(_dumps(payload), status_code=status, media_type="application/json")


def _hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(jsonable_encoder(body), sort_keys=True, separators=(",", ":")).encode()).hexdigest()


async def run_idempotent(ctx: AppContext, *, scope: str, key: str | None, body: Any, handler: Handler) -> Response:
    """Run `handler` once per (scope, key); replay its stored response for retries. `body` may be a callable
    that returns it: it is then only built when there is a key."""
    if key is None:
        status, payload = await handler()
        return _json(payload, status)
    if not 1 <= len(key) <= 200:
        raise ValidationFailed("Idempotency-Key must be 1-200 characters", loc=("header", "Idempotency-Key"))
    digest = _hash(body() if callable(body) else body)
    async with ctx.engine.begin() as conn:
        claimed = (await conn.execute(_CLAIM, {"scope": scope, "key": key, "hash": digest})).first()
        if claimed is None:
            row = (await conn.execute(_GET, {"scope": scope, "key": key})).one()
    if claimed is None:
        if row.request_hash != digest:
            raise ValidationFailed("this Idempotency-Key was used with a different request body",
                                   loc=("header", "Idempotency-Key"))
        if row.status_code is None:
            raise Conflict("a request with this Idempotency-Key is still in progress")
        return JSONResponse(row.response, status_code=row.status_code, headers={"Idempotent-Replayed": "true"})
    try:
        status, payload = await handler()
    except BaseException:
        async with ctx.engine.begin() as conn:  # a failed attempt may be retried with the same key
            await conn.execute(_FORGET, {"scope": scope, "key": key})
        raise
    raw = _dumps(payload)
    async with ctx.engine.begin() as conn:
        await conn.execute(_STORE, {"scope": scope, "key": key, "status": status, "response": raw.decode()})
    return Response(raw, status_code=status, media_type="application/json")
