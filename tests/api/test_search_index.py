"""The in-process lot index (the default prefilter) and the search availability cache: what an operator changes
through the API is searched after the next refresh; a cached count says when it was taken."""

from __future__ import annotations

import gc
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from api.app import create_app
from core.clock import ManualClock
from core.context import AppContext
from geo.lotindex import lot_index
from tests.api.test_search import NOW, ORIGIN, add, offset, search
from tests.factories import UserFactory
from tests.pricing_helpers import card


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


REFRESH = timedelta(seconds=1)  # Settings.search_index_refresh_ms default
WINDOW = {"starts_at": (NOW + timedelta(hours=1)).isoformat(), "ends_at": (NOW + timedelta(hours=2)).isoformat()}


def lot_body(name: str, north_m: float) -> dict[str, Any]:
    lat, lng = offset(*ORIGIN, north_m=north_m)
    return {"name": name, "location": {"lat": lat, "lng": lng}, "timezone": "Europe/Paris",
            "levels": [{"name": "G", "spots": [{"type": "regular", "count": 5}]}]}


async def names(client: httpx.AsyncClient, **params: Any) -> list[str]:
    res = await search(client, lat=ORIGIN[0], lng=ORIGIN[1], radius_m=1000, **WINDOW, **params)
    assert res.status_code == 200, res.text
    return [i["lot"]["name"] for i in res.json()["items"]]


async def test_lots_created_changed_and_closed_through_the_api_are_searched_after_the_refresh(
        client: httpx.AsyncClient, users: UserFactory, clock: ManualClock) -> None:
    op = await users.create("operator")
    assert (await client.post("/api/v1/lots", json=lot_body("first", 100), headers=op.headers)).status_code == 201
    assert await names(client) == ["first"]  # the first search loads the index

    second = (await client.post("/api/v1/lots", json=lot_body("second", 50), headers=op.headers)).json()
    assert await names(client) == ["first"]  # within the refresh interval the snapshot stands
    assert await names(client, prefilter="knn") == ["second", "first"]  # the SQL baseline reads the table
    clock.advance(REFRESH)
    assert await names(client) == ["second", "first"]

    assert (await client.put(f"/api/v1/lots/{second['id']}/rates", json=card(), headers=op.headers)).status_code \
        == 200
    assert (await client.post(f"/api/v1/lots/{second['id']}/close", headers=op.headers)).status_code == 200
    clock.advance(REFRESH / 2)
    assert await names(client) == ["second", "first"]
    clock.advance(REFRESH / 2)
    assert await names(client) == ["first"]

    assert (await client.post(f"/api/v1/lots/{second['id']}/open", headers=op.headers)).status_code == 200
    clock.advance(REFRESH)
    res = await search(client, lat=ORIGIN[0], lng=ORIGIN[1], radius_m=1000, **WINDOW)
    quotes = {i["lot"]["name"]: i["quote"] for i in res.json()["items"]}
    assert quotes["first"] is None and quotes["second"]["total"]["currency"] == "usd"  # the card came with it


async def test_a_change_of_rates_reaches_search_quotes_after_the_refresh(
        client: httpx.AsyncClient, users: UserFactory, clock: ManualClock) -> None:
    op = await users.create("operator")
    lot = (await client.post("/api/v1/lots", json=lot_body("priced", 100), headers=op.headers)).json()
    await client.put(f"/api/v1/lots/{lot['id']}/rates", json=card(), headers=op.headers)

    async def total() -> int:
        res = await search(client, lat=ORIGIN[0], lng=ORIGIN[1], radius_m=1000, **WINDOW)
        return int(res.json()["items"][0]["quote"]["total"]["amount"])

    before = await total()
    raised = card()
    raised["rules"][0]["rate_per_hour"] *= 2
    raised["rules"][1]["rate_per_hour"] *= 2
    await client.put(f"/api/v1/lots/{lot['id']}/rates", json=raised, headers=op.headers)
    assert await total() == before
    clock.advance(REFRESH)
    assert await total() > before


