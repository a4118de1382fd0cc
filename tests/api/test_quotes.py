"""Quotes over HTTP: availability and search carry signed quotes; a hold with a valid token pays exactly that."""

import json
from datetime import UTC, datetime, timedelta

import httpx

from core.clock import ManualClock
from core.context import AppContext
from tests.factories import UserFactory, insert_lot
from tests.pricing_helpers import card, give_card

# Mon 2030-01-07 17:30 -> Tue 09:15 in Los Angeles: day, the whole night band, then day again.
STARTS = datetime(2030, 1, 8, 1, 30, tzinfo=UTC)
ENDS = datetime(2030, 1, 8, 17, 15, tzinfo=UTC)


async def _lot(ctx: AppContext, users: UserFactory, **card_overrides: object):  # type: ignore[no-untyped-def]
    op = await users.create("operator")
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, organisation_id=op.organisation_id, spots={"regular": 4})
        await give_card(conn, lot, **card_overrides)
    return op, str(lot)


def _window(starts: datetime = STARTS, ends: datetime = ENDS) -> dict[str, str]:
    return {"vehicle_type": "regular", "starts_at": starts.isoformat(), "ends_at": ends.isoformat()}


async def _quote(client: httpx.AsyncClient, lot: str, **window: datetime) -> dict:  # type: ignore[type-arg]
    res = await client.get(f"/api/v1/lots/{lot}/availability", params=_window(**window))
    assert res.status_code == 200, res.text
    return res.json()["quote"]  # type: ignore[no-any-return]


async def test_multi_band_overnight_quote(client: httpx.AsyncClient, ctx: AppContext, users: UserFactory,
                                          clock: ManualClock) -> None:
    _, lot = await _lot(ctx, users)
    quote = await _quote(client, lot)
    print(json.dumps({k: v for k, v in quote.items() if k != "policy"}, indent=2))  # the worked example (pytest -s)
    lines = quote["breakdown"]["lines"]
    assert [(line["label"], line["minutes"], line["amount"]) for line in lines] == [
        ("day", 90, 600), ("night", 720, 1800), ("day", 135, 900)]
    assert quote["breakdown"]["subtotal"]["amount"] == 3300
    assert quote["breakdown"]["tax"]["amount"] == 272  # 8.25 % of 3300 = 272.25, half up
    assert quote["total"] == {"amount": 3572, "currency": "usd"}
    assert quote["multiplier"] == "1" and quote["reason"] == "dynamic pricing off"
    assert quote["expires_at"].startswith((clock.now() + timedelta(minutes=10)).isoformat()[:16])
    assert quote["token"] and quote["policy"]["no_show_fee"] == {"amount": 500, "currency": "usd"}


async def test_lot_without_card_has_null_quote_and_free_hold(client: httpx.AsyncClient, ctx: AppContext) -> None:
    async with ctx.engine.begin() as conn:
        lot = str(await insert_lot(conn))
    res = await client.get(f"/api/v1/lots/{lot}/availability", params=_window())
    assert res.status_code == 200 and res.json()["quote"] is None


async def test_hold_with_token_pays_exactly_the_quote_even_after_rates_change(
        client: httpx.AsyncClient, ctx: AppContext, users: UserFactory, clock: ManualClock) -> None:
    op, lot = await _lot(ctx, users)
    quote = await _quote(client, lot)
    raised = card()
    raised["rules"][0]["rate_per_hour"] = 800
    assert (await client.put(f"/api/v1/lots/{lot}/rates", json=raised, headers=op.headers)).status_code == 200
    clock.advance(minutes=9)
    driver = await users.create()
    body = {"lot_id": lot, **_window(), "plate": "QT1", "quote_token": quote["token"]}
    held = await client.post("/api/v1/reservations", json=body, headers=driver.headers)
    assert held.status_code == 201, held.text
    assert held.json()["price"] == quote["total"] == {"amount": 3572, "currency": "usd"}
    # without a token the new card applies; the first reservation keeps its price
    other = {"lot_id": lot, **_window(), "plate": "QT2"}
    fresh = await client.post("/api/v1/reservations", json=other, headers=driver.headers)
    assert fresh.status_code == 201 and fresh.json()["price"]["amount"] > 3572
    first = await client.get(f"/api/v1/reservations/{held.json()['id']}", headers=driver.headers)
    assert first.json()["price"]["amount"] == 3572


async def test_expired_tampered_or_mismatched_token_is_422(client: httpx.AsyncClient, ctx: AppContext,
                                                           users: UserFactory, clock: ManualClock) -> None:
    _, lot = await _lot(ctx, users)
    driver = await users.create()
    quote = await _quote(client, lot)
    payload, mac = quote["token"].split(".")
    tampered = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + mac
    later = {**_window(ENDS - timedelta(hours=1)), "ends_at": ENDS.isoformat()}
    for i, (token, window) in enumerate([(tampered, _window()), (quote["token"], later)]):
        res = await client.post("/api/v1/reservations", json={"lot_id": lot, **window, "plate": f"TT{i}",
                                                              "quote_token": token}, headers=driver.headers)
        assert res.status_code == 422, res.text
        assert res.json()["errors"][0]["loc"] == ["body", "quote_token"]
    clock.advance(minutes=10)
    res = await client.post("/api/v1/reservations", json={"lot_id": lot, **_window(), "plate": "TT9",
                                                          "quote_token": quote["token"]}, headers=driver.headers)
    assert res.status_code == 422 and "expired" in res.json()["detail"]
    assert res.json()["errors"][0]["loc"] == ["body", "quote_token"]


async def test_search_items_carry_quotes(client: httpx.AsyncClient, ctx: AppContext, users: UserFactory) -> None:
    _, priced = await _lot(ctx, users)
    async with ctx.engine.begin() as conn:
        unpriced = str(await insert_lot(conn, name="No rates", lng=-122.4190))
    res = await client.get("/api/v1/lots/search", params={"lat": 37.7793, "lng": -122.4193, "radius_m": 500,
                                                          **_window()})
    assert res.status_code == 200, res.text
    quotes = {item["lot"]["id"]: item["quote"] for item in res.json()["items"]}
    assert quotes[unpriced] is None
    assert quotes[priced]["total"] == {"amount": 3572, "currency": "usd"} and quotes[priced]["token"]
    capped = await client.get("/api/v1/lots/search", params={"lat": 37.7793, "lng": -122.4193, "radius_m": 500,
                                                             "max_price": 3000, **_window()})
    assert {item["lot"]["id"] for item in capped.json()["items"]} == {unpriced}


async def test_dynamic_multiplier_is_bounded_explained_and_sticky(client: httpx.AsyncClient, ctx: AppContext,
                                                                  users: UserFactory, clock: ManualClock) -> None:
    _, lot = await _lot(ctx, users, dynamic={"enabled": True, "min_multiplier": "0.8", "max_multiplier": "1.5"})
    empty = await _quote(client, lot)
    assert empty["multiplier"] == "0.8" and "occupancy 0%" in empty["reason"]
    assert empty["total"]["amount"] == 2858  # round(3300 * 0.8) = 2640, + 8.25 % tax (217.8 -> 218)
    driver = await users.create()
    for plate in ("D1", "D2", "D3"):  # 3 of 4 spots booked for the window: 75 %
        res = await client.post("/api/v1/reservations", json={"lot_id": lot, **_window(), "plate": plate},
                                headers=driver.headers)
        assert res.status_code == 201, res.text
    busy = await _quote(client, lot)
    assert busy["multiplier"] == "1.2" and "occupancy 75%" in busy["reason"]
    assert busy["breakdown"]["multiplier_reason"] == busy["reason"]
