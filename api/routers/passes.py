"""Monthly passes: operators sell a plate a calendar month at one of their lots."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.authz import OperatedLotId
from api.deps import ConnDep, CtxDep, NowDep, OperatorUser
from api.schemas.common import money
from core.vocabulary import SpotType
from pricing import passes

router = APIRouter(prefix="/lots", tags=["passes"])
MONTH = r"^[1-9]\d{3}-(0[1-9]|1[0-2])$"  # year 0 is no date (a 500 before)


def _month(value: str) -> date:
    year, month = value.split("-")
    return date(int(year), int(month), 1)


class PassIn(BaseModel):
    plate: str = Field(min_length=1, max_length=20)
    month: str = Field(pattern=MONTH, description="YYYY-MM, a calendar month in the lot's timezone")
    spot_type: SpotType | None = None
    price: int | None = Field(None, ge=0, le=10**12,  # a bigint column: larger was a 500 (fuzzing, seed 21)
                              description="minor units; default: the card's monthly_pass_amount")


def pass_json(row: Any) -> dict[str, Any]:
    return {"id": str(row.id), "lot_id": str(row.lot_id), "month": f"{row.month:%Y-%m}", "spot_type": row.spot_type,
            "price": money(row.price_amount, row.currency), "status": row.status, "created_at": row.created_at}


@router.post("/{lot_id}/passes", status_code=201, summary="Sell a monthly pass for a plate (operators of the lot)")
async def create_pass(lot_id: OperatedLotId, body: PassIn, user: OperatorUser, conn: ConnDep, ctx: CtxDep,
                      now: NowDep) -> dict[str, Any]:
    row = await passes.create_pass(conn, lot_id=lot_id, secret=ctx.settings.secret_bytes, plate=body.plate,
                                   month=_month(body.month), spot_type=body.spot_type, price=body.price, user_id=None,
                                   now=now)
    return {**pass_json(row), "plate": body.plate}


@router.get("/{lot_id}/passes", summary="A lot's monthly passes (operators of the lot)")
async def list_passes(lot_id: OperatedLotId, conn: ConnDep,
                      month: Annotated[str | None, Query(pattern=MONTH)] = None,
                      limit: Annotated[int, Query(ge=1, le=200)] = 50,
                      cursor: Annotated[uuid.UUID | None, Query()] = None) -> dict[str, Any]:
    rows = await passes.list_passes(conn, lot_id=lot_id, month=_month(month) if month else None, after_id=cursor,
                                    limit=limit + 1)
    more = len(rows) > limit
    return {"items": [pass_json(r) for r in rows[:limit]], "next_cursor": str(rows[limit - 1].id) if more else None}


@router.post("/{lot_id}/passes/{pass_id}/cancel", summary="Cancel a monthly pass (operators of the lot)")
async def cancel_pass(lot_id: OperatedLotId, pass_id: uuid.UUID, conn: ConnDep) -> dict[str, Any]:
    return pass_json(await passes.cancel_pass(conn, lot_id=lot_id, pass_id=pass_id))
