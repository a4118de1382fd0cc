"""The walk-in extension sweeper: extends on the same spot while it is free, flags an overstay risk when not."""

from __future__ import annotations

from datetime import timedelta

import httpx

from booking.runtime import slot_store
from booking.wiring import booking_deps
from controllers import walkins
from controllers.tasks import extend_walk_ins_task
from core.clock import ManualClock
from core.context import AppContext
from tests.api.test_gates_world import event, gate_lot, post_event, rows, scalar
from tests.booking_helpers import overlapping_pairs


async def test_walk_in_is_extended_on_its_spot_while_free(client: httpx.AsyncClient, ctx: AppContext,
                                                          clock: ManualClock) -> None:
    gl = await gate_lot(ctx, spots={"regular": 2}, walk_in_horizon_minutes=60)
    await post_event(client, gl, gl.entry, event(ctx, plate="STAY1"))
    before = (await rows(ctx, "SELECT id, spot_id, ends_at FROM reservations"))[0]
    deps = booking_deps(ctx)
    assert (await walkins.extend_walk_ins(deps=deps, now=clock.now())).extended == 0  # 60 min left > 30 min lead
    clock.advance(minutes=40)
    report = await walkins.extend_walk_ins(deps=deps, now=clock.now())
    assert (report.extended, report.at_risk) == (1, 0)
    after = (await rows(ctx, "SELECT spot_id, ends_at FROM reservations WHERE id = :id", id=before.id))[0]
    assert after.spot_id == before.spot_id and after.ends_at == before.ends_at + timedelta(minutes=60)
    assert (await walkins.extend_walk_ins(deps=deps, now=clock.now())).extended == 0  # idempotent
    # Redis knows: only one spot is free over the extension.
    start = clock.now() + timedelta(minutes=30)
    free = await slot_store(ctx).free_count(lot_id=str(gl.lot_id), vehicle_type="regular", starts_at=start,
                                            ends_at=start + timedelta(minutes=15))
    assert free == 1
    # and the exit frees the extension too
    out = await post_event(client, gl, gl.exit, event(ctx, plate="STAY1"))
    assert out["decision"] in ("open", "pay")
    if out["decision"] == "pay":
        await post_event(client, gl, gl.exit, event(ctx, plate="STAY1"))
    free = await slot_store(ctx).free_count(lot_id=str(gl.lot_id), vehicle_type="regular", starts_at=start,
                                            ends_at=start + timedelta(minutes=15))
    assert free == 2


async def test_walk_in_that_cannot_be_extended_is_flagged_as_overstay_risk(
        client: httpx.AsyncClient, ctx: AppContext, clock: ManualClock, users) -> None:  # type: ignore[no-untyped-def]
    op = await users.create("operator")
    gl = await gate_lot(ctx, spots={"regular": 1}, walk_in_horizon_minutes=60, organisation_id=op.organisation_id)
    await post_event(client, gl, gl.entry, event(ctx, plate="STAY2"))
    from booking import holds

    start = clock.now() + timedelta(minutes=60)
    await holds.hold(deps=booking_deps(ctx), user_id=None, lot_id=gl.lot_id, vehicle_type="regular",
                     starts_at=start, ends_at=start + timedelta(hours=2), plate="NEXT1", now=clock.now(),
                     status="confirmed")
    clock.advance(minutes=40)
    report = await walkins.extend_walk_ins(deps=booking_deps(ctx), now=clock.now())
    assert (report.extended, report.at_risk) == (0, 1)
    assert await scalar(ctx, "SELECT overstay_risk_at IS NOT NULL FROM parking_sessions")
    assert await overlapping_pairs(ctx.engine) == 0
    headers = users.headers_for(op.id, op.role, op.organisation_id)
    body = (await client.get(f"/api/v1/lots/{gl.lot_id}/violations", headers=headers)).json()
    assert [v["kind"] for v in body["items"]] == ["overstay_risk"]


def test_extension_task_is_registered() -> None:
    from cli.processes import BEAT_SCHEDULE, TASK_MODULES

    assert "controllers.tasks" in TASK_MODULES
    assert any(job["task"] == extend_walk_ins_task.name for job in BEAT_SCHEDULE.values())
