"""Pure rules of EV charging: idle fees, energy readings, what a connector counts as, reservation id tags."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from booking.access import qr_token
from controllers.chargers import connector_state, count_states
from controllers.charging import ID_TAG_MAX, energy_reading_wh, idle_fee, reservation_id_tag

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


def test_idle_fee_is_per_started_minute_past_the_grace_with_tax() -> None:
    fee = dict(per_hour=600, grace_minutes=10, tax_bp=825, charging_ended_at=T0)
    assert idle_fee(**fee, idle_until=T0 + timedelta(minutes=10)) == (10, 0)  # within the grace
    assert idle_fee(**fee, idle_until=T0 + timedelta(minutes=10, seconds=1)) == (11, 10 + 1)  # 1 started minute
    assert idle_fee(**fee, idle_until=T0 + timedelta(minutes=70)) == (70, 600 + 50)  # an hour: 6.00 + 8.25 %
    assert idle_fee(**fee, idle_until=T0 - timedelta(minutes=1)) == (0, 0)
    assert idle_fee(per_hour=600, grace_minutes=10, tax_bp=0, charging_ended_at=None, idle_until=T0) == (0, 0)
    assert idle_fee(per_hour=0, grace_minutes=0, tax_bp=0, charging_ended_at=T0,
                    idle_until=T0 + timedelta(hours=5)) == (300, 0)


@given(per_hour=st.integers(0, 100_000), grace=st.integers(0, 1440), tax=st.integers(0, 10_000),
       a=st.integers(0, 10**6), b=st.integers(0, 10**6))
def test_idle_fee_is_an_integer_never_negative_and_never_falls_as_the_car_stays(per_hour: int, grace: int, tax: int,
                                                                             a: int, b: int) -> None:
    early, late = sorted((a, b))
    _, fee_early = idle_fee(per_hour=per_hour, grace_minutes=grace, tax_bp=tax, charging_ended_at=T0,
                            idle_until=T0 + timedelta(seconds=early))
    minutes, fee_late = idle_fee(per_hour=per_hour, grace_minutes=grace, tax_bp=tax, charging_ended_at=T0,
                                 idle_until=T0 + timedelta(seconds=late))
    assert isinstance(fee_late, int) and 0 <= fee_early <= fee_late
    if minutes <= grace:
        assert fee_late == 0


def test_energy_reading_takes_the_register_converts_kwh_and_skips_other_measurands() -> None:
    values = [{"timestamp": "x", "sampled_value": [
        {"value": "7.5", "unit": "kWh", "measurand": "Energy.Active.Import.Register"},
        {"value": "99999", "measurand": "Power.Active.Import", "unit": "W"},
        {"value": "123", "measurand": "Energy.Active.Import.Register", "phase": "L1"},
        {"value": "not a number"}, {"value": "NaN"}]},
        {"timestamp": "y", "sampled_value": [{"value": "7400"}]}]  # no measurand: the register, in Wh
    assert energy_reading_wh(values) == 7500
    assert energy_reading_wh([{"timestamp": "x", "sampled_value": [{"value": "3", "measurand": "SoC"}]}]) is None


def test_connector_state_offline_past_twice_the_heartbeat_then_faulted_available_or_in_use() -> None:
    def state(*, seen_ago: float | None, status: str, charger: str = "Available") -> str:
        return connector_state(charger_status=charger, heartbeat_interval_s=30, status=status, now=T0,
                               last_seen_at=None if seen_ago is None else T0 - timedelta(seconds=seen_ago))

    assert state(seen_ago=60, status="Available") == "available"
    assert state(seen_ago=60.001, status="Available") == "offline"
    assert state(seen_ago=None, status="Available") == "offline"
    assert state(seen_ago=1, status="Unknown") == "offline"
    assert state(seen_ago=1, status="Available", charger="Faulted") == "faulted"
    assert state(seen_ago=1, status="Unavailable") == "faulted"
    assert {state(seen_ago=1, status=s) for s in ("Preparing", "Charging", "SuspendedEV", "SuspendedEVSE",
                                                  "Finishing", "Reserved")} == {"charging"}
    counts = count_states(["available", "offline", "charging", "charging"])
    assert counts.as_json() == {"total": 4, "available": 1, "charging": 2, "faulted": 0, "offline": 1}


def test_a_reservation_id_tag_fits_ocpp_and_differs_per_reservation() -> None:
    secret = b"s" * 32
    lot = uuid.uuid4()
    tags = {reservation_id_tag(qr_token(secret=secret, reservation_id=uuid.uuid4(), lot_id=lot, not_after=T0))
            for _ in range(200)}
    assert len(tags) == 200 and all(len(t) == ID_TAG_MAX for t in tags)
