"""Who a device key or a signed-in user is, as of the latest revocation, on every worker.

A worker remembers the device keys it has looked up (a cachetools TTLCache on the injected clock, DEVICE_KEY_TTL)
and the set of disabled users. Revoking a device, a partner or a user (core.accounts, through `parkgrid devices
revoke`, `partners revoke`, `users revoke`) bumps one version key in Redis once the revocation has committed
(`announce_revocation`); every request that names a device or a user reads that version, and a worker that sees it
move forgets everything it remembered before it answers. So a revoked key is refused on the very next request, on
every worker, without waiting out a TTL. The reads of one worker are shared (`Keyring.current`): a request waits
for a GET sent after it arrived, never for one already on its way, so a revocation announced before it arrived is
always seen; under load one GET answers every request that arrived while the previous one was out. Partner keys
are looked up in PostgreSQL on every request (api.deps.current_partner), so their revocation needs nothing
remembered to be forgotten.

When Redis does not answer, nothing is remembered: each request asks PostgreSQL (slower, never stale).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

import redis.asyncio as aioredis
from cachetools import TTLCache
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.clock import Clock
from core.context import AppContext
from core.keys import Keys
from core.ttlcache import ttl_cache

#: how long a worker keeps a device key it looked up when nothing is revoked meanwhile (a revocation clears it)
DEVICE_KEY_TTL = timedelta(seconds=60)

_DEVICE = text("SELECT id, lot_id FROM devices WHERE key_hash = :h AND revoked_at IS NULL")
_DISABLED_USERS = text("SELECT id FROM users WHERE disabled")
_USER_DISABLED = text("SELECT disabled FROM users WHERE id = :id")


@dataclass(frozen=True)
class Device:
    device_id: uuid.UUID
    lot_id: uuid.UUID


class Keyring:
    """One per process (`keyring(ctx)`): device keys and disabled users, forgotten when the version moves."""

    def __init__(self, *, engine: AsyncEngine, redis: aioredis.Redis, version_key: str, clock: Clock,
                 ttl: timedelta = DEVICE_KEY_TTL, maxsize: int = 10_000) -> None:
        self.engine, self.redis, self.version_key = engine, redis, version_key
        self.devices: TTLCache[str, Device] = ttl_cache(clock=clock, ttl=ttl, maxsize=maxsize)
        self.disabled_users: frozenset[uuid.UUID] | None = None
        self.version: bytes | None = None
        self._loading_users: asyncio.Lock = asyncio.Lock()
        #: the version read on its way (None: none is), and the one to send when it answers, for the requests
        #: that arrived meanwhile (None: none did)
        self._reading: asyncio.Task[None] | None = None
        self._next: asyncio.Future[bool] | None = None

    def forget(self, version: bytes | None) -> None:
        self.devices.clear()
        self.disabled_users = None
        self.version = version

    async def current(self) -> bool:
        """Reads the revocation version, forgetting what this worker remembers when it moved; False when Redis
        does not answer (then nothing may be remembered). The GET that answers was sent after this call."""
        loop = asyncio.get_running_loop()
        if self._reading is None:
            answer: asyncio.Future[bool] = loop.create_future()
            self._reading = loop.create_task(self._read_rounds(answer))
        else:  # the GET on its way left before this call: wait for the next one
            if self._next is None:
                self._next = loop.create_future()
            answer = self._next
        return await asyncio.shield(answer)  # a caller cancelled does not cancel the others' read

    async def _read_rounds(self, answer: asyncio.Future[bool]) -> None:
        """Sends GETs while requests wait for one: each round answers those that arrived before it was sent."""
        waiting: asyncio.Future[bool] | None = answer
        try:
            while waiting is not None:
                waiting.set_result(await self._read_version())
                waiting, self._next = self._next, None
        except BaseException as exc:  # the waiting requests fail with it (cancelled at shutdown: "closed")
            for future in (waiting, self._next):
                if future is not None and not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("keyring closed"))
            self._next = None
            if not isinstance(exc, Exception):
                raise  # an error was handed to the requests: nobody awaits this task to be told again
        finally:
            self._reading = None

    async def _read_version(self) -> bool:
        try:
            version = cast(bytes | None, await self.redis.get(self.version_key))
        except (RedisError, OSError, TimeoutError):
            self.forget(None)
            return False
        if version != self.version:
            self.forget(version)
        return True

    async def device(self, key_hash: str) -> Device | None:
        """The device holding this (hashed) key, or None when it is unknown or revoked."""
        remembered = await self.current()
        version = self.version
        if remembered:
            hit = self.devices.get(key_hash)
            if hit is not None:
                return hit
        async with self.engine.connect() as conn:
            row = (await conn.execute(_DEVICE, {"h": key_hash})).first()
        if row is None:
            return None  # an unknown key is looked up every time: it may be created any moment
        device = Device(device_id=row.id, lot_id=row.lot_id)
        if remembered and self.version == version:  # not if a revocation was announced while we read
            self.devices[key_hash] = device
        return device

    async def user_active(self, user_id: uuid.UUID) -> bool:
        """False for a user disabled (revoked) since their access token was signed."""
        if not await self.current():
            async with self.engine.connect() as conn:
                return not (await conn.scalar(_USER_DISABLED, {"id": user_id}))
        disabled = self.disabled_users
        if disabled is None:
            async with self._loading_users:  # one read per worker and version, however many requests wait
                disabled = self.disabled_users
                if disabled is None:
                    version = self.version
                    async with self.engine.connect() as conn:
                        disabled = frozenset((await conn.execute(_DISABLED_USERS)).scalars())
                    if self.version == version:
                        self.disabled_users = disabled
        return user_id not in disabled


def keyring(ctx: AppContext) -> Keyring:
    """The process's keyring."""
    return ctx.shared("keyring", lambda: Keyring(engine=ctx.engine, redis=ctx.redis, clock=ctx.clock,
                                                 version_key=Keys(ctx.settings.redis_prefix).revocations()))


async def announce_revocation(*, redis: aioredis.Redis, prefix: str) -> int:
    """Tell every worker to forget remembered keys; call after the revocation has committed (a worker reading the
    database before the commit would otherwise remember the key again under the new version)."""
    return int(await redis.incr(Keys(prefix).revocations()))
