"""Reservations over HTTP: hold, confirm, cancel, read, with the docs/api.md contract."""

from datetime import timedelta

import httpx
from sqlalchemy import text

from core.clock import ManualClock
from core.context import AppContext
from tests.booking_helpers import fixed_pricer, overlapping_pairs
from tests.factories import UserFactory, insert_lot


async def _lot(ctx: AppContext, **spots: int) -> str:
    async with ctx.engine.begin() as conn:
        return str(await insert_lot(conn, spots=spots or {"regular": 3}))


def _body(lot: str, clock: ManualClock, *, plate: str = "AB 123 CD", hours: float = 2, start_h: float = 1,
          vehicle_type: str = "regular") -> dict[str, object]:
    start = clock.now() + timedelta(hours=start_h)
    return {"lot_id": lot, "vehicle_type": vehicle_type, "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=hours)).isoformat(), "plate": plate}


async def test_hold_confirm_cancel_round_trip(client: httpx.AsyncClient, ctx: AppContext, users: UserFactory,
                                              clock: ManualClock) -> None:
    ctx.extras["pricer"] = fixed_pricer(1250)
    lot = await _lot(ctx)
    driver = await users.create()
    res = await client.post("/api/v1/reservations", json=_body(lot, clock), headers=driver.headers)
    assert res.status_code == 201, res.text
    held = res.json()
    assert held["status"] == "held" and held["lot_id"] == lot
    assert set(held["spot"]) == {"id", "label", "level"}
    assert held["price"] == {"amount": 1250, "currency": "usd"}
    assert held["payment"]["provider"] == "local" and held["payment"]["client_secret"].startswith("pi_local_")
    assert held["access"]["qr_token"].startswith("pgq1.")
    assert held["plate"] == "AB123CD"
    assert held["hold_expires_at"] == (clock.now() + timedelta(seconds=900)).isoformat().replace("+00:00", "Z") \
        or held["hold_expires_at"].startswith((clock.now() + timedelta(seconds=900)).strftime("%Y-%m-%dT%H:%M"))

    declined = await client.post(f"/api/v1/reservations/{held['id']}/confirm",
                                 json={"payment_token": "pm_card_chargeDeclined"}, headers=driver.headers)
    assert declined.status_code == 402 and declined.json()["type"].endswith("/payment-failed")
    assert (await client.get(f"/api/v1/reservations/{held['id']}", headers=driver.headers)).json()["status"] == "held"

    ok = await client.post(f"/api/v1/reservations/{held['id']}/confirm", json={"payment_token": "pm_card_visa"},
                           headers=driver.headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "confirmed" and ok.json()["payment"]["status"] == "requires_capture"

    again = await client.post(f"/api/v1/reservations/{held['id']}/confirm", json={"payment_token": "pm_card_visa"},
                              headers=driver.headers)
    assert again.status_code == 409 and again.json()["type"].endswith("/invalid-transition")

    cancelled = await client.post(f"/api/v1/reservations/{held['id']}/cancel", headers=driver.headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["refund"] == {"amount": 1250, "currency": "usd"}

    listing = await client.get("/api/v1/me/reservations", headers=driver.headers)
    assert [r["id"] for r in listing.json()["items"]] == [held["id"]]
    assert listing.json()["next_cursor"] is None


async def test_sold_out_and_plate_conflict_are_distinct_409s(client: httpx.AsyncClient, ctx: AppContext,
                                                             users: UserFactory, clock: ManualClock) -> None:
    lot = await _lot(ctx, regular=1)
    a, b = await users.create(), await users.create()
    assert (await client.post("/api/v1/reservations", json=_body(lot, clock, plate="AAA1"),
                              headers=a.headers)).status_code == 201
    sold = await client.post("/api/v1/reservations", json=_body(lot, clock, plate="BBB2"), headers=b.headers)
    assert sold.status_code == 409 and sold.json()["type"].endswith("/sold-out")
    lot2 = await _lot(ctx, regular=2)
    plate = await client.post("/api/v1/reservations", json=_body(lot2, clock, plate="aaa-1"), headers=b.headers)
    assert plate.status_code == 409 and plate.json()["type"].endswith("/plate-conflict")


async def test_someone_elses_reservation_is_404(client: httpx.AsyncClient, ctx: AppContext, users: UserFactory,
                                                clock: ManualClock) -> None:
    lot = await _lot(ctx)
    owner, other = await users.create(), await users.create()
    rid = (await client.post("/api/v1/reservations", json=_body(lot, clock), headers=owner.headers)).json()["id"]
    for method, path in (("GET", f"/api/v1/reservations/{rid}"), ("POST", f"/api/v1/reservations/{rid}/cancel")):
        res = await client.request(method, path, headers=other.headers)
        assert res.status_code == 404, (method, path)
    res = await client.post(f"/api/v1/reservations/{rid}/confirm", json={"payment_token": "pm_card_visa"},
                            headers=other.headers)
    assert res.status_code == 404


async def test_unpaid_hold_limit_is_429(client: httpx.AsyncClient, ctx: AppContext, users: UserFactory,
                                        clock: ManualClock) -> None:
    lot = await _lot(ctx, regular=10)
    driver = await users.create()
    for i in range(ctx.settings.max_holds_per_user):
        res = await client.post("/api/v1/reservations", json=_body(lot, clock, plate=f"CAR{i}"), headers=driver.headers)
        assert res.status_code == 201
    res = await client.post("/api/v1/reservations", json=_body(lot, clock, plate="CAR9"), headers=driver.headers)
    assert res.status_code == 429 and "Retry-After" in res.headers


async def test_idempotency_key_replays_and_refuses_other_body(client: httpx.AsyncClient, ctx: AppContext,
                                                              users: UserFactory, clock: ManualClock) -> None:
    lot = await _lot(ctx, regular=5)
    driver = await users.create()
    headers = {**driver.headers, "Idempotency-Key": "k-1"}
    first = await client.post("/api/v1/reservations", json=_body(lot, clock), headers=headers)
    second = await client.post("/api/v1/reservations", json=_body(lot, clock), headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    async with ctx.engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM reservations")) == 1
    other = await client.post("/api/v1/reservations", json=_body(lot, clock, hours=3), headers=headers)
    assert other.status_code == 422 and other.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]


async def test_bad_windows_name_the_field(client: httpx.AsyncClient, ctx: AppContext, users: UserFactory,
                                          clock: ManualClock) -> None:
    lot = await _lot(ctx)
    driver = await users.create()
    body = _body(lot, clock)
    body["ends_at"], body["starts_at"] = body["starts_at"], body["ends_at"]
    res = await client.post("/api/v1/reservations", json=body, headers=driver.headers)
    assert res.status_code == 422 and res.json()["errors"][0]["loc"] == ["body", "ends_at"]
    res = await client.post("/api/v1/reservations", json=_body(lot, clock, hours=24 * 8), headers=driver.headers)
    assert res.status_code == 422 and res.json()["errors"][0]["loc"] == ["body", "ends_at"]
    res = await client.post("/api/v1/reservations", json=_body(lot, clock, start_h=-3), headers=driver.headers)
    assert res.status_code == 422 and res.json()["errors"][0]["loc"] == ["body", "starts_at"]
    res = await client.post("/api/v1/reservations", json=_body(lot, clock, vehicle_type="tank"), headers=driver.headers)
    assert res.status_code == 422 and ["body", "vehicle_type"] in [e["loc"] for e in res.json()["errors"]]
    naive = _body(lot, clock)
    naive["starts_at"] = str(naive["starts_at"])[:19]
    res = await client.post("/api/v1/reservations", json=naive, headers=driver.headers)
    assert res.status_code == 422 and ["body", "starts_at"] in [e["loc"] for e in res.json()["errors"]]
    assert await overlapping_pairs(ctx.engine) == 0


async def test_availability_counts_and_widens(client: httpx.AsyncClient, ctx: AppContext, users: UserFactory,
                                              clock: ManualClock) -> None:
    lot = await _lot(ctx, regular=3, compact=1)
    driver = await users.create()
    await client.post("/api/v1/reservations", json=_body(lot, clock), headers=driver.headers)
    start = clock.now() + timedelta(hours=1, minutes=7)
    res = await client.get(f"/api/v1/lots/{lot}/availability", params={
        "vehicle_type": "compact", "starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=1)).isoformat()})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["available"] == 3  # the compact car took the compact spot first? no: a regular car took a regular
    assert body["starts_at"].startswith((clock.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    assert body["freshness"]["source"] == "bitmap"


async def test_extend_only_if_free_and_shorten_frees_slots(client: httpx.AsyncClient, ctx: AppContext,
                                                           users: UserFactory, clock: ManualClock) -> None:
    lot = await _lot(ctx, regular=1)
    a, b = await users.create(), await users.create()
    first = (await client.post("/api/v1/reservations", json=_body(lot, clock, plate="EXT1", hours=2),
                               headers=a.headers)).json()
    later = _body(lot, clock, plate="EXT2", hours=1, start_h=4)
    assert (await client.post("/api/v1/reservations", json=later, headers=b.headers)).status_code == 201
    start = clock.now() + timedelta(hours=1)

    def window(hours: float) -> dict[str, str]:
        return {"starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=hours)).isoformat()}

    ok = await client.patch(f"/api/v1/reservations/{first['id']}", json=window(3), headers=a.headers)
    assert ok.status_code == 200 and ok.json()["ends_at"].startswith((start + timedelta(hours=3)).strftime("%Y-%m-%dT%H"))
    clash = await client.patch(f"/api/v1/reservations/{first['id']}", json=window(3.5), headers=a.headers)
    assert clash.status_code == 409 and clash.json()["type"].endswith("/sold-out")
    shorter = await client.patch(f"/api/v1/reservations/{first['id']}", json=window(1), headers=a.headers)
    assert shorter.status_code == 200
    freed = await client.get(f"/api/v1/lots/{lot}/availability", params={
        "vehicle_type": "regular", "starts_at": (start + timedelta(hours=1)).isoformat(),
        "ends_at": (start + timedelta(hours=2)).isoformat()})
    assert freed.json()["available"] == 1 and freed.json()["freshness"]["source"] == "bitmap"
    other = await client.patch(f"/api/v1/reservations/{first['id']}", json=window(2), headers=b.headers)
    assert other.status_code == 404
    assert await overlapping_pairs(ctx.engine) == 0
