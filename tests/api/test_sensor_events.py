"""Sensor batches over HTTP: per-event validation, exactly once, debounce, staleness, scoping, counters."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import text

from controllers.occupancy import counters_for, occupancy_key
from controllers.sensors import mark_stale_sensors
from core.clock import ManualClock
from core.context import AppContext
from tests.factories import device_key_for, insert_lot


async def _lot(ctx: AppContext, **spots: int) -> tuple[uuid.UUID, dict[str, str]]:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots=spots or {"regular": 4})
        key = await device_key_for(conn, lot)
    return lot, {"X-Device-Key": key}


def _ev(event_id: str, sensor: str, state: str, at: str, confidence: float = 0.95) -> dict[str, object]:
    return {"event_id": event_id, "sensor_id": sensor, "state": state, "confidence": confidence, "occurred_at": at}


async def _post(client: httpx.AsyncClient, lot: uuid.UUID, headers: dict[str, str], events: list[object]) -> dict:
    r = await client.post(f"/api/v1/lots/{lot}/sensor-events", json={"events": events}, headers=headers)
    assert r.status_code == 202, r.text
    return r.json()


async def _display(client: httpx.AsyncClient, lot: uuid.UUID, headers: dict[str, str]) -> dict:
    r = await client.get(f"/api/v1/lots/{lot}/displays", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["levels"][0]["types"][0]


async def test_batch_with_good_duplicate_and_malformed_events(client: httpx.AsyncClient, ctx: AppContext,
                                                              clock: ManualClock) -> None:
    lot, headers = await _lot(ctx)
    now = clock.now().isoformat()
    body = await _post(client, lot, headers, [
        _ev("e1", "L0-001", "occupied", now), _ev("e2", "L0-002", "vacant", now),
        _ev("e1", "L0-001", "occupied", now),  # duplicate inside the batch
        {"event_id": "bad-state", "sensor_id": "L0-003", "state": "parked", "confidence": 0.9, "occurred_at": now},
        {"event_id": "bad-conf", "sensor_id": "L0-003", "state": "vacant", "confidence": 7, "occurred_at": now},
        {"event_id": "bad-time", "sensor_id": "L0-003", "state": "vacant", "confidence": 0.9, "occurred_at": "yesterday"},
        {"sensor_id": "L0-003"}, "not an object",
    ])
    assert body["accepted"] == 2
    assert body["duplicates"] == 1
    reasons = {r["event_id"]: r["reason"] for r in body["rejected"]}
    assert set(reasons) == {"bad-state", "bad-conf", "bad-time", None}
    assert "state" in reasons["bad-state"] and "confidence" in reasons["bad-conf"]
    again = await _post(client, lot, headers, [_ev("e1", "L0-001", "occupied", now), _ev("e2", "L0-002", "vacant", now)])
    assert again == {"accepted": 0, "duplicates": 2, "rejected": [], "ignored": []}
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT id, state, spot_id IS NOT NULL AS mapped FROM sensors ORDER BY id"))).all()
        assert [(r.id, r.state, r.mapped) for r in rows] == [("L0-001", "occupied", True), ("L0-002", "vacant", True)]
        assert await conn.scalar(text("SELECT count(*) FROM sensor_events")) == 2
        cds = (await conn.execute(text("SELECT cds_event_type FROM controller_events"))).scalars().all()
        assert cds == ["park_start"]
    group = await _display(client, lot, headers)
    # 4 regular spots: 1 occupied, 1 vacant, 2 without sensors (unknown, never free)
    assert group["free"] == 1 and group["occupied"] == 1 and group["unknown"] == 2 and group["stale"] is False
    assert group["freshness"]["source"] == "sensor"


async def test_debounce_and_confidence_with_injected_clock(client: httpx.AsyncClient, ctx: AppContext,
                                                           clock: ManualClock) -> None:
    lot, headers = await _lot(ctx, regular=1)
    t0 = clock.now()
    await _post(client, lot, headers, [_ev("a", "L0-001", "occupied", t0.isoformat())])
    clock.advance(seconds=2)
    body = await _post(client, lot, headers, [_ev("b", "L0-001", "vacant", clock.now().isoformat())])
    assert body["accepted"] == 0 and body["ignored"] == [{"event_id": "b", "reason": "debounced"}]
    clock.advance(seconds=10)
    body = await _post(client, lot, headers, [_ev("c", "L0-001", "vacant", clock.now().isoformat(), confidence=0.2)])
    assert body["ignored"] == [{"event_id": "c", "reason": "low_confidence"}]
    assert (await _display(client, lot, headers))["free"] == 0
    body = await _post(client, lot, headers, [_ev("d", "L0-001", "vacant", clock.now().isoformat())])
    assert body["accepted"] == 1
    assert (await _display(client, lot, headers))["free"] == 1


async def test_silent_sensor_goes_unknown_never_free(client: httpx.AsyncClient, ctx: AppContext,
                                                     clock: ManualClock) -> None:
    lot, headers = await _lot(ctx, regular=2)
    now = clock.now().isoformat()
    await _post(client, lot, headers, [_ev("a", "L0-001", "vacant", now), _ev("b", "L0-002", "vacant", now)])
    assert (await _display(client, lot, headers))["free"] == 2
    clock.advance(minutes=5)
    await _post(client, lot, headers, [_ev("c", "L0-002", "vacant", clock.now().isoformat())])  # heartbeat
    clock.advance(minutes=6)  # L0-001 silent for 11 minutes > 600 s heartbeat
    counters = counters_for(ctx)
    assert await mark_stale_sensors(pg=await ctx.pg(), counters=counters, now=clock.now()) == 1
    assert await mark_stale_sensors(pg=await ctx.pg(), counters=counters, now=clock.now()) == 0  # idempotent
    group = await _display(client, lot, headers)
    assert group["free"] == 1 and group["unknown"] == 1 and group["stale"] is False
    clock.advance(minutes=20)  # everything silent: stale, and no number at all
    await mark_stale_sensors(pg=await ctx.pg(), counters=counters, now=clock.now())
    group = await _display(client, lot, headers)
    assert group["free"] is None and group["stale"] is True
    async with ctx.engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM controller_events WHERE cds_event_type = 'comms_lost'")) == 2
    # the sensor comes back: comms_restored, counted again
    await _post(client, lot, headers, [_ev("d", "L0-001", "occupied", clock.now().isoformat())])
    group = await _display(client, lot, headers)
    assert group["occupied"] == 1 and group["free"] == 0 and group["unknown"] == 1


async def test_device_of_another_lot_gets_404(client: httpx.AsyncClient, ctx: AppContext, clock: ManualClock) -> None:
    lot, headers = await _lot(ctx)
    _other, other_headers = await _lot(ctx)
    ev = [_ev("x", "L0-001", "occupied", clock.now().isoformat())]
    r = await client.post(f"/api/v1/lots/{lot}/sensor-events", json={"events": ev}, headers=other_headers)
    assert r.status_code == 404
    assert (await client.get(f"/api/v1/lots/{lot}/displays", headers=other_headers)).status_code == 404
    assert (await client.get(f"/api/v1/lots/{lot}/edge-snapshot", headers=other_headers)).status_code == 404
    r = await client.post(f"/api/v1/lots/{lot}/sensor-events", json={"events": ev})
    assert r.status_code == 401
    r = await client.post(f"/api/v1/lots/{lot}/sensor-events", json={"events": "nope"}, headers=headers)
    assert r.status_code == 422
    async with ctx.engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM sensors")) == 0


async def test_counters_rebuilt_from_postgres_and_clamped(client: httpx.AsyncClient, ctx: AppContext,
                                                          clock: ManualClock) -> None:
    lot, headers = await _lot(ctx, regular=2)
    now = clock.now().isoformat()
    await _post(client, lot, headers, [_ev("a", "L0-001", "occupied", now), _ev("b", "L0-002", "occupied", now)])
    await ctx.redis.delete(occupancy_key(ctx.settings.redis_prefix, lot))  # Redis lost the lot
    group = await _display(client, lot, headers)
    assert group["occupied"] == 2 and group["free"] == 0
    counters = counters_for(ctx)
    level = (await client.get(f"/api/v1/lots/{lot}/displays", headers=headers)).json()["levels"][0]["level_id"]
    from controllers.occupancy import Delta

    clamps = await counters.apply(lot_id=lot, deltas={f"{level}|regular": Delta(occupied=5)})
    assert clamps == 1
    assert (await _display(client, lot, headers))["occupied"] == 2  # never above the bays it has
    await counters.apply(lot_id=lot, deltas={f"{level}|regular": Delta(occupied=-9)})
    assert (await _display(client, lot, headers))["occupied"] == 0  # never below zero
