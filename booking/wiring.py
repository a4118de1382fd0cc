"""Build BookingDeps from a process context (API app, Celery worker, CLI)."""

from __future__ import annotations

from datetime import timedelta

from booking.runtime import breaker, payment_provider, slot_store
from booking.service import BookingDeps, Pricer, free_pricer
from core.context import AppContext


def booking_deps(ctx: AppContext, *, pricer: Pricer | None = None, use_redis: bool = True) -> BookingDeps:
    s = ctx.settings
    chosen = pricer or ctx.extras.get("pricer") or free_pricer
    return BookingDeps(
        engine=ctx.engine, slots=slot_store(ctx), breaker=breaker(ctx), payments=payment_provider(ctx),
        hold_ttl=timedelta(seconds=s.hold_ttl_seconds), max_holds_per_user=s.max_holds_per_user,
        secret=s.secret_bytes, max_window=timedelta(days=s.max_window_days), pricer=chosen,  # type: ignore[arg-type]
        use_redis=use_redis,
    )
