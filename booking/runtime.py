"""Per-process booking resources: the SlotStore of a context and a breaker for a sick Redis."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import cast

from redis.exceptions import RedisError

from booking.payments import LocalProvider, PaymentProvider
from booking.slotstore import SlotStore
from core.context import AppContext
from core.keys import Keys
from core.logging import get_logger

log = get_logger("parkgrid.booking")
#: errors meaning "Redis can't answer now": take the PostgreSQL-only path
REDIS_DOWN = (RedisError, OSError, TimeoutError)


class RedisBreaker:
    """After a Redis failure, skip Redis for a short cool-down instead of paying its timeout on every request.

    Uses a monotonic clock on purpose: this is infrastructure back-off, not domain time.
    """

    def __init__(self, cooldown_seconds: float = 2.0) -> None:
        self.cooldown = cooldown_seconds
        self._open_until = 0.0
        self.trips = 0
        #: lots booked on the PostgreSQL-only path by this process: Redis misses those bookings
        #: until rebuilt, so the next Redis use of such a lot rebuilds it first
        self.dirty_lots: set[object] = set()
        self._rebuilding: dict[object, asyncio.Lock] = {}

    def rebuild_lock(self, lot_id: object) -> asyncio.Lock:
        """One rebuild of a lot at a time in this process: concurrent requests that found the lot
        missing wait for it instead of each rebuilding (a rebuild racing live holds can drop their bits)."""
        lock = self._rebuilding.get(lot_id)
        if lock is None:
            lock = self._rebuilding[lot_id] = asyncio.Lock()
        return lock

    def available(self) -> bool:
        return time.monotonic() >= self._open_until

    def trip(self, exc: BaseException) -> None:
        self.trips += 1
        self._open_until = time.monotonic() + self.cooldown
        log.warning("redis_unavailable_using_postgres_path", error=repr(exc)[:300])

    def reset(self) -> None:
        self._open_until = 0.0


def slot_store(ctx: AppContext) -> SlotStore:
    store = ctx.extras.get("slot_store")
    if store is None:
        s = ctx.settings
        store = SlotStore(ctx.redis, Keys(s.redis_prefix), hold_ttl=timedelta(seconds=s.hold_ttl_seconds),
                          max_span=timedelta(days=s.max_window_days))
        ctx.extras["slot_store"] = store
    return cast(SlotStore, store)


def breaker(ctx: AppContext) -> RedisBreaker:
    return ctx.shared("redis_breaker", RedisBreaker)


def payment_provider(ctx: AppContext) -> PaymentProvider:
    provider = ctx.extras.get("payment_provider")
    if provider is None:
        if ctx.settings.payment_provider == "stripe":
            from booking.stripe_provider import StripeProvider  # only imported when configured

            provider = StripeProvider.from_settings(ctx.settings)
        else:
            provider = LocalProvider(ctx.redis, Keys(ctx.settings.redis_prefix))
        ctx.extras["payment_provider"] = provider
    return cast(PaymentProvider, provider)
