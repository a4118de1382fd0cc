"""A small in-process cache whose entries expire a fixed time after they were stored, by the caller's clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Values remembered for `ttl` from the `now` they were put with (callers pass ctx.clock's time, so tests
    move time instead of sleeping). Bounded: when full it starts over, so unbounded keys cost nothing."""

    def __init__(self, ttl: timedelta, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[K, tuple[datetime, V]] = {}

    def get(self, key: K, now: datetime) -> V | None:
        """The value stored within the last `ttl` (a clock moved backwards counts as expired), or None."""
        hit = self._entries.get(key)
        if hit is None or not hit[0] <= now < hit[0] + self.ttl:
            return None
        return hit[1]

    def put(self, key: K, value: V, now: datetime) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (now, value)
