"""The reservation lifecycle as an explicit state machine (docs/design.md, Lifecycle)."""

from __future__ import annotations

from core.errors import InvalidTransition

HELD, CONFIRMED, ACTIVE = "held", "confirmed", "active"
COMPLETED, CANCELLED, EXPIRED, NO_SHOW = "completed", "cancelled", "expired", "no_show"
STATUSES = (HELD, CONFIRMED, ACTIVE, COMPLETED, CANCELLED, EXPIRED, NO_SHOW)
#: statuses that occupy a spot (the exclusion constraints cover exactly these)
OCCUPYING = (HELD, CONFIRMED, ACTIVE)
TERMINAL = frozenset({COMPLETED, CANCELLED, EXPIRED, NO_SHOW})

TRANSITIONS: dict[str, frozenset[str]] = {
    HELD: frozenset({CONFIRMED, EXPIRED, CANCELLED}),
    CONFIRMED: frozenset({ACTIVE, NO_SHOW, CANCELLED}),
    ACTIVE: frozenset({COMPLETED}),
    COMPLETED: frozenset(),
    CANCELLED: frozenset(),
    EXPIRED: frozenset(),
    NO_SHOW: frozenset(),
}


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def check_transition(current: str, target: str) -> None:
    """Raise InvalidTransition (409) unless current -> target is an edge of the lifecycle."""
    if not can_transition(current, target):
        raise InvalidTransition(f"a {current} reservation cannot become {target}", status_from=current,
                                status_to=target)
