"""SlotStore against a real Redis: holds, releases, compatibility, strategies, counters, repair."""

# ruff: noqa: F811  (fixture parameters shadow the imported fixture functions)
from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from booking.slotbuild import Occupancy
from booking.slots import SLOTS_PER_DAY, SPOT_TYPES, SpotInfo
from booking.slotstore import RepairStats, SlotStateMissing, SlotStore
from tests.slots_fixtures import (  # noqa: F401  (pytest fixtures)
    counters,
    key_prefix,
    make_spots,
    recount,
    redis_client,
    slot_store,
    spot_bits,
)

LOT = "7d0c4a4e-0000-4000-8000-000000000001"
DAY = date(2030, 1, 7)
T0 = datetime(2030, 1, 7, tzinfo=UTC)


def at(hours: float, day_offset: int = 0) -> datetime:
    return T0 + timedelta(days=day_offset, hours=hours)


async def load(store: SlotStore, types: list[str], *, strategy: str = "nearest_entrance",
               ev_overflow: bool = False, levels: int = 1) -> list[SpotInfo]:
    spots = make_spots(types, levels=levels)
    await store.load_lot(lot_id=LOT, spots=spots, strategy=strategy, ev_overflow=ev_overflow)
    return spots


async def hold(store: SlotStore, hold_id: str, start: datetime, end: datetime, vt: str = "regular", **kw: object) -> int | None:
    return await store.hold(lot_id=LOT, hold_id=hold_id, vehicle_type=vt, starts_at=start, ends_at=end, **kw)  # type: ignore[arg-type]


async def test_hold_sets_exactly_the_widened_slots_and_release_clears_them(slot_store: SlotStore) -> None:
    await load(slot_store, ["regular", "regular"])
    spot = await hold(slot_store, "h1", at(8 + 5 / 60), at(9))
    assert spot == 0
    assert await spot_bits(slot_store, LOT, DAY, 0) == [32, 33, 34, 35]
    assert await spot_bits(slot_store, LOT, DAY, 1) == []
    assert (await counters(slot_store, LOT, DAY))["regular"][32:37] == [1, 1, 1, 1, 0]
    assert await slot_store.release(lot_id=LOT, hold_id="h1") is True
    assert await spot_bits(slot_store, LOT, DAY, 0) == []
    assert sum((await counters(slot_store, LOT, DAY))["regular"]) == 0


async def test_double_release_frees_nothing_the_second_time(slot_store: SlotStore) -> None:
    await load(slot_store, ["regular"])
    assert await hold(slot_store, "h1", at(8), at(10)) == 0
    assert await slot_store.release(lot_id=LOT, hold_id="h1") is True
    # Someone else takes the same spot; a late duplicate release of h1 must not free it.
    assert await hold(slot_store, "h2", at(8), at(10)) == 0
    assert await slot_store.release(lot_id=LOT, hold_id="h1") is False
    assert await spot_bits(slot_store, LOT, DAY, 0) == list(range(32, 40))
    assert await hold(slot_store, "h3", at(9), at(9.5)) is None


async def test_overlapping_windows_conflict_adjacent_ones_do_not(slot_store: SlotStore) -> None:
    await load(slot_store, ["regular"])
    assert await hold(slot_store, "a", at(8), at(9)) == 0
    assert await hold(slot_store, "b", at(8.9), at(10)) is None  # widened to 8:45 -> overlaps
    assert await hold(slot_store, "c", at(9), at(10)) == 0  # [) bounds: touching is fine
    assert await hold(slot_store, "d", at(7), at(8)) == 0


async def test_same_hold_id_is_idempotent(slot_store: SlotStore) -> None:
    await load(slot_store, ["regular", "regular"])
    assert await hold(slot_store, "h1", at(8), at(9)) == 0
    assert await hold(slot_store, "h1", at(8), at(9)) == 0
    assert await spot_bits(slot_store, LOT, DAY, 1) == []
    assert (await counters(slot_store, LOT, DAY))["regular"][32] == 1


