"""PUT/GET /lots/{id}/rates: operators of the lot only, validated, overlaps and gaps name the rule."""

import httpx

from core.context import AppContext
from tests.factories import UserFactory, insert_lot
from tests.pricing_helpers import card


async def _operated_lot(ctx: AppContext, users: UserFactory):  # type: ignore[no-untyped-def]
    op = await users.create("operator")
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, organisation_id=op.organisation_id)
    return op, str(lot)


async def test_put_then_get_returns_the_card_and_bumps_the_version(client: httpx.AsyncClient, ctx: AppContext,
                                                                   users: UserFactory) -> None:
    op, lot = await _operated_lot(ctx, users)
    assert (await client.get(f"/api/v1/lots/{lot}/rates", headers=op.headers)).status_code == 404
    res = await client.put(f"/api/v1/lots/{lot}/rates", json=card(), headers=op.headers)
    assert res.status_code == 200, res.text
    assert res.headers["etag"] == '"v1"'
    assert res.json()["rules"][0]["from"] == "07:00" and res.json()["capture"] == "at_exit"
    again = await client.put(f"/api/v1/lots/{lot}/rates", json=card(no_show_fee=700), headers=op.headers)
    assert again.headers["etag"] == '"v2"'
    got = await client.get(f"/api/v1/lots/{lot}/rates", headers=op.headers)
    assert got.status_code == 200 and got.json()["no_show_fee"] == 700 and got.headers["etag"] == '"v2"'
    # what GET returns can be PUT back unchanged
    assert (await client.put(f"/api/v1/lots/{lot}/rates", json=got.json(), headers=op.headers)).status_code == 200


async def test_overlap_and_gap_are_422_naming_the_rule(client: httpx.AsyncClient, ctx: AppContext,
                                                       users: UserFactory) -> None:
    op, lot = await _operated_lot(ctx, users)
    overlapping = card()
    overlapping["rules"][1]["from"] = "18:00"
    res = await client.put(f"/api/v1/lots/{lot}/rates", json=overlapping, headers=op.headers)
    assert res.status_code == 422
    assert res.headers["content-type"].startswith("application/problem+json")
    assert res.json()["errors"][0]["loc"] == ["body", "rules", 1]
    assert "overlaps rule 0 'day'" in res.json()["detail"]

    gapped = card()
    gapped["rules"][1]["from"] = "20:00"
    res = await client.put(f"/api/v1/lots/{lot}/rates", json=gapped, headers=op.headers)
    assert res.status_code == 422 and res.json()["errors"][0]["loc"][:2] == ["body", "rules"]
    assert "gap: nothing covers 19:00-20:00" in res.json()["detail"]


async def test_field_errors_list_each_bad_field(client: httpx.AsyncClient, ctx: AppContext, users: UserFactory) -> None:
    op, lot = await _operated_lot(ctx, users)
    bad = card(tax_percent="101", currency="dollars")
    bad["rules"][0]["rate_per_hour"] = -1
    res = await client.put(f"/api/v1/lots/{lot}/rates", json=bad, headers=op.headers)
    assert res.status_code == 422
    locs = {tuple(e["loc"]) for e in res.json()["errors"]}
    assert ("body", "tax_percent") in locs and ("body", "currency") in locs
    assert ("body", "rules", 0, "rate_per_hour") in locs


async def test_other_org_404_and_driver_403(client: httpx.AsyncClient, ctx: AppContext, users: UserFactory) -> None:
    _, lot = await _operated_lot(ctx, users)
    stranger, driver = await users.create("operator"), await users.create()
    assert (await client.put(f"/api/v1/lots/{lot}/rates", json=card(), headers=stranger.headers)).status_code == 404
    assert (await client.get(f"/api/v1/lots/{lot}/rates", headers=stranger.headers)).status_code == 404
    assert (await client.put(f"/api/v1/lots/{lot}/rates", json=card(), headers=driver.headers)).status_code == 403
    assert (await client.put(f"/api/v1/lots/{lot}/rates", json=card())).status_code == 401
