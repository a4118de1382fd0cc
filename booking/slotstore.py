"""The Redis slot layer: atomic holds and releases on per-lot-day slot bitmaps.

Redis decides first (one Lua call per hold), PostgreSQL's exclusion constraint decides last;
see docs/adr/0002-redis-decides-first-postgres-last.md. Everything here is derivable from
PostgreSQL: `rebuild_lot` and `repair_spot` make Redis exact again from occupancy rows.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from booking import slotbuild
from booking.slots import (
    DEFAULT_MAX_SPAN,
    SLOTS_PER_DAY,
    SPOT_TYPES,
    STRATEGIES,
    TYPE_INDEX,
    VEHICLE_TYPES,
    SpotInfo,
    abs_day,
    abs_ranges,
    abs_slot_ceil,
    abs_slot_floor,
    candidate_order,
    compatible_types,
    day_expire_at,
    pack_candidates,
    validate_spots,
    widen,
)
from core.errors import ValidationFailed
from core.keys import Keys

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
SOLD_OUT = -1
NOT_LOADED = -2


class SlotStateMissing(RuntimeError):
    """Redis holds no slot state for this lot: rebuild it from PostgreSQL (or use the SQL path)."""


@dataclass(frozen=True, slots=True)
class RepairStats:
    """Bits Redis had wrong, in each direction, found by a repair or rebuild."""

    bits_set: int = 0
    bits_cleared: int = 0

    def __add__(self, other: RepairStats) -> RepairStats:
        return RepairStats(self.bits_set + other.bits_set, self.bits_cleared + other.bits_cleared)


def _load_script(name: str) -> str:
    lua = resources.files("booking").joinpath("lua")
    lib = lua.joinpath("_lib.lua").read_text()
    return lib + "\n" + lua.joinpath(name).read_text()


class _Script:
    """A Lua script called by its SHA1 (EVALSHA), loaded on a NOSCRIPT answer (a restarted or emptied Redis).

    redis-py's Script does the same, but checks its client against the pipeline classes on every call, and one of
    them is a typing Protocol, whose isinstance is slow: 3.6% of a hold's CPU in the API process (py-spy of
    loadtests.profile_hold --keyed), more than the rest of the call's Python work outside the client."""

    def __init__(self, redis: aioredis.Redis, text: str) -> None:
        self.redis, self.text = redis, text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, *, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return await self.redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.sha = await self.redis.script_load(self.text)
            return await self.redis.evalsha(self.sha, len(keys), *keys, *args)


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _day(abs_d: int) -> date:
    return date.fromordinal(_EPOCH_ORDINAL + abs_d)


