"""Holds written to PostgreSQL in batches: one statement for the holds that are ready at the same moment.

On this two-core machine a hold's single write cost the API as much CPU in its socket write (waking the
PostgreSQL backend) and asyncpg's per-statement work as in the rest of the booking, and PostgreSQL its own
per-statement and per-commit work. Holds that reach their write while another batch is being written wait
for it and go together in the next one (HOLD_WRITE_MANY): no timer, so a lone hold is written at once.

A batch only writes a hold under the single write's conditions and skips, rather than fails on, a hold that
meets a conflict; the caller then writes the skipped hold alone (booking.holds._write), which names the
reason or succeeds. The exclusion constraints stay the last word either way. Each batch is its own
transaction: a hold is answered only after the batch that wrote it committed. Holds sent with an
Idempotency-Key ride the same batches: the statement writes each one's key row with it (docs/adr/0015).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from booking import queries as q

#: holds per statement at most
MAX_BATCH = 64
#: batches being written at once per process (each on its own pooled connection)
MAX_IN_FLIGHT = 2

#: HOLD_WRITE's parameters, in order ($1..$28), as the batch's arrays
Params = Sequence[Any]


class HoldWriter:
    """Writes holds in batches on the raw pool; `write` answers the written row, or None when the hold was
    skipped (the caller writes it alone)."""

    def __init__(self, pool: Callable[[], Awaitable[asyncpg.Pool]], *, max_batch: int = MAX_BATCH,
                 max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self._pool = pool
        self.max_batch, self.max_in_flight = max_batch, max_in_flight
        self._pending: list[tuple[Params, asyncio.Future[asyncpg.Record | None]]] = []
        self._in_flight = 0
        #: batches written and holds in them, since start (tests and /metrics-style inspection)
        self.batches = self.holds = 0

    async def write(self, params: Params) -> asyncpg.Record | None:
        future: asyncio.Future[asyncpg.Record | None] = asyncio.get_running_loop().create_future()
        self._pending.append((params, future))
        if self._in_flight < self.max_in_flight:
            self._in_flight += 1
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
                await self._write_batch(batch)
        finally:
            self._in_flight -= 1

    async def _write_batch(self, batch: list[tuple[Params, asyncio.Future[asyncpg.Record | None]]]) -> None:
        columns = [list(col) for col in zip(*(params for params, _ in batch), strict=True)]
        try:
            async with (await self._pool()).acquire() as con:  # autocommit: the statement is its transaction
                rows = await con.fetch(q.HOLD_WRITE_MANY, *columns)
        except (asyncpg.DeadlockDetectedError, asyncpg.IntegrityConstraintViolationError):
            rows = []  # every hold of the batch is written alone, which sorts out who had the spot
        except Exception as exc:  # the database is unreachable, say: each hold fails as a single write would
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # cancelled (shutdown): so are the holds waiting on this batch
            for _, future in batch:
                future.cancel()
            raise
        self.batches += 1
        self.holds += len(batch)
        written: dict[uuid.UUID, asyncpg.Record] = {row["id"]: row for row in rows}
        for params, future in batch:
            if not future.done():
                future.set_result(written.get(params[1]))
