"""Pure rules for one bay sensor: debounce, confidence threshold, ordering and staleness (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

State = Literal["occupied", "vacant", "unknown"]
Outcome = Literal["changed", "confirmed", "debounced", "low_confidence", "out_of_order"]
APPLIED: frozenset[str] = frozenset({"changed", "confirmed"})


@dataclass(frozen=True)
class SensorRules:
    """Tunables: a flip within `debounce` of the previous accepted change is ignored; readings below
    `min_confidence` refresh the heartbeat only; readings dated more than `max_future` ahead are refused."""

    debounce: timedelta = timedelta(seconds=5)
    min_confidence: float = 0.6
    max_future: timedelta = timedelta(minutes=5)


DEFAULT_RULES = SensorRules()


@dataclass(frozen=True, slots=True)
class SensorState:
    state: State
    state_since: datetime | None
    last_seen_at: datetime | None
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    event_id: str
    sensor_id: str
    state: Literal["occupied", "vacant"]
    confidence: float
    occurred_at: datetime


UNSEEN = SensorState(state="unknown", state_since=None, last_seen_at=None)


def apply_reading(current: SensorState, reading: Reading, *, rules: SensorRules, now: datetime) -> tuple[SensorState, Outcome]:
    """The sensor's next state after one reading, and what happened to the reading.

    The heartbeat (`last_seen_at`) moves forward for every reading the sensor sent, even ignored
    ones: the sensor is alive. Device clocks are trusted only up to `now` (a reading dated in the
    future counts as seen now).
    """
    occurred = reading.occurred_at
    seen = occurred if occurred < now else now
    last = current.last_seen_at
    heartbeat = seen if last is None or seen > last else last
    state, since = current.state, current.state_since
    # SensorState(...) rather than dataclasses.replace: this runs once per event on the ingestion hot path
    if last is not None and occurred < last and state != "unknown":
        return SensorState(state, since, heartbeat, current.confidence), "out_of_order"
    if reading.confidence < rules.min_confidence:
        return SensorState(state, since, heartbeat, current.confidence), "low_confidence"
    if reading.state == state:
        return SensorState(state, since, heartbeat, reading.confidence), "confirmed"
    if state != "unknown" and since is not None and seen - since < rules.debounce:
        return SensorState(state, since, heartbeat, current.confidence), "debounced"
    return SensorState(reading.state, seen, heartbeat, reading.confidence), "changed"


def is_stale(state: SensorState, *, heartbeat: timedelta, now: datetime) -> bool:
    """A sensor silent past its heartbeat is unknown: never counted as free."""
    return state.last_seen_at is None or now - state.last_seen_at > heartbeat


def cds_events(old: State, new: State) -> list[str]:
    """Curb Data Specification event types for a state transition of a bay."""
    out: list[str] = []
    if old == "unknown" and new != "unknown":
        out.append("comms_restored")
    if old == "occupied" and new != "occupied":
        out.append("park_end" if new == "vacant" else "comms_lost")
    elif new == "occupied" and old != "occupied":
        out.append("park_start")
    elif new == "unknown" and old != "unknown":
        out.append("comms_lost")
    return out
