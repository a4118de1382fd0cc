"""One vocabulary: the database's CHECK constraints list the enum's types, and search's split of the compatibility
rule is the rule itself."""

from __future__ import annotations

import re

import pytest

from core.errors import ValidationFailed
from core.vocabulary import SIZES, SPOT_TYPES, SpotType, compatible_types, usable_split
from tests.conftest import ROOT


def test_the_migrations_check_constraints_list_the_enum() -> None:
    schema = (ROOT / "migrations/versions/2026_11_21_1500-0001_initial_schema.py").read_text()
    lists = re.findall(r"CHECK \((?:type|vehicle_type) IN \(([^)]*)\)\)", schema)
    assert len(lists) >= 3
    for found in lists:
        assert tuple(t.strip(" '") for t in found.split(",")) == SPOT_TYPES == tuple(SpotType)


@pytest.mark.parametrize("vehicle", SPOT_TYPES)
def test_search_split_is_the_booking_rule(vehicle: str) -> None:
    base, overflow = usable_split(vehicle)
    assert set(base) == set(compatible_types(vehicle))
    assert set(base) | set(overflow) == set(compatible_types(vehicle, ev_overflow=True))
    assert vehicle in base and all(SIZES.index(s) >= SIZES.index(vehicle) for s in base if vehicle in SIZES
                                   and s in SIZES)


def test_unknown_types_are_422_on_vehicle_type() -> None:
    with pytest.raises(ValidationFailed) as err:
        compatible_types("tank")
    assert err.value.loc == ("body", "vehicle_type")
    assert usable_split(None) == (SPOT_TYPES, ())
