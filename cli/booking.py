"""`parkgrid reconcile`: rebuild Redis slot state from PostgreSQL and print what was repaired."""

from __future__ import annotations

import uuid

import typer

from booking import reconcile as rc
from booking.runtime import slot_store
from cli.common import emit, run_with_context
from core.context import AppContext


def register(app: typer.Typer) -> None:
    @app.command()
    def reconcile(lot: list[uuid.UUID] = typer.Option(None, "--lot", help="only these lots (repeatable)"),
                  active_only: bool = typer.Option(False, "--active-only",
                                                   help="only lots with upcoming occupancy"),
                  json: bool = typer.Option(False, "--json")) -> None:
        """Rebuild slot bitmaps and counters from PostgreSQL (all lots by default); report the drift repaired."""
        async def job(ctx: AppContext) -> dict[str, object]:
            now = ctx.clock.now()
            lots = list(lot) if lot else (await rc.active_lot_ids(ctx.engine, now=now) if active_only else None)
            report = await rc.reconcile(engine=ctx.engine, slots=slot_store(ctx), now=now, lot_ids=lots)
            return report.as_json()

        emit(run_with_context(job), as_json=json)
