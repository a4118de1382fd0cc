"""Redis memory of the slot layer: bytes per spot per day, extrapolated to 1M spots x 30 days.

    python -m loadtests.redis_memory [--spots 500] [--url redis://127.0.0.1:6379/0]

Fills one lot-day so that every spot has a booking (the bitmap is fully materialised: the
worst case for a lazily created key), reads MEMORY USAGE, and deletes its keys afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from datetime import UTC, date, datetime, timedelta

import redis.asyncio as aioredis

from booking.slotbuild import Occupancy
from booking.slots import SpotInfo
from booking.slotstore import SlotStore
from core.keys import Keys

DAY = date(2030, 1, 7)
T0 = datetime(2030, 1, 7, tzinfo=UTC)
TYPES = ["regular"] * 6 + ["compact"] * 2 + ["large", "motorcycle", "ev", "handicap"]
BUDGET = 1 << 30


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("PARKGRID_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--spots", type=int, default=500, help="spots in the sample lot (a typical lot size)")
    parser.add_argument("--total-spots", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    client = aioredis.Redis.from_url(args.url)
    prefix = "mem" + uuid.uuid4().hex[:12]
    store = SlotStore(client, Keys(prefix))
    lot = str(uuid.uuid4())
    spots = [SpotInfo(i, TYPES[i % len(TYPES)], level=i % 4, rank=i) for i in range(args.spots)]
    try:
        rows = [(s.idx, T0 + timedelta(hours=8 + s.idx % 8), T0 + timedelta(hours=12 + s.idx % 8)) for s in spots]
        await store.rebuild_lot(lot_id=lot, spots=spots, occupancy=Occupancy.from_windows(rows), strategy="nearest_entrance",
                                ev_overflow=False, days=[DAY])
        # One live hold record, to show what each in-flight hold costs.
        await client.set(store.keys.hold(lot, "probe"), b"0 2 20300107:32:40")
        usage = await store.memory_report(lot_id=lot, day=DAY)
        hold_bytes = int(await client.memory_usage(store.keys.hold(lot, "probe"), samples=0) or 0)
        per_lot_day = usage["bitmap"] + usage["counters"]
        per_spot_day = per_lot_day / args.spots
        lots = args.total_spots / args.spots
        meta_keys = [store.keys.candidates(lot, vt) for vt in ("motorcycle", "compact", "regular", "large", "ev", "handicap")]
        meta_bytes = usage["meta"] + usage["spot_types"]
        for key in meta_keys:
            meta_bytes += int(await client.memory_usage(key, samples=0) or 0)
        day_total = per_spot_day * args.total_spots * args.days
        meta_total = meta_bytes * lots
        print(f"sample lot: {args.spots} spots, one fully booked day")
        for name, value in usage.items():
            print(f"  {name:<11} {value:>9,} B")
        print(f"  hold record {hold_bytes:>9,} B each (only while a hold is live)")
        print(f"bitmap+counters per lot-day: {per_lot_day:,} B -> {per_spot_day:.2f} B per spot per day "
              f"(raw bitmap alone: 12 B)")
        print(f"metadata per lot (meta, spot types, 6 candidate lists): {meta_bytes:,} B "
              f"-> {meta_bytes / args.spots:.1f} B per spot, once")
        print(f"{args.total_spots:,} spots x {args.days} days in lots of {args.spots}: "
              f"days {day_total / 2**20:,.0f} MiB + metadata {meta_total / 2**20:,.0f} MiB = "
              f"{(day_total + meta_total) / 2**20:,.0f} MiB of a {BUDGET / 2**20:,.0f} MiB budget")
    finally:
        batch = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if batch:
            await client.delete(*batch)
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
