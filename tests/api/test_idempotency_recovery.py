"""A retry with its Idempotency-Key always learns the outcome (docs/adr/0015).

A request is interrupted at each step: it stops there for good, as a worker that died (its coroutine is parked
and never resumed while the client retries; no clean-up runs), or its database connections are killed under
it. The retry with the same key and body then gets the hold (the first answer, replayed) or a definite
refusal, never "in progress" for longer than the lock timeout. Negative controls: the previous protocol (key
claimed in its own transaction before the hold) and a claim that cannot be taken over leave the key "in
progress" for good.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

import api.idempotency as idem
from api.app import create_app
from api.routers import reservations as routes
from booking import holds, transitions
from booking.holdwriter import HoldWriter
from booking.sweepers import expire_idempotency_keys
from booking.wiring import booking_deps
from core.clock import ManualClock
from core.context import AppContext
from core.settings import Settings
from tests.booking_helpers import fixed_pricer
from tests.factories import UserFactory, insert_lot


@pytest.fixture
async def http(settings: Settings, ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    """The app over ASGI, answering 500 problem+json for unhandled errors as a server would."""
    app = create_app(settings, context=ctx)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
            yield client


class Interruption:
    """Parks the first call of a patched function for good (a worker that died there); later calls run."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.calls = 0
        self._never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def stop_first(self) -> None:
        self.calls += 1
        if self.calls == 1:
            self.reached.set()
            await self._never