class SlotStore:
    """Slot bitmaps, counters and holds of every lot, in one Redis (or one Cluster)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        hold_ttl: timedelta = timedelta(minutes=15),
        hold_record_margin: timedelta = timedelta(minutes=5),
        day_key_margin: timedelta = timedelta(days=1),
        max_span: timedelta = DEFAULT_MAX_SPAN,
        best_fit_scan: int = 32,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.hold_ttl = hold_ttl
        self.hold_record_margin = hold_record_margin
        self.day_key_margin = day_key_margin
        self.max_span = max_span
        self.best_fit_scan = best_fit_scan
        self._hold = _Script(redis, _load_script("hold.lua"))
        self._release = _Script(redis, _load_script("release.lua"))
        self._count = _Script(redis, _load_script("count.lua"))
        self._repair = _Script(redis, _load_script("repair_spot.lua"))
        self._rebuild_lot = _Script(redis, _load_script("rebuild_lot.lua"))

    # -- metadata -------------------------------------------------------------------------

    async def load_lot(
        self, *, lot_id: str, spots: Sequence[SpotInfo], strategy: str, ev_overflow: bool
    ) -> None:
        """Write a lot's candidate lists, spot types and capacities; idempotent and atomic (one script)."""
        keys, args = self._lot_meta(lot_id=lot_id, spots=spots, strategy=strategy, ev_overflow=ev_overflow, days=0)
        await self._rebuild_lot(keys=keys, args=args)

    def _lot_meta(
        self, *, lot_id: str, spots: Sequence[SpotInfo], strategy: str, ev_overflow: bool, days: int
    ) -> tuple[list[str], list[Any]]:
        """The keys and arguments of rebuild_lot.lua that write a lot's metadata: (keys, [V, days, spot types,
        candidate lists..., M, meta fields and values...]); the caller appends each of the `days` days."""
        validate_spots(spots)
        if strategy not in STRATEGIES:
            raise ValidationFailed(f"unknown allocation strategy {strategy!r}", loc=("strategy",))
        ordered = sorted(spots, key=lambda s: s.idx)
        caps = [0] * len(SPOT_TYPES)
        for s in ordered:
            caps[TYPE_INDEX[s.type]] += 1
        if max(caps) > 0xFFFF:
            raise ValidationFailed("more than 65535 spots of one type in a lot", loc=("spots",))
        meta: dict[str, Any] = {
            "n": len(ordered),
            "strategy": strategy,
            "ev_overflow": int(ev_overflow),
            "caps": struct.pack(f">{len(caps)}H", *caps),
        }
        k = self.keys
        keys = [k.meta(lot_id), k.spot_types(lot_id), k.scratch(lot_id)]
        candidates: list[bytes] = []
        for vt in VEHICLE_TYPES:
            compat = compatible_types(vt, ev_overflow=ev_overflow)
            meta[f"compat:{vt}"] = bytes(TYPE_INDEX[t] for t in compat)
            order = candidate_order(ordered, vt, strategy=strategy, ev_overflow=ev_overflow)
            keys.append(k.candidates(lot_id, vt))
            candidates.append(pack_candidates(order) if order else b"")
        fields = [part for item in meta.items() for part in item]
        return keys, [len(VEHICLE_TYPES), days, bytes(TYPE_INDEX[s.type] for s in ordered), *candidates,
                      len(fields), *fields]

    async def forget_lot(self, *, lot_id: str) -> None:
        """Drop a lot's metadata so its next use rebuilds it from PostgreSQL (after spots changed)."""
        await self.redis.delete(self.keys.meta(lot_id))

    async def ensure_epoch(self) -> bool:
        """Create the epoch key if missing; True means Redis had lost its state (rebuild it)."""
        created = await self.redis.set(self.keys.epoch(), uuid.uuid4().hex, nx=True)
        return bool(created)

    # -- hot path -------------------------------------------------------------------------

    def _window(self, starts_at: datetime, ends_at: datetime) -> list[tuple[int, int, int]]:
        start, end = widen(starts_at, ends_at, max_span=self.max_span)
        return abs_ranges(abs_slot_floor(start), abs_slot_floor(end))

    async def hold(
        self,
        *,
        lot_id: str,
        hold_id: str,
        vehicle_type: str,
        starts_at: datetime,
        ends_at: datetime,
        exclude: Iterable[int] = (),
        only_spot: int | None = None,
    ) -> int | None:
        """Atomically claim a free compatible spot for the window; its index, or None if sold out."""
        if vehicle_type not in TYPE_INDEX:
            raise ValidationFailed(f"unknown vehicle type {vehicle_type!r}", loc=("body", "vehicle_type"))
        k = self.keys
        keys = [k.meta(lot_id), k.candidates(lot_id, vehicle_type), k.hold(lot_id, hold_id), k.drift(lot_id)]
        ranges = self._window(starts_at, ends_at)
        args: list[Any] = [
            len(ranges),
            int((self.hold_ttl + self.hold_record_margin).total_seconds() * 1000),
            -1 if only_spot is None else int(only_spot),
            " ".join(str(int(i)) for i in exclude),
            self.best_fit_scan,
        ]
        for d, a, b in ranges:
            day = _day(d)
            keys += [k.bitmap(lot_id, day), k.booked_counters(lot_id, day)]
            args += [f"{day:%Y%m%d}", a, b, day_expire_at(day, self.day_key_margin)]
        spot = int(await self._hold(keys=keys, args=args))
        if spot == NOT_LOADED:
            raise SlotStateMissing(lot_id)
        return None if spot == SOLD_OUT else spot

    async def keep_hold(self, *, lot_id: str, hold_id: str, until: datetime) -> bool:
        """Keep a hold's record (its release handle) until `until` + margin, e.g. once paid."""
        ts = int(until.timestamp() + self.hold_record_margin.total_seconds())
        return bool(await self.redis.expireat(self.keys.hold(lot_id, hold_id), ts))

    async def hold_record(self, *, lot_id: str, hold_id: str) -> tuple[int, list[tuple[date, int, int]]] | None:
        """(spot idx, [(day, first, last)]) of a live hold record, or None."""
        raw = await self.redis.get(self.keys.hold(lot_id, hold_id))
        if raw is None:
            return None
        parts = _text(raw).split()
        ranges = []
        for r in parts[2:]:
            label, a, b = r.split(":")
            ranges.append((datetime.strptime(label, "%Y%m%d").date(), int(a), int(b)))
        return int(parts[0]), ranges

    async def forget_hold(self, *, lot_id: str, hold_id: str) -> None:
        """Drop a claim's record without touching its bits (a repair made them PostgreSQL's already)."""
        await self.redis.delete(self.keys.hold(lot_id, hold_id))

    async def release(self, *, lot_id: str, hold_id: str, from_: datetime | None = None) -> bool:
        """Free the hold's slots (all, or those from `from_` ceiled to a slot on); False if already gone."""
        k = self.keys
        cut_label, cut_slot = "", 0
        if from_ is not None:
            day, cut_slot = divmod(abs_slot_ceil(from_), SLOTS_PER_DAY)
            cut_label = f"{_day(day):%Y%m%d}"
        for _ in range(5):
            raw = await self.redis.get(k.hold(lot_id, hold_id))
            if raw is None:
                return False
            keys = [k.hold(lot_id, hold_id), k.meta(lot_id), k.drift(lot_id)]
            for r in _text(raw).split()[2:]:
                rday = datetime.strptime(r.split(":", 1)[0], "%Y%m%d").date()
                keys += [k.bitmap(lot_id, rday), k.booked_counters(lot_id, rday)]
            found, _freed = await self._release(keys=keys, args=[raw, cut_label, cut_slot])
            if found >= 0:
                return bool(found)
        # Only a flood of concurrent partial releases of one hold can get here.
        raise RuntimeError(f"hold {hold_id} kept changing during release")

    # -- search ---------------------------------------------------------------------------

    async def _count_call(self, mode: str, lot_id: str, vehicle_type: str, starts_at: datetime, ends_at: datetime) -> int:
        if vehicle_type not in TYPE_INDEX:
            raise ValidationFailed(f"unknown vehicle type {vehicle_type!r}", loc=("query", "vehicle_type"))
        k = self.keys
        ranges = self._window(starts_at, ends_at)
        keys = [k.meta(lot_id), k.candidates(lot_id, vehicle_type)]
        args: list[Any] = [len(ranges), mode, vehicle_type]
        for d, a, b in ranges:
            keys += [k.bitmap(lot_id, _day(d)), k.booked_counters(lot_id, _day(d))]
            args += [a, b]
        n = int(await self._count(keys=keys, args=args))
        if n == NOT_LOADED:
            raise SlotStateMissing(lot_id)
        return n

    async def free_count(self, *, lot_id: str, vehicle_type: str, starts_at: datetime, ends_at: datetime) -> int:
        """Exact number of compatible spots free for the whole window (O(spots))."""
        return await self._count_call("exact", lot_id, vehicle_type, starts_at, ends_at)

    async def free_upper_bound(
        self, *, lot_id: str, vehicle_type: str, starts_at: datetime, ends_at: datetime
    ) -> int:
        """Fast upper bound of free_count from the per-type counters (O(slots))."""
        return await self._count_call("bound", lot_id, vehicle_type, starts_at, ends_at)

    # -- repair ---------------------------------------------------------------------------

    async def repair_spot(
        self,
        *,
        lot_id: str,
        spot_idx: int,
        occupancy: Iterable[tuple[datetime, datetime]],
        days: Iterable[date],
    ) -> RepairStats:
        """Make one spot's bits on `days` equal `occupancy` (windows from PostgreSQL)."""
        day_list = sorted(set(days))
        wanted = {abs_day(d): 0 for d in day_list}
        for start, end in occupancy:
            for d, a, b in abs_ranges(abs_slot_floor(start), abs_slot_ceil(end)):
                if d in wanted:
                    wanted[d] |= slotbuild.slot_mask(a, b)
        k = self.keys
        keys = [k.meta(lot_id), k.drift(lot_id), k.spot_types(lot_id)]
        args: list[Any] = [len(day_list), spot_idx]
        for day in day_list:
            keys += [k.bitmap(lot_id, day), k.booked_counters(lot_id, day)]
            args += [slotbuild.spot_day_bytes(wanted[abs_day(day)]), day_expire_at(day, self.day_key_margin)]
        bits_set, bits_cleared = await self._repair(keys=keys, args=args)
        if bits_set == NOT_LOADED:
            raise SlotStateMissing(lot_id)
        return RepairStats(int(bits_set), int(bits_cleared))

    async def rebuild_lot(
        self,
        *,
        lot_id: str,
        spots: Sequence[SpotInfo],
        occupancy: slotbuild.Occupancy,
        strategy: str,
        ev_overflow: bool,
        days: Iterable[date],
    ) -> RepairStats:
        """Reload metadata and make bitmaps and counters of `days` exactly `occupancy`; count drift.

        One script call for the whole lot (rebuild_lot.lua: metadata, then every day), so a reader sees the
        lot either as it was or wholly rebuilt, never half of each; on a cluster too, where a MULTI/EXEC
        pipeline would block the event loop (redis-py runs each queued command on a thread).
        """
        day_list = sorted(set(days))
        type_of = [TYPE_INDEX[s.type] for s in sorted(spots, key=lambda s: s.idx)]
        images = slotbuild.day_images(occupancy, type_of, [abs_day(d) for d in day_list])
        k = self.keys
        keys, args = self._lot_meta(lot_id=lot_id, spots=spots, strategy=strategy, ev_overflow=ev_overflow,
                                    days=len(day_list))
        for day in day_list:
            image = images[abs_day(day)]
            keys += [k.bitmap(lot_id, day), k.booked_counters(lot_id, day)]
            args += [image.bitmap, image.counters, day_expire_at(day, self.day_key_margin)]
        bits_set, bits_cleared = await self._rebuild_lot(keys=keys, args=args)
        return RepairStats(int(bits_set), int(bits_cleared))

    # -- observability --------------------------------------------------------------------

    async def drift(self, *, lot_id: str) -> int:
        """How many counter updates were clamped for this lot (0 when Redis never drifted)."""
        return int(await self.redis.get(self.keys.drift(lot_id)) or 0)

    async def memory_report(self, *, lot_id: str, day: date) -> dict[str, int]:
        """MEMORY USAGE in bytes of a lot's day keys and metadata keys."""
        k = self.keys
        names = {
            "bitmap": k.bitmap(lot_id, day),
            "counters": k.booked_counters(lot_id, day),
            "meta": k.meta(lot_id),
            "spot_types": k.spot_types(lot_id),
            "candidates": k.candidates(lot_id, "regular"),
        }
        out: dict[str, int] = {}
        for name, key in names.items():
            out[name] = int(await self.redis.memory_usage(key, samples=0) or 0)
        return out
