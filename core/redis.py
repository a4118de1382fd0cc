"""The Redis client: short timeouts, because a slow Redis must fall back, not stall requests."""

from __future__ import annotations

import redis.asyncio as aioredis

from core.settings import Settings


def create_redis(settings: Settings) -> aioredis.Redis:
    """A pooled asyncio client that gives up after settings.redis_timeout_ms."""
    timeout = settings.redis_timeout_ms / 1000
    return aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry_on_timeout=False,
        health_check_interval=0,
        max_connections=256,
        decode_responses=False,
    )
