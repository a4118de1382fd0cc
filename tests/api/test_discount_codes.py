"""Discount codes on quotes and holds: applied, bound into the signed quote, limited by max_uses."""

from datetime import timedelta

import httpx

from core.clock import ManualClock
from core.context import AppContext
from tests.factories import UserFactory, insert_lot
from tests.pricing_helpers import give_card


async def test_code_discounts_binds_the_quote_and_runs_out(client: httpx.AsyncClient, ctx: AppContext,
                                                           users: UserFactory, clock: ManualClock) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 5})
        await give_card(conn, lot, discount_codes=[{"code": "WELCOME10", "kind": "percent", "value": 10,
                                                   "max_uses": 1}])
    start = clock.now() + timedelta(hours=2)
    window = {"vehicle_type": "regular", "starts_at": start.isoformat(),
              "ends_at": (start + timedelta(hours=2)).isoformat()}
    plain = (await client.get(f"/api/v1/lots/{lot}/availability", params=window)).json()["quote"]
    coded = (await client.get(f"/api/v1/lots/{lot}/availability", params={**window, "discount_code": "welcome10"}))
    assert coded.status_code == 200, coded.text
    quote = coded.json()["quote"]
    assert 0 < quote["total"]["amount"] < plain["total"]["amount"]
    bad = await client.get(f"/api/v1/lots/{lot}/availability", params={**window, "discount_code": "NOPE"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["query", "discount_code"]

    driver = await users.create()
    body = {"lot_id": str(lot), **window, "plate": "DISC1", "quote_token": quote["token"]}
    without_code = await client.post("/api/v1/reservations", json=body, headers=driver.headers)
    assert without_code.status_code == 422 and without_code.json()["errors"][0]["loc"] == ["body", "quote_token"]
    held = await client.post("/api/v1/reservations", json={**body, "discount_code": "welcome10"}, headers=driver.headers)
    assert held.status_code == 201, held.text
    assert held.json()["price"]["amount"] == quote["total"]["amount"]

    other = await users.create()
    spent = await client.post("/api/v1/reservations", headers=other.headers,
                              json={"lot_id": str(lot), **window, "plate": "DISC2", "discount_code": "WELCOME10"})
    assert spent.status_code == 422 and spent.json()["errors"][0]["loc"] == ["body", "discount_code"]


async def _race_for_last_use(ctx: AppContext, clock: ManualClock, *, guarded: bool) -> int:
    import asyncio
    from dataclasses import replace

    from booking import holds
    from booking.wiring import booking_deps
    from core.errors import ValidationFailed

    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 10})
        await give_card(conn, lot, discount_codes=[{"code": "LAST1", "kind": "fixed", "value": 100, "max_uses": 1}])
    deps = replace(booking_deps(ctx), discount_lock=guarded)
    start = clock.now() + timedelta(hours=2)

    async def attempt(i: int) -> bool:
        try:
            await holds.hold(deps=deps, user_id=None, lot_id=lot, vehicle_type="regular", starts_at=start,
                             ends_at=start + timedelta(hours=1), plate=f"RACE{i}", now=clock.now(),
                             discount_code="LAST1")
            return True
        except ValidationFailed:
            return False

    return sum(await asyncio.gather(*(attempt(i) for i in range(8))))


async def test_concurrent_holds_never_use_a_code_beyond_max_uses(ctx: AppContext, clock: ManualClock) -> None:
    assert await _race_for_last_use(ctx, clock, guarded=True) == 1


async def test_negative_control_without_the_code_lock_overuses_it(ctx: AppContext, clock: ManualClock) -> None:
    assert await _race_for_last_use(ctx, clock, guarded=False) > 1
