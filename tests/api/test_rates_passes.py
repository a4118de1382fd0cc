"""Monthly passes: operators sell them; active_pass finds the plate's pass for the lot's current month."""

from datetime import UTC, datetime

import httpx

from core.context import AppContext
from core.security import normalise_plate, plate_hash
from pricing.passes import active_pass
from tests.factories import UserFactory, insert_lot
from tests.pricing_helpers import give_card


async def test_sell_list_find_and_cancel_a_pass(client: httpx.AsyncClient, ctx: AppContext, users: UserFactory) -> None:
    op = await users.create("operator")
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, organisation_id=op.organisation_id)  # America/Los_Angeles
        await give_card(conn, lot, monthly_pass_amount=15000)
    url = f"/api/v1/lots/{lot}/passes"
    res = await client.post(url, json={"plate": "ab-12 cd", "month": "2030-02"}, headers=op.headers)
    assert res.status_code == 201, res.text
    assert res.json()["price"] == {"amount": 15000, "currency": "usd"} and res.json()["month"] == "2030-02"
    dup = await client.post(url, json={"plate": "AB12CD", "month": "2030-02"}, headers=op.headers)
    assert dup.status_code == 409
    assert (await client.post(url, json={"plate": "X1", "month": "2030-13"}, headers=op.headers)).status_code == 422
    assert (await client.post(url, json={"plate": "X1", "month": "2030-02"},
                              headers=(await users.create()).headers)).status_code == 403
    listing = await client.get(url, params={"month": "2030-02"}, headers=op.headers)
    assert [p["id"] for p in listing.json()["items"]] == [res.json()["id"]]

    h = plate_hash(ctx.settings.secret_bytes, normalise_plate("AB12CD"))
    async with ctx.engine.connect() as conn:
        # 2030-03-01 07:00 UTC is still February 28th in Los Angeles
        assert await active_pass(conn, lot_id=lot, plate_hash=h, now=datetime(2030, 3, 1, 7, tzinfo=UTC)) is not None
        assert await active_pass(conn, lot_id=lot, plate_hash=h, now=datetime(2030, 3, 1, 9, tzinfo=UTC)) is None
        assert await active_pass(conn, lot_id=lot, plate_hash=h, now=datetime(2030, 1, 31, 9, tzinfo=UTC)) is None
    cancelled = await client.post(f"{url}/{res.json()['id']}/cancel", headers=op.headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    async with ctx.engine.connect() as conn:
        assert await active_pass(conn, lot_id=lot, plate_hash=h, now=datetime(2030, 2, 10, tzinfo=UTC)) is None
