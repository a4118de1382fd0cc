"""A lot's rate card: operators of the lot put and read it (another organisation's lot answers 404)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from api.authz import OperatedLotId
from api.deps import ConnDep, NowDep
from pricing.rates import RateCard
from pricing.service import get_rate_card, put_rate_card

router = APIRouter(prefix="/lots", tags=["rates"])

_EXAMPLE = {"currency": "usd", "tax_percent": "8.25", "grace_minutes": 10,
            "rules": [{"name": "day", "spot_types": ["regular"], "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                       "from": "07:00", "to": "19:00", "rate_per_hour": 400, "increment_minutes": 15, "daily_max": 3000},
                      {"name": "night", "spot_types": ["regular"], "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                       "from": "19:00", "to": "07:00", "rate_per_hour": 150, "increment_minutes": 30, "daily_max": 3000}],
            "cancellation": {"free_until_minutes_before": 60, "fee_percent": 20}, "no_show_fee": 500,
            "overstay": {"rate_per_hour": 600, "increment_minutes": 15},
            "dynamic": {"enabled": False, "min_multiplier": "0.8", "max_multiplier": "1.5"}, "capture": "at_exit"}


@router.put("/{lot_id}/rates", summary="Replace a lot's rate card (operators of the lot)",
            description="Validated with pricing.rates: every (spot type, day) must be tiled by exactly one band; an "
                        "overlap or gap is 422 naming the rule (`errors[0].loc = [body, rules, i]`). Existing "
                        "reservations keep their price and the policy they were sold under. The card's version is "
                        "in the `ETag` header. A card that leaves one of the lot's spot types without a rule is "
                        "422 naming `rules` (`unpriced_spot_types` lists them): those spots could not be booked.",
            responses={200: {"model": RateCard}})
async def put_rates(lot_id: OperatedLotId, conn: ConnDep, now: NowDep,
                    body: dict[str, Any] = Body(..., openapi_examples={"day-night": {"value": _EXAMPLE}})) -> JSONResponse:
    try:
        card, version = await put_rate_card(conn, lot_id=lot_id, data=body, now=now)
    except ValidationError as exc:  # field errors: every bad field listed, located in the body
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
    return JSONResponse(card.as_json(), headers={"ETag": f'"v{version}"'})


@router.get("/{lot_id}/rates", summary="A lot's rate card (operators of the lot)",
            responses={200: {"model": RateCard}})
async def get_rates(lot_id: OperatedLotId, conn: ConnDep) -> JSONResponse:
    body, version, _ = await get_rate_card(conn, lot_id=lot_id)
    return JSONResponse(body, headers={"ETag": f'"v{version}"'})
