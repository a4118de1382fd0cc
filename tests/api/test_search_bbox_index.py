"""Viewport (bbox) search from the in-process lot index gives the SQL bbox search's answers: the same lots, in the
same order, at the same distances, page after page."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from core.accounts import ensure_organisation
from core.context import AppContext
from geo.seed import CITY_CENTRE, DEMO_ORG_ID, plan_city, seed_city


@pytest.fixture
async def city(ctx: AppContext) -> int:
    async with ctx.engine.begin() as conn:
        await conn.execute(text("INSERT INTO organisations (id, name) VALUES (:id, 'Demo') ON CONFLICT DO NOTHING"),
                           {"id": DEMO_ORG_ID})
        await ensure_organisation(conn=conn, name="Demo")
    plans = plan_city(lots=400, seed=11)
    await seed_city(ctx.engine, plans, batch=200)
    async with ctx.engine.begin() as conn:  # a few closed lots and amenities, which both paths must skip alike
        await conn.execute(text("UPDATE lots SET status = 'closed' WHERE id IN (SELECT id FROM lots ORDER BY id LIMIT 20)"))
        await conn.execute(text("UPDATE lots SET amenities = '{covered,ev_charging}' "
                                "WHERE id IN (SELECT id FROM lots ORDER BY name LIMIT 120)"))
    return len(plans)


async def _pages(client: httpx.AsyncClient, params: dict[str, Any]) -> list[tuple[str, float, int, int]]:
    out, cursor = [], None
    for _ in range(200):
        q = dict(params, **({"cursor": cursor} if cursor else {}))
        r = await client.get("/api/v1/lots/search", params=q)
        assert r.status_code == 200, r.text
        body = r.json()
        out += [(i["lot"]["id"], round(i["distance_m"], 3), i["available"], i["capacity"]) for i in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("too many pages")


async def test_bbox_from_the_index_equals_the_sql_bbox_search(client: httpx.AsyncClient, city: int) -> None:
    rng = random.Random(5)
    lat0, lng0 = CITY_CENTRE
    compared = 0
    for case in range(12):
        half_lat, half_lng = rng.uniform(0.003, 0.02), rng.uniform(0.004, 0.025)
        clat, clng = lat0 + rng.uniform(-0.02, 0.02), lng0 + rng.uniform(-0.02, 0.02)
        params: dict[str, Any] = {"bbox": f"{clng - half_lng},{clat - half_lat},{clng + half_lng},{clat + half_lat}",
                                  "limit": rng.choice([5, 20, 100])}
        if case % 3 == 1:
            params["vehicle_type"] = rng.choice(["ev", "motorcycle", "large", "handicap"])
        if case % 4 == 2:
            params["amenities"] = "covered,ev_charging"
        if case % 5 == 3:
            params["lat"], params["lng"] = clat + half_lat, clng  # distances from a point of the caller's choice
        from_index = await _pages(client, {**params, "prefilter": "index"})
        from_sql = await _pages(client, {**params, "prefilter": "st_dwithin"})  # any SQL prefilter: the bbox SQL
        assert [x[0] for x in from_index] == [x[0] for x in from_sql], params
        assert [x[1] for x in from_index] == pytest.approx([x[1] for x in from_sql], abs=1e-3)
        assert [x[2:] for x in from_index] == [x[2:] for x in from_sql]
        compared += len(from_sql)
    assert compared > 300  # the boxes held lots: a comparison of empty pages would prove nothing
