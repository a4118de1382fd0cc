"""The Redis client: short timeouts, because a slow Redis must fall back, not stall requests."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from core.settings import Settings


def create_redis(settings: Settings) -> aioredis.Redis:
    """A pooled asyncio client that gives up after settings.redis_timeout_ms."""
    timeout = settings.redis_timeout_ms / 1000
    return aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry_on_timeout=False,
        # A pooled connection that Redis dropped (a restart) fails once on its next use: reconnect and send
        # again, once and at once, instead of counting Redis as down (the holds' breaker would send every
        # hold of that worker to the PostgreSQL-only path for its cooldown, once per stale connection). A
        # Redis that is really down refuses the reconnect at once. The scripts a reset can re-run after they
        # ran (hold, release) are idempotent; a sensor counter could count one batch twice until rebuilt.
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[RedisConnectionError],
        health_check_interval=0,
        max_connections=256,
        decode_responses=False,
    )
