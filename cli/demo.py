"""`parkgrid seed demo`: a deterministic demo city and demo credentials."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import time

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import text

from cli.common import emit, run_with_context
from core.accounts import create_device, create_partner, create_user
from core.context import AppContext
from core.errors import Conflict
from geo.seed import DEMO_ORG_ID, plan_city, seed_city

app = typer.Typer(no_args_is_help=True)

DEMO_USERS = {
    "operator": ("operator@demo.parkgrid.dev", "demo-operator-pass"),
    "driver": ("driver@demo.parkgrid.dev", "demo-driver-pass"),
    "planner": ("planner@demo.parkgrid.dev", "demo-planner-pass"),
}


def _demo_key(secret: bytes, prefix: str, what: str) -> str:
    """Stable per installation (derived from the secret key), so re-running the demo prints the same keys."""
    return f"{prefix}_demo_" + hmac.new(secret, what.encode(), hashlib.sha256).hexdigest()[:32]


@app.command("demo")
def demo(lots: int = typer.Option(200, min=1, max=200_000), seed: int = typer.Option(42),
         if_empty: bool = typer.Option(False, "--if-empty", help="skip the lots when the database has lots"),
         json: bool = typer.Option(False, "--json")) -> None:
    """Seed a synthetic city around San Francisco plus a demo operator, driver, planner, partner and device."""
    plans = plan_city(lots=lots, seed=seed)

    async def job(ctx: AppContext) -> dict[str, object]:
        started = time.perf_counter()
        async with ctx.engine.connect() as conn:
            have = await conn.scalar(text("SELECT count(*) FROM lots"))
            already = await conn.scalar(text("SELECT count(*) FROM lots WHERE id = :id"), {"id": plans[0].id})
        totals = {"lots": 0, "spots": 0}
        if not (already or (if_empty and have)):
            with Progress(TextColumn("seeding lots"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          transient=json, disable=json) as bar:
                task = bar.add_task("lots", total=len(plans))
                totals = await seed_city(ctx.engine, plans, progress=lambda n: bar.advance(task, n))
        secret = ctx.settings.secret_bytes
        creds: dict[str, object] = {}
        async with ctx.engine.begin() as conn:
            for role, (email, password) in DEMO_USERS.items():
                org = DEMO_ORG_ID if role == "operator" else None
                with contextlib.suppress(Conflict):
                    await create_user(conn=conn, email=email, password=password, role=role, organisation_id=org)
                creds[role] = {"email": email, "password": password}
            _, partner_key = await create_partner(conn=conn, name="Demo navigation partner",
                                                  key=_demo_key(secret, "pgp", "partner"))
            first_lot = await conn.scalar(text("SELECT id FROM lots WHERE organisation_id = :o ORDER BY name LIMIT 1"),
                                          {"o": DEMO_ORG_ID})
            device_key, device_id = None, None
            if first_lot:
                device_id, device_key = await create_device(conn=conn, lot_id=first_lot, name="Demo gate controller",
                                                    key=_demo_key(secret, "pgd", f"device:{first_lot}"))
        return {"lots_created": totals["lots"], "spots_created": totals["spots"],
                "seconds": round(time.perf_counter() - started, 2), "users": creds,
                "partner_api_key": partner_key, "device": {"lot_id": str(first_lot), "key": device_key,
                                                            "device_id": str(device_id) if device_id else None}}

    emit(run_with_context(job), as_json=json)