async def test_partial_release_frees_the_tail_only(slot_store: SlotStore) -> None:
    await load(slot_store, ["regular"])
    await hold(slot_store, "h1", at(8), at(12))
    # Leaves at 10:07: the 10:00 slot was used, release from 10:15 on.
    assert await slot_store.release(lot_id=LOT, hold_id="h1", from_=at(10 + 7 / 60)) is True
    assert await spot_bits(slot_store, LOT, DAY, 0) == list(range(32, 41))
    record = await slot_store.hold_record(lot_id=LOT, hold_id="h1")
    assert record == (0, [(DAY, 32, 41)])
    assert await hold(slot_store, "h2", at(10.25), at(12)) == 0
    # Releasing the rest later frees only what h1 still owns.
    assert await slot_store.release(lot_id=LOT, hold_id="h1") is True
    assert await spot_bits(slot_store, LOT, DAY, 0) == list(range(41, 48))


async def test_multi_day_window_uses_one_bitmap_per_day(slot_store: SlotStore) -> None:
    await load(slot_store, ["regular"])
    assert await hold(slot_store, "night", at(22), at(2, 1)) == 0
    assert await spot_bits(slot_store, LOT, DAY, 0) == list(range(88, 96))
    assert await spot_bits(slot_store, LOT, DAY + timedelta(days=1), 0) == list(range(8))
    assert await hold(slot_store, "morning", at(1.5, 1), at(3, 1)) is None
    assert await hold(slot_store, "later", at(2, 1), at(3, 1)) == 0
    # Cut in the second day: the first day stays, the second day keeps 00:00-01:00.
    assert await slot_store.release(lot_id=LOT, hold_id="night", from_=at(1, 1)) is True
    assert await spot_bits(slot_store, LOT, DAY, 0) == list(range(88, 96))
    assert await spot_bits(slot_store, LOT, DAY + timedelta(days=1), 0) == [0, 1, 2, 3, *range(8, 12)]
    # Cut before the window: everything goes.
    assert await slot_store.release(lot_id=LOT, hold_id="night", from_=at(0)) is True
    assert await spot_bits(slot_store, LOT, DAY, 0) == []
    assert await spot_bits(slot_store, LOT, DAY + timedelta(days=1), 0) == list(range(8, 12))


async def test_day_keys_expire_after_the_day(slot_store: SlotStore) -> None:
    await load(slot_store, ["regular"])
    await hold(slot_store, "h", at(8), at(9))
    expected = int((T0 + timedelta(days=2)).timestamp())  # end of day + 1 day margin
    r = slot_store.redis
    assert await r.expiretime(slot_store.keys.bitmap(LOT, DAY)) == expected
    assert await r.expiretime(slot_store.keys.booked_counters(LOT, DAY)) == expected
    ttl = await r.pttl(slot_store.keys.hold(LOT, "h"))
    assert 15 * 60_000 < ttl <= 20 * 60_000
    assert await slot_store.keep_hold(lot_id=LOT, hold_id="h", until=at(9))
    assert await r.expiretime(slot_store.keys.hold(LOT, "h")) == int(at(9).timestamp()) + 300


async def test_compatibility_motorcycle_prefers_small_spots(slot_store: SlotStore) -> None:
    # Ranks put the large spot nearest: best fit by type must still win over distance.
    await load(slot_store, ["large", "regular", "compact", "motorcycle"])
    got = [await hold(slot_store, f"m{i}", at(8), at(9), "motorcycle") for i in range(5)]
    assert got == [3, 2, 1, 0, None]


async def test_compatibility_large_only_fits_large(slot_store: SlotStore) -> None:
    await load(slot_store, ["regular", "large", "ev", "handicap"], ev_overflow=True)
    assert await hold(slot_store, "l1", at(8), at(9), "large") == 1
    assert await hold(slot_store, "l2", at(8), at(9), "large") is None


async def test_ev_spots_only_for_evs_without_overflow(slot_store: SlotStore) -> None:
    await load(slot_store, ["ev", "regular"])
    assert await hold(slot_store, "r1", at(8), at(9), "regular") == 1
    assert await hold(slot_store, "r2", at(8), at(9), "regular") is None
    assert await hold(slot_store, "e1", at(8), at(9), "ev") == 0


async def test_ev_overflow_lets_others_use_chargers_last(slot_store: SlotStore) -> None:
    await load(slot_store, ["ev", "regular"], ev_overflow=True)
    assert await hold(slot_store, "r1", at(8), at(9), "regular") == 1
    assert await hold(slot_store, "r2", at(8), at(9), "regular") == 0
    assert await hold(slot_store, "e1", at(8), at(9), "ev") is None


