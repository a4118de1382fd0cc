"""A deterministic synthetic demo city: lots, levels, spots, gates and default rates, bulk-loaded."""

from __future__ import annotations

import json
import math
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.vocabulary import SPOT_TYPES
from geo.h3cells import cell

CITY_CENTRE = (37.7793, -122.4193)  # San Francisco City Hall
CITY_TZ = "America/Los_Angeles"
SEED_NAMESPACE = uuid.UUID("6f1c4a52-7d0e-4c8e-9a55-0b6c2e9f4d31")
DEMO_ORG_ID = uuid.uuid5(SEED_NAMESPACE, "demo-organisation")
SPOT_MIX = (("regular", 0.78), ("compact", 0.08), ("ev", 0.05), ("handicap", 0.04), ("large", 0.03),
            ("motorcycle", 0.02))
STREETS = ("Market", "Mission", "Howard", "Folsom", "Valencia", "Geary", "Post", "Sutter", "Pine", "Bush",
           "Van Ness", "Polk", "Larkin", "Hyde", "Leavenworth", "Taylor", "Mason", "Powell", "Stockton", "Kearny")
AMENITIES = ("covered", "ev_charging", "accessible", "cctv", "staffed", "bike_parking")

DEFAULT_RATE_CARD: dict[str, object] = {
    "currency": "usd",
    "tax_percent": 8.5,
    "grace_minutes": 10,
    "rules": [
        {"name": "day", "spot_types": list(SPOT_TYPES),
         "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "from": "07:00", "to": "19:00",
         "rate_per_hour": 400, "increment_minutes": 15, "daily_max": 3200},
        {"name": "night", "spot_types": list(SPOT_TYPES),
         "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "from": "19:00", "to": "07:00",
         "rate_per_hour": 150, "increment_minutes": 30, "daily_max": 3200},
    ],
    "flat_rates": [{"name": "early bird", "enter_from": "05:00", "enter_to": "09:00", "exit_by": "19:00",
                    "amount": 1800}],
    "cancellation": {"free_until_minutes_before": 60, "fee_percent": 20},
    "no_show_fee": 500,
    "overstay": {"rate_per_hour": 600, "increment_minutes": 15},
    "dynamic": {"enabled": False, "min_multiplier": 0.8, "max_multiplier": 1.5},
}


@dataclass
class LotPlan:
    id: uuid.UUID
    name: str
    address: str
    lat: float
    lng: float
    kind: str
    amenities: list[str]
    levels: list[dict[str, int]] = field(default_factory=list)  # per level: spot type -> count
    gates: list[tuple[str, str]] = field(default_factory=list)
    height_limit_cm: int | None = None

    @property
    def capacity(self) -> int:
        return sum(sum(level.values()) for level in self.levels)


def _mix(rng: random.Random, total: int) -> dict[str, int]:
    counts = {t: int(total * share) for t, share in SPOT_MIX}
    counts["regular"] += total - sum(counts.values())
    # a little noise so lots differ, keeping the total
    if counts["regular"] > 4 and rng.random() < 0.5:
        counts["regular"] -= 1
        counts[rng.choice(("compact", "ev", "large"))] += 1
    return {t: c for t, c in counts.items() if c > 0}


