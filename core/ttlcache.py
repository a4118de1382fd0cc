"""In-process caches on the injected clock: cachetools' TTLCache with the clock as its timer, so tests move time
instead of sleeping and every cache of a process ages by the same clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from cachetools import TTLCache

from core.clock import Clock


def clock_timer(clock: Clock) -> Callable[[], float]:
    """A cachetools timer reading the injected clock (seconds since the epoch)."""
    return lambda: clock.now().timestamp()


def ttl_cache(*, clock: Clock, ttl: timedelta, maxsize: int = 10_000) -> TTLCache[Any, Any]:
    """A bounded cache whose entries expire `ttl` after they were stored, by `clock` (least recently used entries
    go first when it is full)."""
    return TTLCache(maxsize=maxsize, ttl=ttl.total_seconds(), timer=clock_timer(clock))
