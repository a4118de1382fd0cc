"""Cut a UTC window into runs of one band each, walking local wall time across midnights and DST changes.

Durations are always real elapsed time (UTC differences), so a 23 h or 25 h DST day is charged
for the time the car actually stood there; the wall clock only decides *which* band applies.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pricing.rates import RateCard

_TICK = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Run:
    """A stretch of the window spent under one rule (contiguous, same rule index)."""

    rule: int
    starts_at: datetime
    ends_at: datetime

    @property
    def micros(self) -> int:
        """Elapsed microseconds, exact (timedelta arithmetic, no float)."""
        return (self.ends_at - self.starts_at) // timedelta(microseconds=1)


def _next_transition(tz: ZoneInfo, lo: datetime, hi: datetime) -> datetime | None:
    """First instant in (lo, hi] whose UTC offset differs from lo's, found by bisection (exact to 1 us)."""
    offset = lo.astimezone(tz).utcoffset()
    if hi.astimezone(tz).utcoffset() == offset:
        return None  # zones never change offset twice within one band piece (< 24 h)
    while hi - lo > _TICK:
        mid = lo + (hi - lo) // 2
        if mid.astimezone(tz).utcoffset() == offset:
            lo = mid
        else:
            hi = mid
    return hi


def band_runs(*, card: RateCard, spot_type: str, starts_at: datetime, ends_at: datetime, tz: ZoneInfo) -> list[Run]:
    """The window [starts_at, ends_at) as consecutive runs of one rule each (adjacent same-rule runs merged)."""
    runs: list[Run] = []
    t = starts_at
    while t < ends_at:
        local = t.astimezone(tz)
        minute = local.hour * 60 + local.minute
        _, piece_end, rule = card.band_at(spot_type=spot_type, day=local.date(), minute=minute)
        # Wall-clock distance to the piece's end; pieces never pass midnight (piece_end <= 24:00).
        wall_now = local.replace(tzinfo=None)
        wall_end = wall_now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(minutes=piece_end)
        nxt = t + (wall_end - wall_now)
        # If the offset changes before then, stop at the change and re-read the wall clock there.
        nxt = _next_transition(tz, t, nxt) or nxt
        nxt = min(nxt, ends_at)
        if runs and runs[-1].rule == rule and runs[-1].ends_at == t:
            runs[-1] = Run(rule, runs[-1].starts_at, nxt)
        else:
            runs.append(Run(rule, t, nxt))
        t = nxt
    return runs


def cut_run(run: Run, cuts: list[datetime]) -> list[tuple[int, Run]]:
    """Cut a run at the given sorted instants; each piece comes with the index of the span it falls in."""
    period = bisect_right(cuts, run.starts_at)
    pieces, start = [], run.starts_at
    while period < len(cuts) and cuts[period] < run.ends_at:
        pieces.append((period, Run(run.rule, start, cuts[period])))
        start, period = cuts[period], period + 1
    pieces.append((period, Run(run.rule, start, run.ends_at)))
    return pieces
