"""Pure sensor rules: debounce, confidence, ordering, staleness, CDS vocabulary."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from controllers.debounce import UNSEEN, Reading, SensorRules, SensorState, apply_reading, cds_events, is_stale

T0 = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)
RULES = SensorRules(debounce=timedelta(seconds=5), min_confidence=0.6)


def r(state: str, at: datetime, conf: float = 0.9, eid: str = "e") -> Reading:
    return Reading(event_id=eid, sensor_id="s", state=state, confidence=conf, occurred_at=at)  # type: ignore[arg-type]


def test_first_reading_sets_state() -> None:
    s, out = apply_reading(UNSEEN, r("occupied", T0), rules=RULES, now=T0)
    assert out == "changed" and s.state == "occupied" and s.state_since == T0 and s.last_seen_at == T0


def test_flip_within_debounce_is_ignored_but_heartbeat_moves() -> None:
    s, _ = apply_reading(UNSEEN, r("occupied", T0), rules=RULES, now=T0)
    s2, out = apply_reading(s, r("vacant", T0 + timedelta(seconds=3)), rules=RULES, now=T0 + timedelta(seconds=3))
    assert out == "debounced" and s2.state == "occupied" and s2.last_seen_at == T0 + timedelta(seconds=3)
    s3, out = apply_reading(s2, r("vacant", T0 + timedelta(seconds=6)), rules=RULES, now=T0 + timedelta(seconds=6))
    assert out == "changed" and s3.state == "vacant"


def test_low_confidence_and_out_of_order() -> None:
    s, _ = apply_reading(UNSEEN, r("occupied", T0), rules=RULES, now=T0)
    _, out = apply_reading(s, r("vacant", T0 + timedelta(minutes=1), conf=0.3), rules=RULES, now=T0 + timedelta(minutes=1))
    assert out == "low_confidence"
    s = SensorState(state="occupied", state_since=T0, last_seen_at=T0 + timedelta(minutes=5))
    _, out = apply_reading(s, r("vacant", T0 + timedelta(minutes=2)), rules=RULES, now=T0 + timedelta(minutes=6))
    assert out == "out_of_order"


def test_future_timestamps_count_as_now() -> None:
    s, _ = apply_reading(UNSEEN, r("occupied", T0 + timedelta(minutes=3)), rules=RULES, now=T0)
    assert s.last_seen_at == T0 and s.state_since == T0


def test_staleness() -> None:
    s = SensorState(state="vacant", state_since=T0, last_seen_at=T0)
    assert not is_stale(s, heartbeat=timedelta(minutes=10), now=T0 + timedelta(minutes=10))
    assert is_stale(s, heartbeat=timedelta(minutes=10), now=T0 + timedelta(minutes=10, seconds=1))
    assert is_stale(UNSEEN, heartbeat=timedelta(minutes=10), now=T0)


def test_cds_vocabulary() -> None:
    assert cds_events("vacant", "occupied") == ["park_start"]
    assert cds_events("occupied", "vacant") == ["park_end"]
    assert cds_events("occupied", "unknown") == ["comms_lost"]
    assert cds_events("unknown", "occupied") == ["comms_restored", "park_start"]


@given(st.lists(st.tuples(st.sampled_from(["occupied", "vacant"]), st.integers(0, 20), st.floats(0, 1)), max_size=40))
def test_no_two_accepted_changes_closer_than_debounce(steps: list[tuple[str, int, float]]) -> None:
    state, at, changes = UNSEEN, T0, []
    for s, gap, conf in steps:
        at += timedelta(seconds=gap)
        state, out = apply_reading(state, r(s, at, conf), rules=RULES, now=at)
        if out == "changed":
            changes.append(at)
    assert all(b - a >= RULES.debounce for a, b in itertools.pairwise(changes))
