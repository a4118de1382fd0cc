"""`parkgrid partners webhooks add|rotate-secret|list`: partners' signed webhooks (secrets are printed once)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Awaitable, Callable

import typer

from cli.common import emit, run_with_context
from core.context import AppContext
from core.errors import DomainError
from geo.webhooks import EVENTS, list_webhooks, rotate_secret, subscribe

app = typer.Typer(no_args_is_help=True)


def _run(job: Callable[[AppContext], Awaitable[dict[str, object]]], *, as_json: bool) -> None:
    try:
        result = run_with_context(job)
    except DomainError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        raise SystemExit(1) from None
    emit(result, as_json=as_json)


@app.command("add")
def add(partner: uuid.UUID = typer.Option(..., "--partner", help="the partner id"),
        url: str = typer.Option(..., help="where to POST (http or https)"),
        events: str = typer.Option(",".join(EVENTS), help=f"comma-separated, among {', '.join(EVENTS)}"),
        json: bool = typer.Option(False, "--json")) -> None:
    """Subscribe a partner's URL to lot events; prints the webhook id and its signing secret once."""
    wanted = [e.strip() for e in events.split(",") if e.strip()]

    async def job(ctx: AppContext) -> dict[str, object]:
        async with ctx.engine.begin() as conn:
            webhook_id, secret = await subscribe(conn, partner_id=partner, url=url, events=wanted,
                                                 now=ctx.clock.now())
        return {"webhook_id": str(webhook_id), "secret": secret, "events": sorted(set(wanted))}

    _run(job, as_json=json)


@app.command("rotate-secret")
def rotate(webhook: uuid.UUID = typer.Option(..., "--webhook", help="the webhook id"),
           json: bool = typer.Option(False, "--json")) -> None:
    """A new signing secret; deliveries carry a second signature with the old one for 24 hours."""
    async def job(ctx: AppContext) -> dict[str, object]:
        async with ctx.engine.begin() as conn:
            secret = await rotate_secret(conn, webhook_id=webhook, now=ctx.clock.now())
        return {"webhook_id": str(webhook), "secret": secret}

    _run(job, as_json=json)


@app.command("list")
def list_(partner: uuid.UUID | None = typer.Option(None, "--partner"), json: bool = typer.Option(False, "--json")) -> None:
    """Webhooks (of one partner, or all) with their pending and failed deliveries."""
    async def job(ctx: AppContext) -> dict[str, object]:
        async with ctx.engine.connect() as conn:
            return {"items": await list_webhooks(conn, partner_id=partner)}

    _run(job, as_json=json)
