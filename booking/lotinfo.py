"""What a hold reads of its lot, remembered per process so a hold usually reads nothing before Redis decides."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LotInfo:
    """What a hold reads of its lot (HOLD_LOT), with the row versions of the lot and of its rate card that its
    write checks: remembered per process (LotInfos), so a hold usually reads nothing before Redis decides."""

    status: str
    ev_overflow: bool
    booking_horizon_days: int
    timezone: str
    lot_version: str
    card_body: str | None
    card_version: int | None
    card_row_version: str | None

    @classmethod
    def of(cls, record: Any) -> LotInfo:
        return cls(record["status"], record["ev_overflow"], record["booking_horizon_days"], record["timezone"],
                   record["lot_version"], record["card_body"], record["card_version"], record["card_row_version"])


class LotInfos:
    """The LotInfo of recently held lots, per process, least recently read dropped first. Nothing here is
    trusted blindly: every hold's write compares the row versions, so an entry is never stale for longer
    than one refused write, and there is no expiry to tune."""

    def __init__(self, max_entries: int = 20_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[uuid.UUID, LotInfo] = OrderedDict()

    def get(self, lot_id: uuid.UUID) -> LotInfo | None:
        return self._entries.get(lot_id)

    def put(self, lot_id: uuid.UUID, info: LotInfo) -> None:
        self._entries[lot_id] = info
        self._entries.move_to_end(lot_id)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
