"""Exports over HTTP: bad input is 422 naming the field (and writes nothing), access per role, the job function
(the worker's code, called in process with the test's clock), retention and the purge sweeper."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import h3
import httpx
import pytest
from sqlalchemy import text

from analytics.exports.jobs import purge_expired_exports, run_export_job
from analytics.exports.places import cell_id
from api.app import create_app
from core.clock import ManualClock
from core.context import AppContext, build_context
from core.settings import Settings
from tests.conftest import make_settings
from tests.exports_world import DAY_FROM, DAY_TO, LAT_A, LNG_A, build_export_world
from tests.factories import UserFactory
from tests.procs import free_port

AFTER_THE_DAY = datetime(2026, 1, 8, 12, 0, tzinfo=UTC)
BODY = {"kind": "occupancy", "from": DAY_FROM, "to": DAY_TO, "group_by": "lot", "format": "csv"}


@pytest.fixture
def settings(db_url: str, redis_prefix: str, tmp_path: Path) -> Settings:
    return make_settings(database_url=db_url, redis_prefix=redis_prefix, celery_queue=f"q{redis_prefix}",
                         export_dir=str(tmp_path / "exports"), export_retention_hours=24)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(AFTER_THE_DAY)


async def _count(ctx: AppContext) -> int:
    async with ctx.engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM exports")) or 0)


async def _run(ctx: AppContext, export_id: str) -> str:
    return await run_export_job(engine=ctx.engine, settings=ctx.settings, clock=ctx.clock,
                                export_id=uuid.UUID(export_id))


BAD_INPUT: list[tuple[dict[str, Any], str]] = [
    ({"to": DAY_FROM}, "from"),                                    # from not before to
    ({"from": DAY_TO, "to": DAY_FROM}, "from"),
    ({"from": "2025-01-01T00:00:00Z", "to": "2026-01-03T00:00:00Z"}, "to"),  # 367 days
    ({"kind": "revenue"}, "kind"),
    ({"format": "xlsx"}, "format"),
    ({"group_by": "street"}, "group_by"),
    ({"group_by": "h3", "h3_res": 5}, "h3_res"),
    ({"group_by": "h3", "h3_res": 11}, "h3_res"),
    ({"h3_res": 8}, "h3_res"),                                     # h3_res only with group_by=h3
    ({"from": "2026-01-06T00:00:00"}, "from"),                     # no offset
    ({"min_sessions": 0}, "min_sessions"),
    ({"min_sessions": 9}, "min_sessions"),                         # a planner may not lower the threshold
    ({"bbox": [10, 50, 9, 51]}, "bbox"),
]


async def test_bad_input_is_422_naming_the_field_and_writes_nothing(
        client: httpx.AsyncClient, ctx: AppContext, users: UserFactory) -> None:
    planner = await users.create("planner")
    for change, field in BAD_INPUT:
        res = await client.post("/api/v1/exports", headers=planner.headers, json={**BODY, **change})
        assert res.status_code == 422, (change, res.text)
        assert res.headers["content-type"].startswith("application/problem+json")
        assert field in [loc for e in res.json()["errors"] for loc in e["loc"]], (change, res.json())
    assert await _count(ctx) == 0


async def test_a_366_day_range_is_accepted(client: httpx.AsyncClient, users: UserFactory) -> None:
    # control for the range rule: exactly 366 days passes
    planner = await users.create("planner")
    res = await client.post("/api/v1/exports", headers=planner.headers,
                            json={**BODY, "from": "2025-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"})
    assert res.status_code == 202, res.text


async def test_access_per_role(client: httpx.AsyncClient, ctx: AppContext, users: UserFactory) -> None:
    planner, other_planner = await users.create("planner"), await users.create("planner")
    op_a, op_b = await users.create("operator"), await users.create("operator")
    driver = await users.create("driver")
    assert op_a.organisation_id and op_b.organisation_id
    world = await build_export_world(ctx, org_a=op_a.organisation_id, org_b=op_b.organisation_id)

    assert (await client.post("/api/v1/exports", json=BODY)).status_code == 401
    assert (await client.post("/api/v1/exports", headers=driver.headers, json=BODY)).status_code == 403
    # an operator names another organisation's lot: 404, as if it did not exist (and nothing is written)
    res = await client.post("/api/v1/exports", headers=op_a.headers, json={**BODY, "lot_ids": [str(world.lot_b)]})
    assert res.status_code == 404 and await _count(ctx) == 0
    res = await client.post("/api/v1/exports", headers=planner.headers, json={**BODY, "lot_ids": [str(uuid.uuid4())]})
    assert res.status_code == 404

    mine = (await client.post("/api/v1/exports", headers=planner.headers, json=BODY)).json()["id"]
    theirs = (await client.post("/api/v1/exports", headers=op_a.headers, json={**BODY, "min_sessions": 1})).json()["id"]
    assert (await client.get(f"/api/v1/exports/{mine}", headers=planner.headers)).status_code == 200
    for who in (other_planner, op_a, op_b):
        assert (await client.get(f"/api/v1/exports/{mine}", headers=who.headers)).status_code == 404
    assert (await client.get(f"/api/v1/exports/{mine}", headers=driver.headers)).status_code == 403
    assert (await client.get(f"/api/v1/exports/{uuid.uuid4()}", headers=planner.headers)).status_code == 404
    listed = (await client.get("/api/v1/exports", headers=planner.headers)).json()
    assert [e["id"] for e in listed["items"]] == [mine] and listed["next_cursor"] is None
    assert (await client.get("/api/v1/exports", headers=other_planner.headers)).json()["items"] == []
    assert (await client.get("/api/v1/exports", headers=driver.headers)).status_code == 403

    # planners see every lot, operators their own only (the worker's function, in process)
    assert await _run(ctx, mine) == "done" and await _run(ctx, theirs) == "done"
    places = {}
    for export_id, who in ((mine, planner), (theirs, op_a)):
        body = (await client.get(f"/api/v1/exports/{export_id}", headers=who.headers)).json()
        url = urlsplit(body["download_url"])
        data = (await client.get(f"{url.path}?{url.query}")).text
        places[who.email] = {r["curb_place_id"] for r in csv.DictReader(io.StringIO(data))}
    assert places[planner.email] == {str(world.lot_a), str(world.lot_b)}
    assert places[op_a.email] == {str(world.lot_a)}


async def test_a_duplicated_task_writes_once_and_a_dead_workers_job_is_claimed_again(
        client: httpx.AsyncClient, ctx: AppContext, users: UserFactory, clock: ManualClock) -> None:
    planner = await users.create("planner")
    export_id = (await client.post("/api/v1/exports", headers=planner.headers, json=BODY)).json()["id"]
    async with ctx.engine.begin() as conn:  # a worker claimed it and died
        await conn.execute(text("UPDATE exports SET status = 'running', updated_at = :t WHERE id = :id"),
                           {"t": clock.now(), "id": export_id})
    assert await _run(ctx, export_id) == "skipped"  # control: a live worker's job is left alone
    clock.advance(seconds=ctx.settings.export_stale_seconds + 1)
    assert await _run(ctx, export_id) == "done"
    assert await _run(ctx, export_id) == "skipped"  # the redelivered task of a finished export does nothing


async def test_a_job_that_fails_is_recorded_failed_and_leaves_no_file(
        client: httpx.AsyncClient, ctx: AppContext, users: UserFactory, settings: Settings) -> None:
    planner = await users.create("planner")
    export_id = (await client.post("/api/v1/exports", headers=planner.headers, json=BODY)).json()["id"]
    blocker = Path(settings.export_dir)
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the export directory should be")
    assert await _run(ctx, export_id) == "failed"
    body = (await client.get(f"/api/v1/exports/{export_id}", headers=planner.headers)).json()
    assert body["status"] == "failed" and body["download_url"] is None and body["error"]
    assert list(blocker.parent.iterdir()) == [blocker]
    blocker.unlink()
    assert await _run(ctx, export_id) == "skipped"  # failed is final: a redelivered task does not retry it


async def test_links_expire_and_files_are_purged_after_retention(
        client: httpx.AsyncClient, ctx: AppContext, users: UserFactory, clock: ManualClock) -> None:
    planner = await users.create("planner")
    export_id = (await client.post("/api/v1/exports", headers=planner.headers, json=BODY)).json()["id"]
    assert await _run(ctx, export_id) == "done"
    body = (await client.get(f"/api/v1/exports/{export_id}", headers=planner.headers)).json()
    assert body["rows"] == 0 and body["status"] == "done"  # no lots: a header-only file
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert expires_at == clock.now() + timedelta(hours=24)
    url = urlsplit(body["download_url"])
    link = f"{url.path}?{url.query}"
    res = await client.get(link)
    assert res.status_code == 200 and res.text.startswith("curb_place_type,curb_place_id,metric_type,date,hour,value,")
    path = Path(ctx.settings.export_dir) / f"{export_id}.csv"
    assert path.exists()

    assert await purge_expired_exports(engine=ctx.engine, now=expires_at - timedelta(seconds=1)) == 0
    assert path.exists()  # control: not before its time
    assert await purge_expired_exports(engine=ctx.engine, now=expires_at) == 1
    assert not path.exists()
    assert (await client.get(link)).status_code == 410  # the link is still valid; the file is gone
    body = (await client.get(f"/api/v1/exports/{export_id}", headers=planner.headers)).json()
    assert body["download_url"] is None
    assert await purge_expired_exports(engine=ctx.engine, now=expires_at) == 0  # idempotent

    clock.advance(seconds=ctx.settings.export_link_ttl_seconds + 1)
    assert (await client.get(link)).status_code == 403  # the link itself expired


async def test_an_unreachable_broker_is_503_and_the_export_is_marked_failed(
        ctx: AppContext, users: UserFactory, redis_prefix: str, db_url: str, tmp_path: Path) -> None:
    planner = await users.create("planner")
    dead = make_settings(database_url=db_url, redis_prefix=redis_prefix, export_dir=str(tmp_path),
                         broker_url=f"redis://127.0.0.1:{free_port()}/0")
    dead_ctx = build_context(dead, clock=ctx.clock)
    try:
        app = create_app(dead, context=dead_ctx)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            res = await http.post("/api/v1/exports", headers=planner.headers, json=BODY)
    finally:
        await dead_ctx.aclose()
    assert res.status_code == 503, res.text
    async with ctx.engine.connect() as conn:
        assert (await conn.execute(text("SELECT status FROM exports"))).scalars().all() == ["failed"]


async def test_a_planner_exports_any_area_by_bbox_and_sessions_by_cell(
        client: httpx.AsyncClient, ctx: AppContext, users: UserFactory) -> None:
    planner = await users.create("planner")
    op_a, op_b = await users.create("operator"), await users.create("operator")
    assert op_a.organisation_id and op_b.organisation_id
    world = await build_export_world(ctx, org_a=op_a.organisation_id, org_b=op_b.organisation_id)

    async def export(body: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, str]]]:
        export_id = (await client.post("/api/v1/exports", headers=planner.headers, json=body)).json()["id"]
        assert await _run(ctx, export_id) == "done"
        status = (await client.get(f"/api/v1/exports/{export_id}", headers=planner.headers)).json()
        url = urlsplit(status["download_url"])
        return status, list(csv.DictReader(io.StringIO((await client.get(f"{url.path}?{url.query}")).text)))

    # a box around lot A only (lot B is ~250 m north-east)
    _, rows = await export({**BODY, "bbox": [LNG_A - 0.001, LAT_A - 0.001, LNG_A + 0.001, LAT_A + 0.001]})
    assert {r["curb_place_id"] for r in rows} == {str(world.lot_a)}
    # both lots' sessions in one r6 cell: 19 completed sessions, listed under the cell's id, not the lots'
    status, rows = await export({**BODY, "kind": "sessions", "group_by": "h3", "h3_res": 6})
    cell = h3.latlng_to_cell(LAT_A, LNG_A, 6)
    assert status["rows"] == 19 and status["suppressed"] == 0 and len(rows) == 19
    assert {(r["place_type"], r["h3_cell"], r["curb_place_id"]) for r in rows} == {("h3_cell", cell, cell_id(cell))}
    # at r10 the lots are in different cells: lot B's cell (9 sessions) is left out and counted as suppressed
    status, rows = await export({**BODY, "kind": "sessions", "group_by": "h3", "h3_res": 10})
    assert status["rows"] == 10 and status["suppressed"] == 9
    assert {r["h3_cell"] for r in rows} == {h3.latlng_to_cell(LAT_A, LNG_A, 10)}
