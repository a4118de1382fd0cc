"""Exactly once: a repeated event_id returns the first decision, sequentially and concurrently; device scoping."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

import httpx
import orjson
import pytest

from controllers import gates
from controllers import queries_gates as gq
from core.clock import ManualClock
from core.context import AppContext
from tests.api.test_gates_world import event, gate_lot, post_event, scalar


async def test_repeated_event_id_returns_the_first_decision(client: httpx.AsyncClient, ctx: AppContext,
                                                            clock: ManualClock) -> None:
    gl = await gate_lot(ctx, spots={"regular": 1})
    body = event(ctx, plate="ONCE1", event_id="gate-evt-1")
    first = await client.post(f"/api/v1/gates/{gl.entry}/events", json=body, headers=gl.headers)
    assert first.status_code == 200 and first.json()["decision"] == "open"
    assert "X-Duplicate-Event" not in first.headers
    await post_event(client, gl, gl.entry, event(ctx, plate="OTHER1"))  # the lot is now full
    clock.advance(minutes=5)
    again = await client.post(f"/api/v1/gates/{gl.entry}/events", json=body, headers=gl.headers)
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["X-Duplicate-Event"] == "true"
    assert await scalar(ctx, "SELECT count(*) FROM parking_sessions") == 1
    assert await scalar(ctx, "SELECT count(*) FROM controller_events") == 2


async def test_concurrent_copies_of_one_event_decide_once(client: httpx.AsyncClient, ctx: AppContext) -> None:
    gl = await gate_lot(ctx, spots={"regular": 5})
    body = event(ctx, plate="RACE1", event_id="gate-evt-race")
    results = await asyncio.gather(*(client.post(f"/api/v1/gates/{gl.entry}/events", json=body, headers=gl.headers)
                                     for _ in range(8)))
    assert {r.status_code for r in results} == {200}
    assert len({r.text for r in results}) == 1 and results[0].json()["decision"] == "open"
    assert sum(r.headers.get("X-Duplicate-Event") == "true" for r in results) == 7
    assert await scalar(ctx, "SELECT count(*) FROM parking_sessions") == 1
    assert await scalar(ctx, "SELECT count(*) FROM reservations WHERE kind = 'walk_in'") == 1


async def _decide_unguarded(*, deps: gates.GateDeps, lot_id: uuid.UUID, device_id: uuid.UUID | None,
                            gate_id: uuid.UUID, event: gates.GateEvent, now: datetime) -> gates.GateOutcome:
    """Check-then-act (the race the ledger prevents): the negative control's own decide, patched in by the test
    (the production code has no switch for it)."""
    gate = await gates._gate(deps, lot_id, gate_id, now)
    async with deps.slots:  # as decide: a decision holds a raw connection while its booking calls take others
        pool = await deps.pg()
        stored = await pool.fetchval(gq.LEDGER_DECISION, gate.lot_id, event.event_id)
        if stored is not None:
            return gates.GateOutcome(gates.Decision.from_json(orjson.loads(stored)), duplicate=True)
        async with pool.acquire() as conn, conn.transaction():
            run = gates._run(deps, conn, gate, event, now)
            decision, cds = await gates._decide(run)
            await conn.execute(gq.LEDGER_INSERT, *gates._ledger_row(gate, device_id, event, now))
            await conn.execute(gq.LEDGER_SET_DECISION, gate.lot_id, event.event_id, gates._json(decision.as_json()),
                               cds)
        await run.committed()
    return gates.GateOutcome(decision, duplicate=False)


async def _race(ctx: AppContext, deps: gates.GateDeps, lot_id: uuid.UUID, gate_id: uuid.UUID, device_id: uuid.UUID,
                now: datetime) -> int:
    ev = gates.GateEvent(event_id="neg-control", sequence=1, occurred_at=now, plate="RACE2", plate_confidence=0.99)
    await asyncio.gather(*(gates.decide(deps=deps, lot_id=lot_id, device_id=device_id, gate_id=gate_id, event=ev, now=now)
                           for _ in range(6)), return_exceptions=True)
    return int(await scalar(ctx, "SELECT count(*) FROM parking_sessions"))


async def test_negative_control_without_the_ledger_guard_the_race_double_books(
        ctx: AppContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """Check-then-act instead of insert-or-return: concurrent copies each book a walk-in (so the test above can fail)."""
    gl = await gate_lot(ctx, spots={"regular": 10})
    device_id = await scalar(ctx, "SELECT id FROM devices WHERE lot_id = :l", l=gl.lot_id)
    monkeypatch.setattr(gates, "decide", _decide_unguarded)
    assert await _race(ctx, gates.gate_deps(ctx), gl.lot_id, gl.entry, device_id, ctx.clock.now()) > 1


async def test_guarded_domain_race_decides_once(ctx: AppContext) -> None:
    gl = await gate_lot(ctx, spots={"regular": 10})
    device_id = await scalar(ctx, "SELECT id FROM devices WHERE lot_id = :l", l=gl.lot_id)
    assert await _race(ctx, gates.gate_deps(ctx), gl.lot_id, gl.entry, device_id, ctx.clock.now()) == 1


async def test_a_device_of_another_lot_is_refused(client: httpx.AsyncClient, ctx: AppContext) -> None:
    a, b = await gate_lot(ctx), await gate_lot(ctx)
    res = await client.post(f"/api/v1/gates/{a.entry}/events", json=event(ctx, plate="X1"), headers=b.headers)
    assert res.status_code == 404 and res.headers["content-type"].startswith("application/problem+json")
    unknown = await client.post(f"/api/v1/gates/{uuid.uuid4()}/events", json=event(ctx, plate="X1"), headers=a.headers)
    assert unknown.status_code == 404
    anonymous = await client.post(f"/api/v1/gates/{a.entry}/events", json=event(ctx, plate="X1"))
    assert anonymous.status_code == 401
    bad_key = await client.post(f"/api/v1/gates/{a.entry}/events", json=event(ctx, plate="X1"),
                                headers={"X-Device-Key": "nope"})
    assert bad_key.status_code == 401
    assert await scalar(ctx, "SELECT count(*) FROM controller_events") == 0
    ok = await post_event(client, a, a.entry, event(ctx, plate="X1"))
    assert ok["decision"] == "open"


async def test_same_event_id_in_two_lots_are_two_events(client: httpx.AsyncClient, ctx: AppContext) -> None:
    a, b = await gate_lot(ctx), await gate_lot(ctx)
    ra = await post_event(client, a, a.entry, event(ctx, plate="SAME1", event_id="shared-id"))
    rb = await post_event(client, b, b.entry, event(ctx, plate="SAME2", event_id="shared-id"))
    assert ra["session_id"] != rb["session_id"]


async def test_malformed_event_is_422(client: httpx.AsyncClient, ctx: AppContext) -> None:
    gl = await gate_lot(ctx)
    res = await client.post(f"/api/v1/gates/{gl.entry}/events", json={"event_id": "x", "sequence": 1,
                                                                     "occurred_at": "2030-01-07T08:00:00"},
                            headers=gl.headers)
    assert res.status_code == 422 and any(e["loc"][-1] == "occurred_at" for e in res.json()["errors"])
