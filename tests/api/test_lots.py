"""The lot registry over HTTP: create, read, change, close, spots in and out of service, scoping."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.factories import UserFactory

LOT = {
    "name": "Civic Center Garage", "address": "355 McAllister St", "location": {"lat": 37.7807, "lng": -122.4177},
    "timezone": "America/Los_Angeles",
    "levels": [{"name": "B1", "spots": [{"type": "regular", "count": 8}, {"type": "ev", "count": 2}]},
               {"name": "B2", "spots": [{"type": "compact", "count": 3}, {"type": "handicap", "count": 1}]}],
    "gates": [{"name": "North entry", "direction": "entry"}, {"name": "North exit", "direction": "exit"}],
    "amenities": ["covered", "ev_charging"], "opening_hours": "Mo-Fr 06:00-22:00; Sa,Su 08:00-20:00",
    "height_limit_cm": 210, "kind": "underground",
}


async def test_create_read_update_close(client: httpx.AsyncClient, users: UserFactory) -> None:
    op = await users.create("operator")
    res = await client.post("/api/v1/lots", json=LOT, headers=op.headers)
    assert res.status_code == 201, res.text
    lot = res.json()
    assert lot["capacity"] == 14 and lot["location"] == {"lat": 37.7807, "lng": -122.4177}
    assert [(lv["name"], lv["capacity"]) for lv in lot["levels"]] == [("B1", 10), ("B2", 4)]
    assert sorted(g["direction"] for g in lot["gates"]) == ["entry", "exit"]
    assert lot["h3_r7"] and lot["h3_r9"] and lot["status"] == "open"

    detail = (await client.get(f"/api/v1/lots/{lot['id']}")).json()
    assert detail["availability"]["by_type"]["regular"] == {"capacity": 8, "available": 8}
    assert detail["availability"]["freshness"]["source"] == "database"
    assert [lv["name"] for lv in detail["levels_availability"]] == ["B1", "B2"]
    assert detail["levels_availability"][1]["by_type"]["handicap"] == {"capacity": 1, "available": 1}

    res = await client.patch(f"/api/v1/lots/{lot['id']}", headers=op.headers,
                             json={"name": "Civic Garage", "opening_hours": None, "amenities": ["covered"],
                                   "location": {"lat": 37.79, "lng": -122.40}})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["name"] == "Civic Garage" and body["opening_hours"] is None and body["amenities"] == ["covered"]
    assert body["height_limit_cm"] == 210 and body["h3_r9"] != lot["h3_r9"]

    closed = await client.post(f"/api/v1/lots/{lot['id']}/close", headers=op.headers)
    assert closed.json()["status"] == "closed"
    reopened = await client.post(f"/api/v1/lots/{lot['id']}/open", headers=op.headers)
    assert reopened.json()["status"] == "open"
    mine = (await client.get("/api/v1/lots", headers=op.headers)).json()
    assert [x["id"] for x in mine["items"]] == [lot["id"]]


async def test_spots_in_and_out_of_service_change_availability(client: httpx.AsyncClient,
                                                                users: UserFactory) -> None:
    op = await users.create("operator")
    lot = (await client.post("/api/v1/lots", json=LOT, headers=op.headers)).json()
    spots = (await client.get(f"/api/v1/lots/{lot['id']}/spots", headers=op.headers,
                              params={"limit": 5})).json()
    assert [s["idx"] for s in spots["items"]] == [0, 1, 2, 3, 4] and spots["next_cursor"] == "4"
    rest = (await client.get(f"/api/v1/lots/{lot['id']}/spots", headers=op.headers,
                             params={"cursor": spots["next_cursor"], "limit": 100})).json()
    assert [s["idx"] for s in rest["items"]] == list(range(5, 14)) and rest["next_cursor"] is None
    ids = [s["id"] for s in spots["items"][:3]]
    res = await client.post(f"/api/v1/lots/{lot['id']}/spots/status", headers=op.headers,
                            json={"spot_ids": ids, "status": "out_of_service"})
    assert res.json() == {"changed": 3}
    avail = (await client.get(f"/api/v1/lots/{lot['id']}/availability", params={"vehicle_type": "regular"})).json()
    assert avail["available"] == 5 and avail["quote"] is None
    res = await client.post(f"/api/v1/lots/{lot['id']}/spots/status", headers=op.headers,
                            json={"spot_ids": [*ids, str(uuid.uuid4())], "status": "in_service"})
    assert res.status_code == 422 and res.json()["errors"][0]["loc"] == ["body", "spot_ids"]
    b2 = lot["levels"][1]["id"]
    res = await client.post(f"/api/v1/lots/{lot['id']}/spots", headers=op.headers,
                            json={"level_id": b2, "type": "large", "count": 4})
    assert res.status_code == 201 and res.json()["capacity"] == 18
    listing = (await client.get(f"/api/v1/lots/{lot['id']}/spots", headers=op.headers,
                                params={"level_id": b2})).json()
    assert [s["label"] for s in listing["items"] if s["type"] == "large"] == [f"B2-{i:04d}" for i in range(15, 19)]
    avail = (await client.get(f"/api/v1/lots/{lot['id']}/availability", params={"vehicle_type": "regular"})).json()
    assert avail["available"] == 9  # 5 regular in service + 4 large


async def test_operators_see_only_their_lots_and_drivers_are_refused(client: httpx.AsyncClient,
                                                                     users: UserFactory) -> None:
    op, other, driver, admin = (await users.create("operator"), await users.create("operator"),
                                await users.create("driver"), await users.create("admin"))
    lot = (await client.post("/api/v1/lots", json=LOT, headers=op.headers)).json()
    assert (await client.patch(f"/api/v1/lots/{lot['id']}", json={"name": "x"}, headers=other.headers)).status_code \
        == 404
    assert (await client.post(f"/api/v1/lots/{lot['id']}/close", headers=other.headers)).status_code == 404
    assert (await client.get(f"/api/v1/lots/{lot['id']}/spots", headers=other.headers)).status_code == 404
    assert (await client.post("/api/v1/lots", json=LOT, headers=driver.headers)).status_code == 403
    assert (await client.post("/api/v1/lots", json=LOT)).status_code == 401
    assert (await client.patch(f"/api/v1/lots/{lot['id']}", json={"name": "Admin"}, headers=admin.headers)).json()[
        "name"] == "Admin"
    res = await client.post("/api/v1/lots", json=LOT, headers=admin.headers)
    assert res.status_code == 422 and res.json()["errors"][0]["loc"] == ["body", "organisation_id"]
    res = await client.post("/api/v1/lots", json={**LOT, "organisation_id": str(op.organisation_id)},
                            headers=admin.headers)
    assert res.status_code == 201
    assert len((await client.get("/api/v1/lots", headers=op.headers)).json()["items"]) == 2


@pytest.mark.parametrize(("patch", "loc"), [
    ({"location": {"lat": 91, "lng": 0}}, ["body", "location", "lat"]),
    ({"location": {"lat": 0, "lng": -180.5}}, ["body", "location", "lng"]),
    ({"timezone": "Mars/Olympus"}, ["body", "timezone"]),
    ({"amenities": ["jacuzzi"]}, ["body", "amenities", 0]),
    ({"opening_hours": "whenever"}, ["body", "opening_hours"]),
    ({"levels": []}, ["body", "levels"]),
    ({"levels": [{"name": "A", "spots": [{"type": "spaceship", "count": 1}]}]},
     ["body", "levels", 0, "spots", 0, "type"]),
    ({"levels": [{"name": "A", "spots": [{"type": "regular", "count": 0}]}]},
     ["body", "levels", 0, "spots", 0, "count"]),
    ({"gates": [{"name": "G", "direction": "sideways"}]}, ["body", "gates", 0, "direction"]),
    ({"height_limit_cm": -5}, ["body", "height_limit_cm"]),
])
async def test_bad_lot_bodies_name_the_field(client: httpx.AsyncClient, users: UserFactory,
                                             patch: dict[str, object], loc: list[object]) -> None:
    op = await users.create("operator")
    res = await client.post("/api/v1/lots", json={**LOT, **patch}, headers=op.headers)
    assert res.status_code == 422, res.text
    assert res.headers["content-type"] == "application/problem+json"
    assert loc in [e["loc"] for e in res.json()["errors"]]


async def test_unknown_lot_is_404(client: httpx.AsyncClient, users: UserFactory) -> None:
    op = await users.create("operator")
    missing = uuid.uuid4()
    for res in (await client.get(f"/api/v1/lots/{missing}"),
                await client.get(f"/api/v1/lots/{missing}/availability", params={"vehicle_type": "ev"}),
                await client.patch(f"/api/v1/lots/{missing}", json={"name": "x"}, headers=op.headers)):
        assert res.status_code == 404 and res.json()["type"].endswith("/not-found")
    assert (await client.get("/api/v1/lots/not-a-uuid")).status_code == 422
