import itertools

import pytest

from booking import lifecycle as lc
from core.errors import InvalidTransition


def test_every_edge_of_the_design_and_nothing_else() -> None:
    allowed = {(a, b) for a, targets in lc.TRANSITIONS.items() for b in targets}
    assert allowed == {("held", "confirmed"), ("held", "expired"), ("held", "cancelled"),
                       ("confirmed", "active"), ("confirmed", "no_show"), ("confirmed", "cancelled"),
                       ("active", "completed")}
    for a, b in itertools.product(lc.STATUSES, repeat=2):
        if (a, b) in allowed:
            lc.check_transition(a, b)
        else:
            with pytest.raises(InvalidTransition):
                lc.check_transition(a, b)


def test_terminal_states_are_final() -> None:
    for status in lc.TERMINAL:
        assert not lc.TRANSITIONS[status]