async def test_evs_prefer_chargers_then_regular(slot_store: SlotStore) -> None:
    await load(slot_store, ["regular", "ev"])
    assert await hold(slot_store, "e1", at(8), at(9), "ev") == 1
    assert await hold(slot_store, "e2", at(8), at(9), "ev") == 0


async def test_handicap_spots_only_with_a_permit(slot_store: SlotStore) -> None:
    await load(slot_store, ["handicap", "regular"], ev_overflow=True)
    for vt in ("motorcycle", "compact", "regular", "ev"):
        assert await slot_store.free_count(lot_id=LOT, vehicle_type=vt, starts_at=at(8), ends_at=at(9)) == 1
    assert await hold(slot_store, "r1", at(8), at(9), "regular") == 1
    assert await hold(slot_store, "r2", at(8), at(9), "regular") is None
    assert await hold(slot_store, "p1", at(8), at(9), "handicap") == 0


async def test_nearest_entrance_follows_rank(slot_store: SlotStore) -> None:
    spots = [SpotInfo(i, "regular", rank=r) for i, r in enumerate([30, 10, 20, 0])]
    await slot_store.load_lot(lot_id=LOT, spots=spots, strategy="nearest_entrance", ev_overflow=False)
    assert [await hold(slot_store, f"h{i}", at(8), at(9)) for i in range(4)] == [3, 1, 2, 0]


async def test_spread_levels_round_robins_across_levels(slot_store: SlotStore) -> None:
    await load(slot_store, ["regular"] * 6, strategy="spread_levels", levels=3)
    got = [await hold(slot_store, f"h{i}", at(8), at(9)) for i in range(6)]
    assert [g % 3 for g in got if g is not None] == [0, 1, 2, 0, 1, 2]


async def test_best_fit_plugs_gaps_before_opening_empty_spots(slot_store: SlotStore) -> None:
    await load(slot_store, ["regular"] * 3, strategy="best_fit")
    assert await hold(slot_store, "a", at(8), at(9), only_spot=2) == 2
    assert await hold(slot_store, "b", at(10), at(11), only_spot=2) == 2
    # 9:00-10:00 fits exactly between a and b on spot 2: best fit picks it over empty spot 0.
    assert await hold(slot_store, "c", at(9), at(10)) == 2
    # 11:00-12:00 touches b on spot 2; spots 0 and 1 are empty all day.
    assert await hold(slot_store, "d", at(11), at(12)) == 2
    # 15:00-16:00: spot 2's free run (12:00-24:00) is tighter than an empty day on spots 0/1.
    assert await hold(slot_store, "e", at(15), at(16)) == 2
    # Overlapping spot 2's bookings: falls back to the first empty spot in rank order.
    assert await hold(slot_store, "f", at(9.5), at(15.5)) == 0


async def test_nearest_entrance_ignores_fit(slot_store: SlotStore) -> None:
    await load(slot_store, ["regular"] * 3)
    await hold(slot_store, "a", at(8), at(9), only_spot=2)
    assert await hold(slot_store, "c", at(9), at(10)) == 0


async def test_exclude_and_only_spot(slot_store: SlotStore) -> None:
    await load(slot_store, ["regular"] * 3)
    assert await hold(slot_store, "a", at(8), at(9), exclude=[0, 1]) == 2
    assert await hold(slot_store, "b", at(8), at(9), exclude=[0, 1]) is None
    assert await hold(slot_store, "c", at(8), at(9), only_spot=1) == 1
    assert await hold(slot_store, "d", at(8), at(9), only_spot=1) is None
    assert await hold(slot_store, "e", at(8), at(9), only_spot=7) is None  # no such spot


async def test_unloaded_lot_reports_missing_state(slot_store: SlotStore) -> None:
    with pytest.raises(SlotStateMissing):
        await hold(slot_store, "h", at(8), at(9))
    with pytest.raises(SlotStateMissing):
        await slot_store.free_upper_bound(lot_id=LOT, vehicle_type="regular", starts_at=at(8), ends_at=at(9))


