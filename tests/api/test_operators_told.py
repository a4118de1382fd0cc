"""Operators are told: a card leaving a spot type unpriced is refused; sensors map to spots by label or by an
explicit mapping, and an unknown sensor's event is rejected with its reason (issue 20)."""

from __future__ import annotations

import uuid

import httpx

from core.clock import ManualClock
from core.context import AppContext
from tests.factories import UserFactory, device_key_for, insert_lot
from tests.pricing_helpers import card


async def _lot(ctx: AppContext, users: UserFactory, **spots: int):  # type: ignore[no-untyped-def]
    op = await users.create("operator")
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, organisation_id=op.organisation_id, spots=spots or {"regular": 2})
        key = await device_key_for(conn, lot)
    return op, lot, {"X-Device-Key": key}


async def test_a_card_leaving_a_spot_type_unpriced_is_refused(client: httpx.AsyncClient, ctx: AppContext,
                                                              users: UserFactory) -> None:
    op, lot, _ = await _lot(ctx, users, regular=2, ev=1, handicap=1)
    only_regular = card()
    for rule in only_regular["rules"]:
        rule["spot_types"] = ["regular"]
    res = await client.put(f"/api/v1/lots/{lot}/rates", json=only_regular, headers=op.headers)
    assert res.status_code == 422 and res.headers["content-type"].startswith("application/problem+json")
    assert res.json()["errors"][0]["loc"] == ["body", "rules"]
    assert res.json()["unpriced_spot_types"] == ["ev", "handicap"] and "ev, handicap" in res.json()["detail"]
    assert (await client.get(f"/api/v1/lots/{lot}/rates", headers=op.headers)).status_code == 404  # nothing stored

    for rule in only_regular["rules"]:
        rule["spot_types"] = ["regular", "ev", "handicap"]
    assert (await client.put(f"/api/v1/lots/{lot}/rates", json=only_regular, headers=op.headers)).status_code == 200


def _ev(event_id: str, sensor: str, clock: ManualClock) -> dict[str, object]:
    return {"event_id": event_id, "sensor_id": sensor, "state": "occupied", "confidence": 0.95,
            "occurred_at": clock.now().isoformat()}


async def test_unknown_sensor_is_rejected_until_it_is_mapped(client: httpx.AsyncClient, ctx: AppContext,
                                                             users: UserFactory, clock: ManualClock) -> None:
    op, lot, device = await _lot(ctx, users, regular=2)
    url = f"/api/v1/lots/{lot}/sensor-events"
    res = await client.post(url, headers=device, json={"events": [_ev("a1", "L0-001", clock),
                                                                   _ev("b1", "bay-sensor-77", clock)]})
    assert res.status_code == 202
    body = res.json()
    assert body["accepted"] == 1  # named by its spot's label
    assert [r["event_id"] for r in body["rejected"]] == ["b1"]
    assert body["rejected"][0]["reason"].startswith("unknown sensor")
    async with ctx.engine.connect() as conn:
        from sqlalchemy import text

        assert await conn.scalar(text("SELECT count(*) FROM sensors WHERE lot_id = :l"), {"l": lot}) == 1

    bad = await client.put(f"/api/v1/lots/{lot}/sensors/bay-sensor-77", headers=op.headers,
                           json={"spot_label": "no-such-spot"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["body", "spot_label"]
    mapped = await client.put(f"/api/v1/lots/{lot}/sensors/bay-sensor-77", headers=op.headers,
                              json={"spot_label": "L0-002"})
    assert mapped.status_code == 200, mapped.text
    assert mapped.json()["spot"]["label"] == "L0-002" and mapped.json()["sensor_id"] == "bay-sensor-77"

    # the same event, resent, is now applied (a rejected event was not remembered as seen)
    again = await client.post(url, headers=device, json={"events": [_ev("b1", "bay-sensor-77", clock)]})
    assert again.json() == {"accepted": 1, "duplicates": 0, "rejected": [], "ignored": []}
    other = await client.put(f"/api/v1/lots/{lot}/sensors/bay-sensor-77", headers=op.headers,
                             json={"spot_label": "L0-001"})
    assert other.status_code == 409
    driver = await users.create()
    assert (await client.put(f"/api/v1/lots/{lot}/sensors/x", headers=driver.headers,
                             json={"spot_label": "L0-001"})).status_code == 403
    assert (await client.put(f"/api/v1/lots/{uuid.uuid4()}/sensors/x", headers=op.headers,
                             json={"spot_label": "L0-001"})).status_code == 404