async def test_pages_while_lots_are_added_and_the_index_refreshes_between_pages(
        client: httpx.AsyncClient, ctx: AppContext, clock: ManualClock) -> None:
    original = {str(await add(ctx, f"O{i}", *offset(*ORIGIN, north_m=30 * (i // 2 + 1) * (1 if i % 2 else -1))))
                for i in range(25)}
    seen: list[str] = []
    added_far: set[str] = set()
    cursor = None
    for page_no in range(50):
        res = await search(client, lat=ORIGIN[0], lng=ORIGIN[1], radius_m=3000, limit=4, **WINDOW,
                           **({"cursor": cursor} if cursor else {}))
        assert res.status_code == 200, res.text
        body = res.json()
        seen += [i["lot"]["id"] for i in body["items"]]
        await add(ctx, f"N{page_no}", *offset(*ORIGIN, east_m=5 + page_no))
        added_far.add(str(await add(ctx, f"F{page_no}", *offset(*ORIGIN, east_m=2000 + 10 * page_no))))
        clock.advance(REFRESH)  # the next page is read from a reloaded snapshot
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "a lot appeared twice"
    assert original <= set(seen), "a lot that existed from the start was skipped"
    assert set(seen) - original <= added_far and set(seen) & added_far  # only lots beyond the cursor show up


async def test_cached_counts_say_when_they_were_taken(client: httpx.AsyncClient, ctx: AppContext,
                                                      clock: ManualClock) -> None:
    lot = await add(ctx, "busy", *offset(*ORIGIN, north_m=100), spots={"regular": 3})

    async def item() -> dict[str, Any]:
        res = await search(client, lat=ORIGIN[0], lng=ORIGIN[1], radius_m=1000, **WINDOW)
        return res.json()["items"][0]  # type: ignore[no-any-return]

    first = await item()
    assert first["available"] == 3 and first["freshness"] == {"source": "database", "as_of": "2025-01-06T16:00:00Z"}
    async with ctx.engine.begin() as conn:
        spot = await conn.scalar(text("SELECT id FROM spots WHERE lot_id = :l ORDER BY idx LIMIT 1"), {"l": lot})
        await conn.execute(text(
            "INSERT INTO reservations (lot_id, spot_id, vehicle_type, starts_at, ends_at, period, status)"
            " VALUES (:l, :s, 'regular', :a, :b, tstzrange(:a, :b, '[)'), 'confirmed')"),
            {"l": lot, "s": spot, "a": NOW + timedelta(hours=1), "b": NOW + timedelta(hours=2)})
    clock.advance(seconds=1)
    assert await item() == first  # reused within the TTL, and still dated when it was counted
    clock.advance(seconds=1)  # Settings.search_count_ttl_ms default: 2 s
    fresh = await item()
    assert fresh["available"] == 2 and fresh["freshness"]["as_of"] == "2025-01-06T16:00:02Z"


async def test_a_failed_version_check_serves_the_copy_in_memory_until_a_check_succeeds(
        client: httpx.AsyncClient, ctx: AppContext, clock: ManualClock) -> None:
    await add(ctx, "first", *offset(*ORIGIN, north_m=100))
    assert await names(client) == ["first"]  # loads the index
    await add(ctx, "second", *offset(*ORIGIN, north_m=50))
    async with ctx.engine.begin() as conn:  # the version row can't be read: every poll fails in PostgreSQL
        await conn.execute(text("ALTER TABLE lot_index_version RENAME TO lot_index_version_away"))
    clock.advance(REFRESH)
    assert await names(client) == ["first"]  # the copy in memory, not an error
    assert await names(client) == ["first"]
    async with ctx.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE lot_index_version_away RENAME TO lot_index_version"))
    assert await names(client) == ["first"]  # the next poll waits for another refresh interval
    clock.advance(REFRESH)
    assert await names(client) == ["second", "first"]


async def test_a_preloaded_index_is_polled_by_the_first_search(ctx: AppContext, clock: ManualClock) -> None:
    app = create_app(ctx.settings, context=ctx, preload=True)
    await add(ctx, "before start", *offset(*ORIGIN, north_m=100))
    assert not lot_index(ctx).loaded
    async with app.router.lifespan_context(app):
        gc.unfreeze()  # a server worker's start-up froze the heap: not this test process's
        assert lot_index(ctx).loaded
        await add(ctx, "after start", *offset(*ORIGIN, north_m=50))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            assert await names(http) == ["after start", "before start"]  # polled, found changed, reloaded