async def test_big_lot_uses_per_spot_reads(slot_store: SlotStore) -> None:
    # > 5461 spots: the script switches from one GET per day to GETRANGE per candidate.
    n = 6000
    await load(slot_store, ["regular"] * n)
    await slot_store.rebuild_lot(
        lot_id=LOT, spots=make_spots(["regular"] * n), strategy="nearest_entrance", ev_overflow=False,
        occupancy=Occupancy.from_windows((i, at(8), at(9)) for i in range(n - 1)), days=[DAY],
    )
    assert await slot_store.free_count(lot_id=LOT, vehicle_type="regular", starts_at=at(8), ends_at=at(9)) == 1
    assert await hold(slot_store, "h", at(8.5), at(9.5)) == n - 1
    assert await hold(slot_store, "h2", at(8.5), at(9.5)) is None


async def test_counters_stay_in_bounds_and_match_bitmaps_under_random_operations(slot_store: SlotStore) -> None:
    rng = random.Random(20300107)
    types = [rng.choice(SPOT_TYPES) for _ in range(24)]
    spots = await load(slot_store, types, ev_overflow=True, levels=3)
    caps = {t: types.count(t) for t in SPOT_TYPES}
    live: list[str] = []
    for i in range(400):
        op = rng.random()
        if op < 0.6 or not live:
            start = rng.randrange(0, 2 * 96 - 1)
            length = rng.randint(1, 24)
            hid = f"h{i}"
            spot = await hold(slot_store, hid, T0 + timedelta(minutes=15 * start),
                              T0 + timedelta(minutes=15 * (start + length)), rng.choice(SPOT_TYPES))
            if spot is not None:
                live.append(hid)
        elif op < 0.85:
            await slot_store.release(lot_id=LOT, hold_id=live.pop(rng.randrange(len(live))))
        else:
            await slot_store.release(lot_id=LOT, hold_id=rng.choice(live),
                                     from_=T0 + timedelta(minutes=rng.randrange(0, 2 * 96 * 15)))
        if i % 40 == 0 or i == 399:
            for day in (DAY, DAY + timedelta(days=1)):
                stored, actual = await counters(slot_store, LOT, day), await recount(slot_store, LOT, day, spots)
                assert stored == actual
                for t in SPOT_TYPES:
                    assert all(0 <= c <= caps[t] for c in stored[t])
            start = rng.randrange(0, 96)
            args = {"lot_id": LOT, "vehicle_type": rng.choice(SPOT_TYPES), "starts_at": T0 + timedelta(minutes=15 * start),
                        "ends_at": T0 + timedelta(minutes=15 * (start + rng.randint(1, 40)))}
            assert await slot_store.free_upper_bound(**args) >= await slot_store.free_count(**args)  # type: ignore[arg-type]
    assert await slot_store.drift(lot_id=LOT) == 0


async def test_counters_never_leave_bounds_even_when_redis_drifted(slot_store: SlotStore) -> None:
    await load(slot_store, ["regular"])
    await hold(slot_store, "h", at(8), at(9))
    # Drift: someone zeroed the counters behind the script's back.
    await slot_store.redis.delete(slot_store.keys.booked_counters(LOT, DAY))
    assert await slot_store.release(lot_id=LOT, hold_id="h")
    assert (await counters(slot_store, LOT, DAY))["regular"][32:36] == [0, 0, 0, 0]
    assert await slot_store.drift(lot_id=LOT) == 4
    # And the other way: counters already at capacity.
    await slot_store.redis.execute_command("BITFIELD", slot_store.keys.booked_counters(LOT, DAY),
                                           "SET", "u16", f"#{2 * 96 + 40}", 1)
    await hold(slot_store, "h2", at(10), at(10.25))
    assert (await counters(slot_store, LOT, DAY))["regular"][40] == 1
    assert await slot_store.drift(lot_id=LOT) == 5


