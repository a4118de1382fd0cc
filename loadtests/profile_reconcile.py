"""Where a rebuild's time goes: PostgreSQL read, bitmap build, Redis write, lot after lot.

    python -m loadtests.bench_reconcile            # seeds parkgrid_bench_reconcile once, times the whole run
    python -m loadtests.profile_reconcile          # then this: per-phase wall and CPU of this process

Runs the phases of booking.reconcile.rebuild_lot one after the other for every lot (no overlap
between lots, unlike reconcile), into an empty Redis prefix that is deleted afterwards. Wall time
includes waiting for PostgreSQL and Redis; CPU is this process's only, so it is the figure to trust
on a busy machine. The write phase is SlotStore.rebuild_lot minus its own bitmap build.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

from sqlalchemy import text

from booking import slotbuild
from booking.reconcile import _days, read_lot
from booking.runtime import slot_store
from booking.slots import TYPE_INDEX, abs_day
from core.context import build_context
from loadtests.bench_reconcile import DAY0, settings


class Phase:
    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Phase:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu


async def main() -> None:
    prefix = f"profile-reconcile-{uuid.uuid4().hex[:8]}"
    ctx = build_context(settings(prefix))
    read, build, store_call = Phase(), Phase(), Phase()
    rows = 0
    try:
        slots = slot_store(ctx)
        async with ctx.engine.connect() as conn:
            ids = [r.id for r in await conn.execute(text("SELECT id FROM lots ORDER BY id"))]
        days = _days(DAY0 + timedelta(hours=1), 30)
        for lot_id in ids:
            with read:
                truth = await read_lot(engine=ctx.engine, lot_id=lot_id, days=days)
            assert truth is not None
            rows += len(truth.occupancy.spot)
            with build:
                slotbuild.day_images(truth.occupancy, [TYPE_INDEX[s.type] for s in truth.spots],
                                     [abs_day(d) for d in days])
            with store_call:
                await slots.rebuild_lot(lot_id=str(lot_id), spots=truth.spots, occupancy=truth.occupancy,
                                        strategy=truth.allocation_strategy, ev_overflow=truth.ev_overflow, days=days)
        keys = [k async for k in ctx.redis.scan_iter(match=f"{prefix}:*", count=5000)]
        for i in range(0, len(keys), 1000):
            await ctx.redis.delete(*keys[i:i + 1000])
    finally:
        await ctx.aclose()
    print(f"{len(ids)} lots, {len(days)} days, {rows} occupancy rows; seconds (wall / this process's CPU):")
    for name, wall, cpu in (("read PostgreSQL", read.wall, read.cpu), ("build bitmaps", build.wall, build.cpu),
                            ("write Redis", store_call.wall - build.wall, store_call.cpu - build.cpu)):
        print(f"  {name:<16} {wall:6.2f} / {cpu:6.2f}")


if __name__ == "__main__":
    asyncio.run(main())
