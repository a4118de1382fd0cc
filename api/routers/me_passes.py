"""Monthly passes drivers buy for a lot and plate (FR-7): charged now and at each renewal, cancellable at period end."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.deps import ConnDep, CurrentUser, SignedInDep
from api.idempotency import run_idempotent
from api.routers.reservations import IdemKey
from api.schemas.common import MoneyOut, StrictBody, WireUuid, money
from booking import pass_subscriptions as subs
from booking import queries as q
from booking.wiring import booking_deps

router = APIRouter(prefix="/api/v1/me/passes", tags=["passes"])

SpotType = Literal["motorcycle", "compact", "regular", "large", "ev", "handicap"]


class PassBuyIn(StrictBody):
    lot_id: WireUuid
    plate: str = Field(min_length=1, max_length=20)
    payment_token: str = Field(min_length=1, max_length=200, description="charged now and at each renewal")
    spot_type: SpotType | None = Field(None, description="null: any type")


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    lot_id: uuid.UUID
    status: Literal["active", "cancelled", "lapsed"]
    cancel_at_period_end: bool
    current_month: str = Field(description="YYYY-MM: the month paid for last")
    price: MoneyOut = Field(description="charged for each month")
    spot_type: SpotType | None
    notice: str | None = Field(description="why it ended (a declined renewal), when it did")
    created_at: datetime


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]
    next_cursor: str | None = None


def subscription_json(row: Any) -> dict[str, Any]:
    month: date = row.current_month
    return {"id": str(row.id), "lot_id": str(row.lot_id), "status": row.status,
            "cancel_at_period_end": row.cancel_at_period_end, "current_month": f"{month:%Y-%m}",
            "price": money(row.price_amount, row.currency), "spot_type": row.spot_type, "notice": row.notice,
            "created_at": row.created_at}


@router.post("", status_code=201, summary="Buy a monthly pass for a lot and plate (charged now and monthly)",
             description="Priced by the lot's card (`monthly_pass_amount`; 422 on `lot_id` when it sells none) and "
                         "charged now: 402 when declined (nothing is kept). Renewed on the first day of each month "
                         "in the lot's time zone; a declined renewal lapses the pass with a `notice`.",
             responses={201: {"model": SubscriptionOut}, 402: {"description": "payment declined"},
                        409: {"description": "the plate already has a pass this month"}})
async def buy_pass(body: PassBuyIn, call: SignedInDep, idempotency_key: IdemKey = None) -> Response:
    ctx, user, now = call.ctx, call.user, call.now

    async def handler() -> tuple[int, dict[str, Any]]:
        row = await subs.buy_pass(deps=booking_deps(ctx), user_id=user.user_id, lot_id=body.lot_id, plate=body.plate,
                                  payment_token=body.payment_token, spot_type=body.spot_type, now=now)
        return 201, subscription_json(row)

    return await run_idempotent(ctx, scope=f"{user.user_id}:POST:/me/passes", key=idempotency_key,
                                body=lambda: body.model_dump(mode="json"), handler=handler)


@router.get("", response_model=SubscriptionList, summary="The caller's pass subscriptions")
async def my_passes(conn: ConnDep, user: CurrentUser) -> dict[str, Any]:
    rows = await conn.execute(q.SUBSCRIPTIONS_OF_USER, {"user_id": user.user_id})
    return {"items": [subscription_json(r) for r in rows], "next_cursor": None}


@router.post("/{subscription_id}/cancel", response_model=SubscriptionOut,
             summary="Cancel at period end: the paid month stays valid, nothing more is charged")
async def cancel_pass(subscription_id: uuid.UUID, conn: ConnDep, user: CurrentUser, call: SignedInDep
                      ) -> dict[str, Any]:
    row = await subs.cancel_at_period_end(conn=conn, user_id=user.user_id, subscription_id=subscription_id,
                                          now=call.now)
    return subscription_json(row)