async def test_rebuild_repairs_drift_both_ways_and_counts_it(slot_store: SlotStore) -> None:
    spots = make_spots(["regular", "compact", "ev"])
    await slot_store.load_lot(lot_id=LOT, spots=spots, strategy="nearest_entrance", ev_overflow=False)
    await hold(slot_store, "ghost", at(8), at(9))  # in Redis only: PostgreSQL never got it
    truth = Occupancy.from_windows([(1, at(22), at(1, 1)), (2, at(10), at(10.5))])  # in PostgreSQL only
    stats = await slot_store.rebuild_lot(lot_id=LOT, spots=spots, occupancy=truth, strategy="nearest_entrance",
                                         ev_overflow=False, days=[DAY, DAY + timedelta(days=1)])
    assert stats == RepairStats(bits_set=8 + 4 + 2, bits_cleared=4)
    assert await spot_bits(slot_store, LOT, DAY, 0) == []
    assert await spot_bits(slot_store, LOT, DAY, 1) == list(range(88, 96))
    assert await spot_bits(slot_store, LOT, DAY + timedelta(days=1), 1) == [0, 1, 2, 3]
    for day in (DAY, DAY + timedelta(days=1)):
        assert await counters(slot_store, LOT, day) == await recount(slot_store, LOT, day, spots)
    again = await slot_store.rebuild_lot(lot_id=LOT, spots=spots, occupancy=truth, strategy="nearest_entrance",
                                         ev_overflow=False, days=[DAY, DAY + timedelta(days=1)])
    assert again == RepairStats(0, 0)
    assert await slot_store.redis.exists(slot_store.keys.scratch(LOT)) == 0


async def test_repair_spot_fixes_one_spot_both_ways(slot_store: SlotStore) -> None:
    spots = await load(slot_store, ["regular", "regular"])
    await hold(slot_store, "a", at(8), at(9))
    await hold(slot_store, "b", at(8), at(9))
    stats = await slot_store.repair_spot(lot_id=LOT, spot_idx=0, occupancy=[(at(8.5), at(10))], days=[DAY])
    assert stats == RepairStats(bits_set=4, bits_cleared=2)
    assert await spot_bits(slot_store, LOT, DAY, 0) == list(range(34, 40))
    assert await spot_bits(slot_store, LOT, DAY, 1) == list(range(32, 36))
    assert await counters(slot_store, LOT, DAY) == await recount(slot_store, LOT, DAY, spots)


async def test_free_count_exact_and_upper_bound(slot_store: SlotStore) -> None:
    await load(slot_store, ["regular", "regular", "large"])
    await hold(slot_store, "a", at(8), at(9), only_spot=0)
    await hold(slot_store, "b", at(10), at(11), only_spot=1)
    args = {"lot_id": LOT, "vehicle_type": "regular", "starts_at": at(8), "ends_at": at(11)}
    assert await slot_store.free_count(**args) == 1  # type: ignore[arg-type]
    # Counters cannot tell that the two regular bookings fall on different spots.
    assert await slot_store.free_upper_bound(**args) == 2  # type: ignore[arg-type]
    assert await slot_store.free_count(lot_id=LOT, vehicle_type="large", starts_at=at(8), ends_at=at(11)) == 1


async def test_epoch_is_missing_after_a_redis_restart(tmp_path: object) -> None:
    import asyncio
    import socket
    import subprocess

    from core.keys import Keys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    async def connect() -> SlotStore:
        client = aioredis.Redis(port=port)
        for _ in range(100):
            try:
                await client.ping()
                return SlotStore(client, Keys("pg"))
            except Exception:
                await asyncio.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    proc = start()
    try:
        store = await connect()
        assert await store.ensure_epoch() is True  # first start: nothing there yet
        assert await store.ensure_epoch() is False
        await load(store, ["regular"])
        assert await hold(store, "h", at(8), at(9)) == 0
        await store.redis.aclose()
        proc.kill()
        proc.wait()
        proc = start()
        store = await connect()
        assert await store.ensure_epoch() is True
        with pytest.raises(SlotStateMissing):
            await hold(store, "h2", at(8), at(9))
        await store.redis.aclose()
    finally:
        proc.kill()
        proc.wait()


def test_slot_layout_constants() -> None:
    assert SLOTS_PER_DAY == 96


async def test_scripts_are_loaded_again_after_redis_forgot_them(slot_store: SlotStore) -> None:
    """A restarted Redis has no scripts: the store's EVALSHA meets NOSCRIPT and loads the script again."""
    await load(slot_store, ["regular"])
    await slot_store.redis.script_flush()
    with pytest.raises(NoScriptError):  # the control: a bare EVALSHA of the hold script now fails
        await slot_store.redis.evalsha(slot_store._hold.sha, 0)
    assert await hold(slot_store, "h1", at(8), at(9)) == 0
    assert await slot_store.release(lot_id=LOT, hold_id="h1") is True