def plan_city(*, lots: int, seed: int, centre: tuple[float, float] = CITY_CENTRE) -> list[LotPlan]:
    """The same seed always gives the same city (ids, names, places, sizes)."""
    rng = random.Random(seed)
    plans: list[LotPlan] = []
    # spread grows with the number of lots so density stays plausible (~ 6 km radius for 20k)
    radius_km = max(1.5, 6.0 * math.sqrt(lots / 20_000))
    for i in range(lots):
        dist = radius_km * math.sqrt(rng.random()) * (0.35 + 0.65 * rng.random())
        bearing = rng.random() * 2 * math.pi
        lat = centre[0] + (dist / 111.32) * math.cos(bearing)
        lng = centre[1] + (dist / (111.32 * math.cos(math.radians(centre[0])))) * math.sin(bearing)
        garage = rng.random() < 0.18
        kind = rng.choice(("multi-storey", "multi-storey", "underground")) if garage else "surface"
        if garage:
            n_levels = rng.randint(2, 8)
            total = rng.randint(150, 2000)
        else:
            n_levels = 1
            total = rng.randint(20, 200)
        per_level = [total // n_levels + (1 if k < total % n_levels else 0) for k in range(n_levels)]
        street = rng.choice(STREETS)
        amenities = sorted({a for a in AMENITIES if rng.random() < (0.5 if garage else 0.15)}
                           | ({"covered"} if garage else set()))
        plan = LotPlan(
            id=uuid.uuid5(SEED_NAMESPACE, f"seed:{seed}:lot:{i}"),
            name=f"{street} {'Garage' if garage else 'Lot'} {i + 1}",
            address=f"{rng.randint(1, 2999)} {street} St, San Francisco, CA",
            lat=round(lat, 6), lng=round(lng, 6), kind=kind, amenities=amenities,
            levels=[_mix(rng, n) for n in per_level],
            height_limit_cm=rng.choice((190, 200, 210, 230)) if kind != "surface" else None,
        )
        n_gates = 1 if total < 300 else 2
        plan.gates = [(f"Entry {g + 1}", "entry") for g in range(n_gates)] + \
                     [(f"Exit {g + 1}", "exit") for g in range(n_gates)]
        plans.append(plan)
    return plans


async def seed_city(engine: AsyncEngine, plans: list[LotPlan], *, organisation_id: uuid.UUID = DEMO_ORG_ID,
                    progress: Callable[[int], None] | None = None, batch: int = 500) -> dict[str, int]:
    """Bulk-load planned lots with COPY (lots via a staging table for the geography column).

    Lots are loaded in id order: every index of the big tables (spots, levels, gates) leads with lot_id, so
    in-order loads append at the right edge of each b-tree instead of touching pages all over indexes that
    outgrow shared_buffers (a 100,000-lot city has ~28M spots). The rows are the same whatever the order.
    """
    totals = {"lots": 0, "levels": 0, "spots": 0, "gates": 0}
    plans = sorted(plans, key=lambda p: p.id)
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO organisations (id, name) VALUES (:id, 'ParkGrid Demo City') ON CONFLICT (id) DO NOTHING"),
            {"id": organisation_id})
    for n, start in enumerate(range(0, len(plans), batch)):
        chunk = plans[start:start + batch]
        await _load_chunk(engine, chunk, organisation_id, totals)
        if n % ANALYZE_EVERY == 0:
            await _analyze(engine)
        if progress:
            progress(len(chunk))
    return totals


#: chunks between ANALYZEs of the tables the spot-count triggers read (and after the first chunk)
ANALYZE_EVERY = 20


async def _analyze(engine: AsyncEngine) -> None:
    """Statistics for the spot-count trigger's statements. Without any (autovacuum may be off, or not have run
    yet) the planner filters lot_spot_counts by `lot_id = ANY(<a chunk's ids>)` row by row in a sequential scan,
    and each chunk costs more than the one before (40 s per 1,000 lots at 50,000 lots)."""
    async with engine.begin() as conn:  # no statement timeout: a big city's spots take longer than any request
        await conn.execute(text("SET LOCAL statement_timeout = 0"))
        await conn.execute(text("ANALYZE lots, levels, spots, lot_spot_counts"))


