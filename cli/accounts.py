"""`parkgrid users|devices|partners ...`: accounts and keys (keys are printed once)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Awaitable, Callable

import typer

from cli.common import emit, run_with_context
from controllers import mqtt_identity
from core.accounts import (
    create_device,
    create_partner,
    create_user,
    ensure_organisation,
    revoke_device,
    revoke_partner,
    revoke_user,
)
from core.context import AppContext
from core.errors import DomainError
from core.keyring import announce_revocation

users = typer.Typer(no_args_is_help=True)
devices = typer.Typer(no_args_is_help=True)
partners = typer.Typer(no_args_is_help=True)


def _run(job: Callable[[AppContext], Awaitable[dict[str, object]]], *, as_json: bool) -> None:
    """Run a job and print its result; a domain error is one line on stderr and exit status 1."""
    try:
        result = run_with_context(job)
    except DomainError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        raise SystemExit(1) from None
    emit(result, as_json=as_json)


def _create_user(role: str, email: str, password: str, org: str | None, as_json: bool) -> None:
    async def job(ctx: AppContext) -> dict[str, object]:
        async with ctx.engine.begin() as conn:
            org_id = await ensure_organisation(conn=conn, name=org) if org else None
            if role == "operator" and org_id is None:
                org_id = await ensure_organisation(conn=conn, name=f"{email} organisation")
            user = await create_user(conn=conn, email=email, password=password, role=role, organisation_id=org_id)
        return {"id": str(user.id), "email": user.email, "role": role,
                "organisation_id": str(org_id) if org_id else None}

    _run(job, as_json=as_json)


@users.command("create-operator")
def create_operator(email: str = typer.Option(...), password: str = typer.Option(..., min=8),
                    org: str | None = typer.Option(None, help="organisation name (created if missing)"),
                    json: bool = typer.Option(False, "--json")) -> None:
    """Create an operator of an organisation's lots."""
    _create_user("operator", email, password, org, json)


@users.command("create-planner")
def create_planner(email: str = typer.Option(...), password: str = typer.Option(...),
                   org: str | None = typer.Option(None), json: bool = typer.Option(False, "--json")) -> None:
    """Create a city planner (exports and open statistics)."""
    _create_user("planner", email, password, org, json)


@users.command("create-admin")
def create_admin(email: str = typer.Option(...), password: str = typer.Option(...),
                 json: bool = typer.Option(False, "--json")) -> None:
    """Create an administrator."""
    _create_user("admin", email, password, None, json)


@users.command("revoke")
def user_revoke(email: str = typer.Option(...), json: bool = typer.Option(False, "--json")) -> None:
    """Revoke a user at once: sign-in refused, access and refresh tokens refused from the next request on."""
    async def job(ctx: AppContext) -> dict[str, object]:
        async with ctx.engine.begin() as conn:
            user_id = await revoke_user(conn=conn, email=email, now=ctx.clock.now())
        await announce_revocation(redis=ctx.redis, prefix=ctx.settings.redis_prefix)  # after the commit
        return {"id": str(user_id), "email": email, "revoked": True}

    _run(job, as_json=json)


@devices.command("create")
def device_create(lot: uuid.UUID = typer.Option(..., help="the lot this device controls"),
                  name: str = typer.Option("controller"), json: bool = typer.Option(False, "--json")) -> None:
    """Register a gate or sensor controller for one lot; prints its key once."""
    async def job(ctx: AppContext) -> dict[str, object]:
        async with ctx.engine.begin() as conn:
            device_id, key = await create_device(conn=conn, lot_id=lot, name=name)
        out: dict[str, object] = {"device_id": str(device_id), "lot_id": str(lot), "key": key}
        admin = ctx.settings.mqtt_admin_url
        if admin is not None:  # its MQTT client: username = device id, password = key, its lot's topics only
            await mqtt_identity.grant_device(admin_url=admin.get_secret_value(), device_id=device_id, lot_id=lot,
                                             password=key)
            out["mqtt"] = {"username": str(device_id), "topics": mqtt_identity.lot_topics(lot)}
        return out

    _run(job, as_json=json)


@devices.command("revoke")
def device_revoke(device: uuid.UUID = typer.Option(..., "--device", help="the device id printed by `devices create`"),
                  json: bool = typer.Option(False, "--json")) -> None:
    """Revoke a controller's key at once (its requests get 401 from then on)."""
    async def job(ctx: AppContext) -> dict[str, object]:
        async with ctx.engine.begin() as conn:
            lot_id = await revoke_device(conn=conn, device_id=device, now=ctx.clock.now())
        await announce_revocation(redis=ctx.redis, prefix=ctx.settings.redis_prefix)  # after the commit
        admin = ctx.settings.mqtt_admin_url
        if admin is not None:  # the broker disconnects it and refuses its credentials
            await mqtt_identity.revoke_device(admin_url=admin.get_secret_value(), device_id=device)
        return {"device_id": str(device), "lot_id": str(lot_id), "revoked": True}

    _run(job, as_json=json)


@partners.command("create")
def partner_create(name: str = typer.Option(...), quota: str = typer.Option("600/minute", help="e.g. 600/minute"),
                   json: bool = typer.Option(False, "--json")) -> None:
    """Register an open data partner; prints its API key once."""
    async def job(ctx: AppContext) -> dict[str, object]:
        async with ctx.engine.begin() as conn:
            partner_id, key = await create_partner(conn=conn, name=name, quota=quota)
        return {"partner_id": str(partner_id), "api_key": key}

    _run(job, as_json=json)


@partners.command("revoke")
def partner_revoke(partner: uuid.UUID = typer.Option(..., "--partner", help="the partner id"),
                   json: bool = typer.Option(False, "--json")) -> None:
    """Revoke a partner's API key at once."""
    async def job(ctx: AppContext) -> dict[str, object]:
        async with ctx.engine.begin() as conn:
            await revoke_partner(conn=conn, partner_id=partner, now=ctx.clock.now())
        await announce_revocation(redis=ctx.redis, prefix=ctx.settings.redis_prefix)  # after the commit
        return {"partner_id": str(partner), "revoked": True}

    _run(job, as_json=json)
