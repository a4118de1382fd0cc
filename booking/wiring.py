"""Build BookingDeps from a process context (API app, Celery worker, CLI)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from booking.deps import BookingDeps, Priced, Pricer
from booking.holdwriter import HoldWriter
from booking.lotinfo import LotInfo, LotInfos
from booking.runtime import breaker, payment_provider, slot_store
from core.context import AppContext
from core.vocabulary import Window
from pricing.service import READ_CARD, StoredCard, cancellation_refund_policy, quote_service


def card_pricer(ctx: AppContext) -> Pricer:
    """The real pricer: the lot's rate card, dynamic multiplier and signed quotes over the window's whole slots."""
    quotes = quote_service(ctx)

    async def pricer(conn: AsyncConnection, lot_id: uuid.UUID, vehicle_type: str, window: Window,
                     quote_token: str | None, discount_code: str | None = None, lot: LotInfo | None = None) -> Priced:
        known = READ_CARD if lot is None else (
            StoredCard(lot.card_body, lot.card_version, lot.timezone)
            if lot.card_body is not None and lot.card_version is not None else None)
        quote = await quotes.quote(conn, lot_id=lot_id, vehicle_type=vehicle_type, starts_at=window.slot_start,
                                   ends_at=window.slot_end, quote_token=quote_token, discount_code=discount_code,
                                   card=known)
        return Priced(quote.price, quote.data)

    return pricer


def lot_infos(ctx: AppContext) -> LotInfos:
    """The process's LotInfos: what holds last read of their lots (checked by every hold's write)."""
    return ctx.shared("lot_infos", LotInfos)


def hold_writer(ctx: AppContext) -> HoldWriter:
    """The process's HoldWriter: the Redis path's holds written in batches on the raw pool."""
    return ctx.shared("hold_writer", lambda: HoldWriter(ctx.pg))


def booking_deps(ctx: AppContext, *, pricer: Pricer | None = None, use_redis: bool = True) -> BookingDeps:
    s = ctx.settings
    chosen = pricer or ctx.extras.get("pricer") or card_pricer(ctx)
    return BookingDeps(
        engine=ctx.engine, pg=ctx.pg, slots=slot_store(ctx), breaker=breaker(ctx), payments=payment_provider(ctx),
        hold_ttl=timedelta(seconds=s.hold_ttl_seconds), max_holds_per_user=s.max_holds_per_user,
        secret=s.secret_bytes, max_window=timedelta(days=s.max_window_days), pricer=chosen,  # type: ignore[arg-type]
        refund_policy=ctx.extras.get("refund_policy") or cancellation_refund_policy,  # type: ignore[arg-type]
        use_redis=use_redis, lots=lot_infos(ctx), writer=hold_writer(ctx),
    )