async def _load_chunk(engine: AsyncEngine, chunk: list[LotPlan], org: uuid.UUID, totals: dict[str, int]) -> None:
    lot_rows: list[tuple[Any, ...]] = []
    level_rows: list[tuple[Any, ...]] = []
    spot_rows: list[tuple[Any, ...]] = []
    gate_rows: list[tuple[Any, ...]] = []
    rate_rows: list[tuple[Any, ...]] = []
    card = json.dumps(DEFAULT_RATE_CARD)
    for plan in chunk:
        lot_rows.append((plan.id, org, plan.name, plan.address, plan.lat, plan.lng, cell(plan.lat, plan.lng, 7),
                         cell(plan.lat, plan.lng, 9), CITY_TZ, plan.kind, plan.amenities, plan.height_limit_cm,
                         plan.capacity))
        idx = 0
        for ordinal, level in enumerate(plan.levels):
            level_id = uuid.uuid5(plan.id, f"level:{ordinal}")
            level_name = "G" if len(plan.levels) == 1 else f"L{ordinal}"
            level_rows.append((plan.id, level_id, level_name, ordinal))
            for spot_type, count in level.items():
                for _ in range(count):
                    # rank = distance from the entrance: lower levels and lower numbers first
                    spot_rows.append((plan.id, idx, level_id, f"{level_name}-{idx + 1:04d}", spot_type,
                                      ordinal * 10_000 + idx))
                    idx += 1
        for name, direction in plan.gates:
            gate_rows.append((plan.id, uuid.uuid5(plan.id, f"gate:{name}"), name, direction))
        rate_rows.append((plan.id, "usd", card))
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        pg = raw.driver_connection
        assert pg is not None
        async with pg.transaction():
            # a bulk load, not a request: the pool's statement timeout would cancel it on a busy machine
            await pg.execute("SET LOCAL statement_timeout = 0")
            await _copy(pg, lot_rows, level_rows, spot_rows, gate_rows, rate_rows)
    totals["lots"] += len(lot_rows)
    totals["levels"] += len(level_rows)
    totals["spots"] += len(spot_rows)
    totals["gates"] += len(gate_rows)


BULK_TIMEOUT_S = 1800


async def _copy(pg: Any, lot_rows: list[tuple[Any, ...]], level_rows: list[tuple[Any, ...]],
                spot_rows: list[tuple[Any, ...]], gate_rows: list[tuple[Any, ...]],
                rate_rows: list[tuple[Any, ...]]) -> None:
    await pg.execute("CREATE TEMP TABLE seed_lots (id uuid, organisation_id uuid, name text, address text, "
                     "lat float8, lng float8, h3_r7 bigint, h3_r9 bigint, timezone text, kind text, "
                     "amenities text[], height_limit_cm int, capacity int) ON COMMIT DROP")
    await pg.copy_records_to_table("seed_lots", records=lot_rows)
    await pg.execute(
        "INSERT INTO lots (id, organisation_id, name, address, location, h3_r7, h3_r9, timezone, kind, amenities,"
        " height_limit_cm, capacity) SELECT id, organisation_id, name, address,"
        " ST_SetSRID(ST_MakePoint(lng, lat), 4326)::geography, h3_r7, h3_r9, timezone, kind, amenities,"
        " height_limit_cm, capacity FROM seed_lots")
    await pg.copy_records_to_table("levels", records=level_rows, columns=["lot_id", "id", "name", "ordinal"])
    # the spot-count triggers make this the slow step: the pool's 30 s command timeout cut it on a busy machine
    await pg.copy_records_to_table("spots", records=spot_rows, timeout=BULK_TIMEOUT_S,
                                   columns=["lot_id", "idx", "level_id", "label", "type", "rank"])
    await pg.copy_records_to_table("gates", records=gate_rows, columns=["lot_id", "id", "name", "direction"])
    await pg.execute("CREATE TEMP TABLE seed_rates (lot_id uuid, currency text, body text) ON COMMIT DROP")
    await pg.copy_records_to_table("seed_rates", records=rate_rows)
    await pg.execute("INSERT INTO rate_cards (lot_id, currency, body) "
                     "SELECT lot_id, currency, body::jsonb FROM seed_rates")
