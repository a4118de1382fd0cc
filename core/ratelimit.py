"""Rate limits in Redis with the `limits` library: moving windows per IP, user or partner key.

Limits protect the service; they must never take it down. If Redis is unreachable the check fails
open (the request goes through) and a warning is logged; bookings never wait on a rate limiter.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache

import redis.asyncio as aioredis
from limits import RateLimitItem, parse
from limits.aio.storage import RedisClusterStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.exceptions import RedisError

from core.errors import TooManyRequests
from core.logging import get_logger
from core.settings import Settings

log = get_logger("parkgrid.ratelimit")
# After Redis fails, skip limiting this long rather than pay a connect timeout on every request.
FAIL_OPEN_BACKOFF_SECONDS = 2.0


@lru_cache(maxsize=256)
def parse_rate(rate: str) -> RateLimitItem:
    """'10/minute' -> a RateLimitItem (cached: quotas repeat)."""
    return parse(rate)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    retry_after: int


class RateLimiter:
    """Moving-window limits keyed `<redis_prefix>:rl:<scope>/<identity>`, sharing the app's Redis pool."""

    def __init__(self, *, settings: Settings, redis: aioredis.Redis) -> None:
        self.enabled = settings.rate_limits == "on"
        self._settings = settings
        self._storage: RedisStorage | RedisClusterStorage
        if settings.redis_cluster:  # limits' own cluster client (its keys are one identity's, one slot each)
            self._storage = RedisClusterStorage(
                settings.redis_url.replace("redis://", "async+redis+cluster://", 1), implementation="redispy",
                wrap_exceptions=True, key_prefix=f"{settings.redis_prefix}:rl")
        else:
            self._storage = RedisStorage(
                "async+" + settings.redis_url, implementation="redispy", wrap_exceptions=True,
                key_prefix=f"{settings.redis_prefix}:rl",
                connection_pool=redis.connection_pool,  # type: ignore[arg-type]  # shares the app pool and its timeouts
            )
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._skip_until = 0.0

    async def hit(self, *, scope: str, identity: str, rate: str) -> Decision:
        """Count one request against `rate` for (scope, identity); fail open when Redis is away."""
        if not self.enabled or time.monotonic() < self._skip_until:
            return Decision(allowed=True, remaining=-1, retry_after=0)
        item = parse_rate(rate)
        try:
            if await self._limiter.hit(item, scope, identity):
                return Decision(allowed=True, remaining=-1, retry_after=0)
            stats = await self._limiter.get_window_stats(item, scope, identity)
        except (StorageError, RedisError, OSError, TimeoutError) as exc:
            self._skip_until = time.monotonic() + FAIL_OPEN_BACKOFF_SECONDS
            log.warning("rate_limit_fail_open", scope=scope, error=repr(exc))
            return Decision(allowed=True, remaining=-1, retry_after=0)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        return Decision(allowed=False, remaining=stats.remaining, retry_after=retry_after)

    async def enforce(self, *, scope: str, identity: str, rate: str) -> None:
        """Raise TooManyRequests (429 with Retry-After) once `rate` is used up."""
        decision = await self.hit(scope=scope, identity=identity, rate=rate)
        if not decision.allowed:
            raise TooManyRequests(f"rate limit {rate} exceeded for {scope}; retry in {decision.retry_after} s",
                                  retry_after=decision.retry_after)
