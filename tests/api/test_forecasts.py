"""GET /api/v1/lots/{id}/forecast and the search items' `forecast`, from history the worker computed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from analytics import forecast, history
from analytics.model import MODEL_NAME
from core.clock import ManualClock
from core.context import AppContext
from tests.api.test_search import ORIGIN, add, offset

NOW = datetime(2030, 1, 23, 12, 0, tzinfo=UTC)  # a Wednesday
DAYS = 22


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


async def _busy_days(ctx: AppContext, lot: uuid.UUID, share: float) -> None:
    """Weekday daytime sessions on `share` of the lot's spots (15:00-01:00 UTC), every day of the history."""
    async with ctx.engine.begin() as conn:
        await conn.execute(text("""
            INSERT INTO parking_sessions (lot_id, kind, spot_id, status, entered_at, exited_at)
            SELECT s.lot_id, 'walk_in', s.id, 'completed', d + interval '15 hours', d + interval '25 hours'
            FROM spots s, generate_series(CAST(:first AS timestamptz), :last, interval '1 day') AS d
            WHERE s.lot_id = :lot AND s.idx < :n AND extract(isodow FROM d) < 6"""),
                           {"lot": lot, "n": round(10 * share), "first": NOW - timedelta(days=DAYS, hours=12),
                            "last": NOW - timedelta(days=2)})


@pytest.fixture
async def lots(ctx: AppContext) -> dict[str, uuid.UUID]:
    made = {}
    for k, share in enumerate((0.3, 0.6, 1.0)):
        made[f"L{k}"] = lot = await add(ctx, f"L{k}", *offset(*ORIGIN, north_m=100 * (k + 1)))
        await _busy_days(ctx, lot, share)
    await history.backfill(engine=ctx.engine, t0=NOW - timedelta(days=DAYS + 1), t1=NOW, now=NOW)
    made["new"] = await add(ctx, "new", *offset(*ORIGIN, north_m=500))  # opened after the history: none of its own
    report = await forecast.train(engine=ctx.engine, now=NOW)
    assert report.trained_at == NOW and report.forecasts == 4 * 672
    return made


async def test_a_lot_forecast_in_15_minute_steps_with_its_interval(client: httpx.AsyncClient,
                                                                   lots: dict[str, uuid.UUID]) -> None:
    start = NOW + timedelta(hours=2)
    res = await client.get(f"/api/v1/lots/{lots['L2']}/forecast",
                           params={"from": start.isoformat(), "to": (start + timedelta(hours=6)).isoformat()})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["lot_id"] == str(lots["L2"]) and body["vehicle_type"] is None
    assert body["model"] == {"name": MODEL_NAME, "trained_at": "2030-01-23T12:00:00Z"}
    assert [p["at"] for p in body["points"][:2]] == ["2030-01-23T14:00:00Z", "2030-01-23T14:15:00Z"]
    assert len(body["points"]) == 24
    assert all(0 <= p["low"] <= p["occupancy"] <= p["high"] <= 1 for p in body["points"])
    # the full lot is forecast busy from 15:00 UTC on a weekday, and likely full then
    by_at = {p["at"]: p["occupancy"] for p in body["points"]}
    assert by_at["2030-01-23T17:00:00Z"] > 0.8 and by_at["2030-01-23T14:00:00Z"] < 0.2
    assert body["likely_full_at"] is not None and body["likely_full_at"] >= "2030-01-23T15:00:00Z"
    typed = await client.get(f"/api/v1/lots/{lots['L0']}/forecast", params={"vehicle_type": "ev"})
    assert typed.status_code == 200 and typed.json()["vehicle_type"] == "ev" and len(typed.json()["points"]) == 96
    new = (await client.get(f"/api/v1/lots/{lots['new']}/forecast")).json()
    assert new["model"]["name"] == "baseline:city-average" and len(new["points"]) == 96


BAD = [
    ({"from": "2030-01-23T14:00:00Z", "to": "2030-01-23T13:00:00Z"}, "to"),
    ({"from": "2030-01-23T14:00:00"}, "from"),
    ({"from": "2030-01-23T14:00:00Z", "to": "2030-01-31T14:00:00Z"}, "to"),
    ({"vehicle_type": "tank"}, "vehicle_type"),
]


async def test_bad_ranges_are_422_naming_the_field_and_an_unknown_lot_404(client: httpx.AsyncClient,
                                                                          lots: dict[str, uuid.UUID]) -> None:
    for params, field in BAD:
        res = await client.get(f"/api/v1/lots/{lots['L0']}/forecast", params=params)
        assert res.status_code == 422 and res.headers["content-type"].startswith("application/problem+json")
        assert field in res.text, params
    res = await client.get(f"/api/v1/lots/{uuid.uuid4()}/forecast")
    assert res.status_code == 404 and res.headers["content-type"].startswith("application/problem+json")


async def test_search_items_carry_the_forecast_on_both_lanes(client: httpx.AsyncClient,
                                                             lots: dict[str, uuid.UUID]) -> None:
    start = "2030-01-23T17:00:00Z"
    plain = f"/api/v1/lots/search?lat={ORIGIN[0]}&lng={ORIGIN[1]}&starts_at={start}&ends_at=2030-01-23T18:00:00Z"
    routed = plain + "&limit=20&limit=20"  # a repeated parameter goes through FastAPI's lane
    for url in (plain, routed):
        res = await client.get(url)
        assert res.status_code == 200, res.text
        items = {i["lot"]["name"]: i["forecast"] for i in res.json()["items"]}
        assert set(items) == {"L0", "L1", "L2", "new"}
        assert items["L2"]["occupancy_at_start"] > 0.8 and items["L0"]["occupancy_at_start"] < items["L2"][
            "occupancy_at_start"]
        assert items["L2"]["likely_full_at"] is not None
        assert set(items["new"]) == {"occupancy_at_start", "likely_full_at"}  # the stated baseline
    geo = await client.get(plain, headers={"Accept": "application/geo+json"})
    assert all("forecast" in f["properties"] for f in geo.json()["features"])
