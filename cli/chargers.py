"""`parkgrid chargers create|revoke`: EV chargers of a lot (the password is printed once, stored hashed)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Awaitable, Callable

import typer

from cli.common import emit, run_with_context
from core.context import AppContext
from core.errors import DomainError

app = typer.Typer(no_args_is_help=True)


def _run(job: Callable[[AppContext], Awaitable[dict[str, object]]], *, as_json: bool) -> None:
    try:
        result = run_with_context(job)
    except DomainError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        raise SystemExit(1) from None
    emit(result, as_json=as_json)


@app.command("create")
def create(lot: uuid.UUID = typer.Option(..., help="the lot the charger stands in"),
           spot: uuid.UUID | None = typer.Option(None, help="the spot it charges (a spot of that lot)"),
           connectors: int = typer.Option(1, min=1, max=16, help="connectors (one car each)"),
           charge_point_id: str | None = typer.Option(None, "--id", help="its OCPP charge point id (default: generated)"),
           json: bool = typer.Option(False, "--json")) -> None:
    """Register a charger; prints its charge point id and OCPP Basic-auth password once."""
    from controllers.chargers import register_charger

    async def job(ctx: AppContext) -> dict[str, object]:
        pool = await ctx.pg()
        async with pool.acquire() as conn:
            made = await register_charger(conn=conn, lot_id=lot, spot_id=spot, connectors=connectors,
                                          charge_point_id=charge_point_id)
        return {"charge_point_id": made.charge_point_id, "password": made.password, "lot_id": str(made.lot_id),
                "connectors": connectors, "ocpp_path": f"/ocpp/{made.charge_point_id}"}

    _run(job, as_json=json)


@app.command("revoke")
def revoke(charge_point_id: str = typer.Option(..., "--id", help="the charge point id printed by `chargers create`"),
           json: bool = typer.Option(False, "--json")) -> None:
    """Revoke a charger at once: its handshakes are refused and an open connection is closed."""
    from controllers.chargers import announce_revocation, revoke_charger

    async def job(ctx: AppContext) -> dict[str, object]:
        pool = await ctx.pg()
        async with pool.acquire() as conn:
            lot_id = await revoke_charger(conn=conn, charge_point_id=charge_point_id, now=ctx.clock.now())
        await announce_revocation(ctx, charge_point_id)
        return {"charge_point_id": charge_point_id, "lot_id": str(lot_id), "revoked": True}

    _run(job, as_json=json)