def stop_before(interrupt: Interruption, real: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def patched(*args: Any, **kwargs: Any) -> Any:
        await interrupt.stop_first()
        return await real(*args, **kwargs)

    return patched


def stop_after(interrupt: Interruption, real: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def patched(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        await interrupt.stop_first()
        return result

    return patched


async def _setup(ctx: AppContext, users: UserFactory, clock: ManualClock, *,
                 spots: int = 4) -> tuple[dict[str, str], dict[str, Any]]:
    ctx.extras["pricer"] = fixed_pricer(900)
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": spots})
    driver = await users.create()
    start = clock.now() + timedelta(hours=2)
    body = {"lot_id": str(lot), "vehicle_type": "regular", "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=2)).isoformat(), "plate": "KEY 123"}
    return {**driver.headers, "Idempotency-Key": f"k-{uuid.uuid4().hex[:8]}"}, body


async def _rows(ctx: AppContext) -> tuple[int, list[str]]:
    async with ctx.engine.connect() as conn:
        holds = await conn.scalar(text("SELECT count(*) FROM reservations WHERE status = 'held'"))
        points = list((await conn.execute(text("SELECT recovery_point FROM idempotency_keys"))).scalars())
    return int(holds or 0), points


async def _interrupted(http: httpx.AsyncClient, interrupt: Interruption, headers: dict[str, str],
                       body: dict[str, Any], path: str = "/api/v1/reservations") -> asyncio.Task[httpx.Response]:
    first = asyncio.create_task(http.post(path, json=body, headers=headers))
    await asyncio.wait_for(interrupt.reached.wait(), 10)
    return first


async def _abandon(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


STEPS = {
    # Redis has given the hold a spot; the write (and so the key) is not made yet
    "before-the-write": lambda i, mp: mp.setattr(HoldWriter, "write", stop_before(i, HoldWriter.write)),
    # the hold and its key are committed, nothing answered
    "after-the-insert": lambda i, mp: mp.setattr(HoldWriter, "write", stop_after(i, HoldWriter.write)),
    # the hold is done (written, Redis and payment bookkeeping over), its answer not built yet
    "before-the-response": lambda i, mp: mp.setattr(holds, "hold_reservation",
                                                    stop_after(i, holds.hold_reservation)),
}


@pytest.mark.parametrize("step", list(STEPS))
async def test_a_hold_interrupted_at_each_step_is_answered_on_retry(
        http: httpx.AsyncClient, ctx: AppContext, users: UserFactory, clock: ManualClock,
        monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    headers, body = await _setup(ctx, users, clock)
    interrupt = Interruption()
    STEPS[step](interrupt, monkeypatch)
    first = await _interrupted(http, interrupt, headers, body)
    try:
        retry = await http.post("/api/v1/reservations", json=body, headers=headers)
        again = await http.post("/api/v1/reservations", json=body, headers=headers)
    finally:
        await _abandon(first)
    assert retry.status_code == again.status_code == 201, retry.text
    assert retry.json() == again.json() and again.headers["Idempotent-Replayed"] == "true"
    held = retry.json()
    assert held["status"] == "held" and held["price"] == {"amount": 900, "currency": "usd"}
    assert held["payment"]["client_secret"].startswith("pi_local_") and held["access"]["qr_token"]
    async with ctx.engine.connect() as conn:
        ids = list((await conn.execute(text("SELECT id FROM reservations"))).scalars())
    assert [str(i) for i in ids] == [held["id"]]  # one hold, the one answered
    assert await _rows(ctx) == (1, ["hold_written"])
    if step != "before-the-write":  # the first request had written it: the retry was a replay
        assert retry.headers["Idempotent-Replayed"] == "true"
    read = await http.get(f"/api/v1/reservations/{held['id']}", headers=headers)
    assert {k: read.json()[k] for k in ("id", "status", "spot", "price", "plate")} == \
        {k: held[k] for k in ("id", "status", "spot", "price", "plate")}


async def test_a_hold_whose_connection_dies_mid_write_leaves_its_key_unused(
        http: httpx.AsyncClient, ctx: AppContext, users: UserFactory, clock: ManualClock) -> None:
    """The hold's statement is kept waiting inside PostgreSQL (another transaction holds the same key,
    uncommitted) and its backend is terminated there: the write dies half-way, and nothing of it remains."""
    headers, body = await _setup(ctx, users, clock)
    async with ctx.engine.connect() as conn:
        user_id = await conn.scalar(text("SELECT id FROM users ORDER BY created_at DESC LIMIT 1"))
    async with ctx.engine.connect() as blocker:
        tx = await blocker.begin()
        await blocker.execute(text(
            "INSERT INTO idempotency_keys (scope, key, request_hash, recovery_point, locked_at, created_at)"
            " VALUES (:scope, :key, 'x', 'started', now(), now())"),
            {"scope": f"{user_id}:POST:/reservations", "key": headers["Idempotency-Key"]})
        first = asyncio.create_task(http.post("/api/v1/reservations", json=body, headers=headers))
        killed = None
        for _ in range(200):
            async with ctx.engine.connect() as admin:
                killed = await admin.scalar(text(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query LIKE 'WITH r%'"  # HOLD_WRITE(_MANY): only its start is kept
                    " AND pid <> pg_backend_pid()"))
            if killed:
                break
            await asyncio.sleep(0.02)
        await tx.rollback()
    answer = await first
    assert killed and answer.status_code >= 500, answer.text
    assert await _rows(ctx) == (0, [])  # neither the hold nor its key
    retry = await http.post("/api/v1/reservations", json=body, headers=headers)
    assert retry.status_code == 201, retry.text
    assert await _rows(ctx) == (1, ["hold_written"])


async def test_keyed_holds_ride_the_batched_write_and_a_key_sent_twice_at_once_holds_once(
        http: httpx.AsyncClient, ctx: AppContext, users: UserFactory, clock: ManualClock) -> None:
    ctx.extras["pricer"] = fixed_pricer(0)
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 40})
    drivers = [await users.create() for _ in range(4)]
    start = clock.now() + timedelta(hours=1)

    def body(n: int) -> dict[str, Any]:
        return {"lot_id": str(lot), "vehicle_type": "regular", "starts_at": start.isoformat(),
                "ends_at": (start + timedelta(hours=1)).isoformat(), "plate": f"B{n:03d}"}

    calls = [(drivers[n % 4], n) for n in range(12)] + [(drivers[0], 0)] * 3  # key 0 sent four times at once
    answers = await asyncio.gather(*(http.post("/api/v1/reservations", json=body(n),
                                               headers={**d.headers, "Idempotency-Key": f"batch-{n}"})
                                     for d, n in calls))
    assert [a.status_code for a in answers] == [201] * len(calls), [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 12
    assert {a.json()["id"] for a in (answers[0], *answers[12:])} == {answers[0].json()["id"]}
    assert await _rows(ctx) == (12, ["hold_written"] * 12)
    writer = booking_deps(ctx).writer
    assert writer is not None and writer.holds >= 12 and writer.batches < writer.holds  # batched


async def test_keys_expire_after_their_ttl(ctx: AppContext, http: httpx.AsyncClient, users: UserFactory,
                                          clock: ManualClock) -> None:
    headers, body = await _setup(ctx, users, clock)
    assert (await http.post("/api/v1/reservations", json=body, headers=headers)).status_code == 201
    deps = booking_deps(ctx)
    assert await expire_idempotency_keys(deps=deps, now=clock.now() + timedelta(hours=23)) == 0
    assert await expire_idempotency_keys(deps=deps, now=clock.now() + timedelta(hours=24, seconds=1)) == 1
    assert await _rows(ctx) == (1, [])


async def _confirm_setup(http: httpx.AsyncClient, ctx: AppContext, users: UserFactory,
                         clock: ManualClock) -> tuple[dict[str, str], str]:
    headers, body = await _setup(ctx, users, clock)
    held = await http.post("/api/v1/reservations", json=body, headers={k: v for k, v in headers.items()
                                                                      if k != "Idempotency-Key"})
    assert held.status_code == 201
    return headers, f"/api/v1/reservations/{held.json()['id']}/confirm"


CONFIRM_STEPS = {
    # the key is claimed ('started'), the payment not authorised yet
    "after-the-key-is-recorded": lambda i, mp: mp.setattr(transitions, "confirm", stop_before(i, transitions.confirm)),
    # confirmed and committed, the answer not stored
    "after-the-effect": lambda i, mp: mp.setattr(transitions, "confirm", stop_after(i, transitions.confirm)),
}


@pytest.mark.parametrize("guard", ["lock-timeout", "negative-control-no-takeover"])
@pytest.mark.parametrize("step", list(CONFIRM_STEPS))
async def test_a_confirm_interrupted_is_recovered_after_the_lock_timeout(
        http: httpx.AsyncClient, ctx: AppContext, users: UserFactory, clock: ManualClock,
        monkeypatch: pytest.MonkeyPatch, step: str, guard: str) -> None:
    if guard != "lock-timeout":  # the previous claim: a key whose request died is never taken over
        monkeypatch.setattr(idem, "_CLAIM", text(
            "INSERT INTO idempotency_keys (scope, key, request_hash, recovery_point, locked_at, created_at)"
            " VALUES (:scope, :key, :hash, 'started', :now, :now) ON CONFLICT (scope, key) DO NOTHING"
            " RETURNING locked_at, true AS inserted, CAST(:stale AS timestamptz)"))
    headers, path = await _confirm_setup(http, ctx, users, clock)
    pay = {"payment_token": "pm_card_visa"}
    interrupt = Interruption()
    CONFIRM_STEPS[step](interrupt, monkeypatch)
    first = await _interrupted(http, interrupt, headers, pay, path)
    try:
        busy = await http.post(path, json=pay, headers=headers)
        assert busy.status_code == 409 and busy.json()["type"].endswith("/idempotency-key-in-progress")
        assert 1 <= int(busy.headers["Retry-After"]) <= ctx.settings.idempotency_lock_timeout_seconds
        clock.advance(seconds=ctx.settings.idempotency_lock_timeout_seconds + 1)
        retry = await http.post(path, json=pay, headers=headers)
        clock.advance(minutes=10)
        later = await http.post(path, json=pay, headers=headers)
    finally:
        await _abandon(first)
    if guard != "lock-timeout":
        assert retry.status_code == later.status_code == 409
        assert later.json()["type"].endswith("/idempotency-key-in-progress")  # for good
        return
    # the retry confirmed it, or found it confirmed by the request that died; that answer is replayed afterwards
    assert retry.status_code == later.status_code == 200 and retry.json()["status"] == "confirmed"
    assert later.headers.get("Idempotent-Replayed") == "true" and later.json() == retry.json()
    # without a key, a second confirm is still an impossible transition
    plain = await http.post(path, json=pay, headers={k: v for k, v in headers.items() if k != "Idempotency-Key"})
    assert plain.status_code == 409 and plain.json()["type"].endswith("/invalid-transition")
    async with ctx.engine.connect() as conn:
        assert await conn.scalar(text("SELECT status FROM reservations")) == "confirmed"


async def test_negative_control_the_key_claimed_before_the_hold_stays_in_progress(
        http: httpx.AsyncClient, ctx: AppContext, users: UserFactory, clock: ManualClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The previous protocol: the key claimed in its own transaction, the hold written, the answer stored in a
    third. Interrupted after the hold's insert, its retries answer 'in progress' for good."""

    async def claim_first(ctx_: AppContext, *, scope: str, key: str | None, body: Any,
                          handler: Callable[..., Awaitable[tuple[int, dict[str, Any]]]], render: Any) -> Any:
        assert key is not None
        return await idem.run_idempotent(ctx_, scope=scope, key=key, body=body, handler=lambda: handler(None))

    monkeypatch.setattr(routes, "run_keyed_hold", claim_first)
    monkeypatch.setattr(idem, "_CLAIM", text(  # without a lock that times out
        "INSERT INTO idempotency_keys (scope, key, request_hash, recovery_point, locked_at, created_at)"
        " VALUES (:scope, :key, :hash, 'started', :now, :now) ON CONFLICT (scope, key) DO NOTHING"
        " RETURNING locked_at, true AS inserted, CAST(:stale AS timestamptz)"))
    headers, body = await _setup(ctx, users, clock)
    interrupt = Interruption()
    STEPS["after-the-insert"](interrupt, monkeypatch)
    first = await _interrupted(http, interrupt, headers, body)
    try:
        answers = []
        for _ in range(3):
            answers.append(await http.post("/api/v1/reservations", json=body, headers=headers))
            clock.advance(minutes=5)
    finally:
        await _abandon(first)
    assert [a.status_code for a in answers] == [409] * 3
    assert all(a.json()["type"].endswith("/idempotency-key-in-progress") for a in answers)
    assert await _rows(ctx) == (1, ["started"])  # a hold nobody was told about


@pytest.mark.parametrize("age_s", [5, 3600], ids=["locked", "lock-timed-out"])
async def test_a_hold_key_left_in_progress_by_the_previous_protocol_is_taken_over(
        http: httpx.AsyncClient, ctx: AppContext, users: UserFactory, clock: ManualClock, age_s: int) -> None:
    """Rows the previous protocol left unanswered are 'started' rows after migration 0010: 409 with Retry-After
    while locked, taken over (the hold runs) once the lock has timed out."""
    headers, body = await _setup(ctx, users, clock)
    digest = idem.request_hash(routes.HoldIn.model_validate(body).model_dump(mode="json"))  # as the route hashes
    async with ctx.engine.begin() as conn:
        user_id = await conn.scalar(text("SELECT id FROM users ORDER BY created_at DESC LIMIT 1"))
        await conn.execute(text(
            "INSERT INTO idempotency_keys (scope, key, request_hash, recovery_point, locked_at, created_at)"
            " VALUES (:scope, :key, :hash, 'started', :at, :at)"),
            {"scope": f"{user_id}:POST:/reservations", "key": headers["Idempotency-Key"],
             "hash": digest, "at": clock.now() - timedelta(seconds=age_s)})
    res = await http.post("/api/v1/reservations", json=body, headers=headers)
    if age_s < ctx.settings.idempotency_lock_timeout_seconds:
        assert res.status_code == 409 and res.json()["type"].endswith("/idempotency-key-in-progress")
        assert int(res.headers["Retry-After"]) == ctx.settings.idempotency_lock_timeout_seconds - age_s
        assert await _rows(ctx) == (0, ["started"])
    else:
        assert res.status_code == 201, res.text
        assert await _rows(ctx) == (1, ["hold_written"])
