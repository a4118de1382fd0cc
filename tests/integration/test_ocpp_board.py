"""Search reads the worker's charger board, not PostgreSQL: the worker that receives a StatusNotification updates
its board for that lot at once; a change it did not receive (another worker's) shows after the refresh interval."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import text

from core.clock import ManualClock
from core.context import AppContext
from core.settings import Settings
from tests.conftest import make_settings
from tests.factories import insert_lot
from tests.integration.ocpp_world import boot, charger, create_charger, serving, status

LAT, LNG = 37.7793, -122.4193
REFRESH = timedelta(seconds=60)


@pytest.fixture
def settings(db_url: str, redis_prefix: str) -> Settings:
    return make_settings(database_url=db_url, redis_prefix=redis_prefix, celery_queue=f"q{redis_prefix}",
                         ev_board_refresh_ms=int(REFRESH.total_seconds() * 1000))


async def _searched(client: httpx.AsyncClient) -> dict[str, int]:
    res = await client.get("/api/v1/lots/search", params={"lat": LAT, "lng": LNG, "radius_m": 500})
    assert res.status_code == 200, res.text
    (item,) = res.json()["items"]
    return item["ev_chargers"]  # type: ignore[no-any-return]


async def _eventually(client: httpx.AsyncClient, key: str, want: int) -> dict[str, int]:
    """The board's lot read runs once the answer is sent (a task): wait for it, boundedly."""
    for _ in range(200):
        seen = await _searched(client)
        if seen[key] == want:
            return seen
        await asyncio.sleep(0.01)
    return seen


async def test_this_workers_status_notifications_show_in_search_at_once_others_after_the_refresh(
        settings: Settings, ctx: AppContext, client: httpx.AsyncClient, clock: ManualClock) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, lat=LAT, lng=LNG, spots={"ev": 2})
    made = await create_charger(settings, lot, "--connectors", "2")
    assert (await _searched(client))["offline"] == 2  # the board's first read
    async with serving(settings, ctx) as port, charger(port, made.charge_point_id, made.password) as c:
        await boot(c)
        await status(c, 1, "Available", clock.now())
        assert (await _eventually(client, "available", 1))["available"] == 1  # no refresh interval has passed
        await status(c, 2, "Charging", clock.now())
        assert (await _eventually(client, "charging", 1))["charging"] == 1

        # a change this worker did not receive (as another worker's would be): the board keeps its copy ...
        async with ctx.engine.begin() as conn:
            await conn.execute(text("UPDATE charger_connectors SET status = 'Faulted' WHERE connector_id = 1"))
        assert (await _searched(client))["faulted"] == 0
        clock.advance(REFRESH)  # ... until its refresh interval has passed
        assert (await _searched(client))["faulted"] == 1
