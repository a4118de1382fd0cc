"""Believable parking demand for a simulated city: who comes to which lot, when, for how long (pure, seeded).

Each lot gets a profile from its kind and a seeded draw: commuter garages (weekday mornings in, evenings out),
shopping (daytime, busier on Saturdays), nightlife (evenings, Friday and Saturday nights) or mixed. A few
seeded event days add an evening spike at the lots nearest a venue. Visits are drawn per lot and day; the same
seed, lots and days give the same visits.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

PROFILES = ("commuter", "shopping", "nightlife", "mixed")


@dataclass(frozen=True)
class LotDemand:
    """What the demand model needs of a lot."""

    lot_id: object
    index: int
    kind: str
    capacity_by_type: dict[str, int]
    lat: float
    lng: float


@dataclass(frozen=True)
class Visit:
    """One car's visit: arrival and departure, how it was booked, and what happened."""

    lot_index: int
    spot_type: str
    arrive: datetime
    depart: datetime
    #: walk_in, or reservation (booked `booked_at` for [starts_at, ends_at))
    channel: str
    booked_at: datetime | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    #: normal, cancelled (never comes), no_show (booked, never comes), overstay (leaves after ends_at)
    outcome: str = "normal"


def profile_of(lot: LotDemand, seed: int) -> str:
    """A lot's demand profile: garages are mostly commuter garages, surface lots anything."""
    rng = random.Random(f"{seed}:profile:{lot.index}")
    if lot.kind in ("multi-storey", "underground"):
        return rng.choices(PROFILES, weights=(6, 2, 1, 1))[0]
    return rng.choices(PROFILES, weights=(2, 3, 2, 3))[0]


def event_days(seed: int, first_day: datetime, days: int) -> set[int]:
    """Day numbers (from the first day) with an evening event at the venue: about one a week."""
    rng = random.Random(f"{seed}:events")
    return {d for d in range(days) if rng.random() < 1 / 7}


def _clock(day: datetime, hours: float) -> datetime:
    return day + timedelta(hours=hours)


def _gauss_hours(rng: random.Random, mean: float, sd: float, lo: float, hi: float) -> float:
    return min(max(rng.gauss(mean, sd), lo), hi)


def visits_for_day(lot: LotDemand, *, seed: int, day_number: int, local_midnight: datetime, tz: ZoneInfo,
                   profile: str, event: bool, venue_distance_km: float) -> list[Visit]:
    """The visits of one lot on one local day (arrivals that day; departures may be the next)."""
    rng = random.Random(f"{seed}:visits:{lot.index}:{day_number}")
    weekday = local_midnight.weekday()  # 0 = Monday
    weekend = weekday >= 5
    scale = random.Random(f"{seed}:scale:{lot.index}").uniform(0.55, 1.0)
    noise = math.exp(rng.gauss(0, 0.08))
    plans: list[tuple[float, float, float, float, float, float]] = []  # (share of capacity, arrive mean, sd, dwell..)

    def add(share: float, arrive: float, arrive_sd: float, dwell: float, dwell_sd: float, lo: float = 0.0) -> None:
        plans.append((share * scale * noise, arrive, arrive_sd, dwell, dwell_sd, lo))

    if profile in ("commuter", "mixed"):
        w = 1.0 if profile == "commuter" else 0.5
        if not weekend:
            add(0.85 * w * (0.8 if weekday == 4 else 1.0), 8.2, 0.8, 8.8, 1.0)  # commuters
            add(0.9 * w, 12.5, 2.5, 1.3, 0.6)  # visitors during the day
        else:
            add(0.35 * w, 12.5, 2.5, 2.0, 1.0)
    if profile in ("shopping", "mixed"):
        w = 1.0 if profile == "shopping" else 0.5
        day_share = {5: 3.6, 6: 2.6}.get(weekday, 2.4)
        add(day_share * w, 14.0, 2.6, 1.5, 0.7)
    if profile == "nightlife":
        night = {4: 1.0, 5: 1.1}.get(weekday, 0.45)
        add(night, 20.5, 1.4, 3.0, 1.0)
        add(0.5, 13.0, 2.5, 1.2, 0.5)
    if event and venue_distance_km < 1.5:
        add(0.9 * (1.5 - venue_distance_km) / 1.5 + 0.3, 18.3, 0.6, 3.5, 0.5)

    total = sum(lot.capacity_by_type.values())
    types = list(lot.capacity_by_type)
    weights = [lot.capacity_by_type[t] for t in types]
    out: list[Visit] = []
    for share, arrive_mean, arrive_sd, dwell_mean, dwell_sd, _ in plans:
        n = int(rng.gauss(share * total, math.sqrt(max(share * total, 1.0))))
        for _ in range(max(n, 0)):
            a_h = _gauss_hours(rng, arrive_mean, arrive_sd, 0.0, 23.9)
            dwell = max(rng.gauss(dwell_mean, dwell_sd), 0.25)
            arrive = _clock(local_midnight, a_h).replace(second=0, microsecond=0).astimezone(UTC)
            depart = arrive + timedelta(minutes=round(dwell * 60))
            spot_type = rng.choices(types, weights=weights)[0]
            if rng.random() < 0.35:  # booked ahead in the app
                starts_at = arrive - timedelta(minutes=rng.choice((0, 5, 10, 15)))
                ends_at = starts_at + timedelta(minutes=15 * math.ceil((depart - starts_at).total_seconds() / 900))
                booked_at = starts_at - timedelta(minutes=rng.choice((20, 45, 90, 180, 600, 1440)))
                roll = rng.random()
                outcome = "cancelled" if roll < 0.08 else "no_show" if roll < 0.12 else \
                    "overstay" if roll < 0.18 else "normal"
                if outcome == "overstay":
                    depart = ends_at + timedelta(minutes=rng.choice((10, 20, 35, 60)))
                elif depart > ends_at:
                    depart = ends_at
                out.append(Visit(lot.index, spot_type, arrive, depart, "reservation", booked_at, starts_at, ends_at,
                                 outcome))
            else:
                out.append(Visit(lot.index, spot_type, arrive, depart, "walk_in"))
    out.sort(key=lambda v: (v.arrive, v.depart, v.spot_type))
    return out


def city_visits(lots: list[LotDemand], *, seed: int, first_day: datetime, days: int, tz: str,
                venue: tuple[float, float]) -> tuple[list[Visit], dict[int, str], set[int]]:
    """Every visit of the city over `days` local days from `first_day` (local midnight), with each lot's profile
    and the event days."""
    zone = ZoneInfo(tz)
    events = event_days(seed, first_day, days)
    profiles = {lot.index: profile_of(lot, seed) for lot in lots}
    visits: list[Visit] = []
    for d in range(days):
        local = (first_day.astimezone(zone) + timedelta(days=d)).replace(hour=0, minute=0, second=0, microsecond=0)
        for lot in lots:
            km = math.hypot((lot.lat - venue[0]) * 111.32, (lot.lng - venue[1]) * 111.32 * math.cos(math.radians(venue[0])))
            visits.extend(visits_for_day(lot, seed=seed, day_number=d, local_midnight=local, tz=zone,
                                         profile=profiles[lot.index], event=d in events, venue_distance_km=km))
    visits.sort(key=lambda v: (v.arrive, v.lot_index, v.depart, v.spot_type))
    return visits, profiles, events
