"""A Hypothesis state machine over the reservation lifecycle on real PostgreSQL and Redis.

Invariants after every step: no two occupying reservations overlap on a spot; Redis' free count
is within [0, capacity] and equals PostgreSQL's; terminal states never change.
"""

import asyncio
import contextlib
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import text

from booking import holds, sweepers, transitions
from booking import lifecycle as lc
from booking.availability import free_count
from booking.deps import make_window
from booking.wiring import booking_deps
from core.clock import ManualClock
from core.context import build_context
from core.errors import InvalidTransition, PaymentFailed, PlateConflict, SoldOut
from core.settings import Settings
from tests.booking_helpers import overlapping_pairs
from tests.conftest import make_settings
from tests.factories import insert_lot

CAPACITY = 3
PLATES = ("AA1", "BB2", "CC3", "DD4", "EE5")


def make_machine(db_url: str, prefix: str) -> type[RuleBasedStateMachine]:
    class Lifecycle(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.clock = ManualClock()
            self.ctx = build_context(make_settings(database_url=db_url, redis_prefix=f"{prefix}{uuid.uuid4().hex[:6]}"),
                                     clock=self.clock)
            self.deps = booking_deps(self.ctx)
            self.base = self.clock.now() + timedelta(hours=1)
            self.lot = self.run(self._setup())
            self.known: dict[uuid.UUID, str] = {}

        def run(self, coro: Any) -> Any:
            return self.loop.run_until_complete(coro)

        async def _setup(self) -> uuid.UUID:
            async with self.ctx.engine.begin() as conn:
                await conn.execute(text("TRUNCATE reservations, payments CASCADE"))
                return await insert_lot(conn, spots={"regular": CAPACITY}, no_show_grace_minutes=30)

        def teardown(self) -> None:
            self.run(self.ctx.aclose())
            self.loop.close()

        def _in(self, status: str) -> list[uuid.UUID]:
            return [rid for rid, s in self.known.items() if s == status]  # creation order

        async def _sync(self) -> None:
            async with self.ctx.engine.connect() as conn:
                rows = await conn.execute(text("SELECT id, status FROM reservations"))
                fresh = {r.id: r.status for r in rows}
            for rid, old in self.known.items():
                if old in lc.TERMINAL:
                    assert fresh[rid] == old, f"terminal {old} became {fresh[rid]}"
                else:
                    assert fresh[rid] == old or lc.can_transition(old, fresh[rid])
            # keep discovery order (a step creates at most one reservation), so picks by index replay exactly
            self.known = {**{rid: fresh[rid] for rid in self.known}, **{rid: st_ for rid, st_ in fresh.items()
                                                                        if rid not in self.known}}

        @rule(slot=st.integers(0, 6), length=st.integers(1, 6), plate=st.sampled_from(PLATES))
        def hold(self, slot: int, length: int, plate: str) -> None:
            start = self.base + timedelta(minutes=15 * slot)
            try:
                self.run(holds.hold(deps=self.deps, user_id=None, lot_id=self.lot, vehicle_type="regular",
                                    starts_at=start, ends_at=start + timedelta(minutes=15 * length), plate=plate,
                                    now=self.clock.now()))
            except (SoldOut, PlateConflict):
                pass
            except Exception as exc:  # a window already in the past is a clean 422
                assert "starts_at is in the past" in str(exc)
            self.run(self._sync())

        def _pick(self, statuses: tuple[str, ...], i: int) -> uuid.UUID:
            # an index, not a drawn id: ids are random per run, so drawing among them would make the
            # strategy itself non-deterministic (Hypothesis' FlakyStrategyDefinition)
            candidates = [rid for status in statuses for rid in self._in(status)]
            return candidates[i % len(candidates)]

        @precondition(lambda self: self._in(lc.HELD))
        @rule(i=st.integers(0, 30), card=st.sampled_from(("pm_card_visa", "pm_card_visa", "pm_card_chargeDeclined")))
        def confirm(self, i: int, card: str) -> None:
            rid = self._pick((lc.HELD,), i)
            with contextlib.suppress(PaymentFailed, InvalidTransition, Exception):
                self.run(transitions.confirm(deps=self.deps, reservation_id=rid, user_id=None, payment_token=card,
                                             now=self.clock.now()))
            self.run(self._sync())

        @precondition(lambda self: self._in(lc.HELD) + self._in(lc.CONFIRMED))
        @rule(i=st.integers(0, 30))
        def cancel(self, i: int) -> None:
            rid = self._pick((lc.HELD, lc.CONFIRMED), i)
            self.run(transitions.cancel(deps=self.deps, reservation_id=rid, user_id=None, now=self.clock.now()))
            self.run(self._sync())

        @precondition(lambda self: self._in(lc.CONFIRMED))
        @rule(i=st.integers(0, 30))
        def enter(self, i: int) -> None:
            rid = self._pick((lc.CONFIRMED,), i)
            self.run(transitions.check_in(deps=self.deps, reservation_id=rid, now=self.clock.now()))
            self.run(self._sync())

        @precondition(lambda self: self._in(lc.ACTIVE))
        @rule(i=st.integers(0, 30))
        def leave(self, i: int) -> None:
            rid = self._pick((lc.ACTIVE,), i)
            self.run(transitions.check_out(deps=self.deps, reservation_id=rid, now=self.clock.now()))
            self.run(self._sync())

        @rule(minutes=st.sampled_from((5, 15, 40)))
        def time_passes_and_sweepers_run(self, minutes: int) -> None:
            self.clock.advance(minutes=minutes)
            self.run(sweepers.expire_holds(deps=self.deps, now=self.clock.now()))
            self.run(sweepers.mark_no_shows(deps=self.deps, now=self.clock.now()))
            self.run(self._sync())

        @rule(redis_dies=st.booleans())
        def toggle_redis(self, redis_dies: bool) -> None:
            self.deps = replace(self.deps, use_redis=not redis_dies)

        @invariant()
        def no_overlap_and_counts_agree(self) -> None:
            assert self.run(overlapping_pairs(self.ctx.engine)) == 0
            if not self.deps.use_redis:
                return
            for slot in range(0, 10, 3):
                start = self.base + timedelta(minutes=15 * slot)
                if start < self.clock.now():
                    continue
                window = make_window(start, start + timedelta(minutes=30), now=self.clock.now(),
                                     max_span=timedelta(days=7))
                redis_count = self.run(free_count(deps=self.deps, lot_id=self.lot, vehicle_type="regular",
                                                  window=window, now=self.clock.now()))
                pg_count = self.run(free_count(deps=replace(self.deps, slots=None), lot_id=self.lot,
                                               vehicle_type="regular", window=window, now=self.clock.now()))
                assert 0 <= redis_count.available <= CAPACITY
                assert redis_count.available == pg_count.available

    return Lifecycle


@pytest.mark.timeout(600)
def test_reservation_lifecycle_state_machine(settings: Settings) -> None:
    machine = make_machine(settings.database_url, settings.redis_prefix)
    run = machine.TestCase
    run.settings = __import__("hypothesis").settings(max_examples=40, stateful_step_count=30, deadline=None,
                                                     suppress_health_check=list(HealthCheck))
    run().runTest()
