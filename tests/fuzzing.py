"""Schemathesis against the real app: a small world with every kind of credential, the app served by uvicorn on a
thread of this process (its own event loop, the test's clock), and the Schemathesis CLI run against its
/openapi.json with a configuration written from the world.

Generic on purpose: credentials go by security scheme name (HTTPBearer, DeviceKey, PartnerKey), and every path
parameter named in FIXED_PARAMETERS gets an object of the world, so routers added later are fuzzed with no change
here unless they name a new kind of id. Used by tests/api/test_fuzz_schemathesis.py (bounded) and `make fuzz`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import uvicorn
from pydantic import SecretStr
from sqlalchemy import text

from api.app import create_app
from core.accounts import add_vehicle, create_device, create_partner, create_user, ensure_organisation
from core.clock import ManualClock
from core.context import build_context
from core.security import create_access_token
from core.settings import Settings
from pricing.service import put_rate_card
from tests.factories import insert_lot
from tests.pricing_helpers import card
from tests.procs import free_port, wait_port

#: operations a driver calls (the bearer token is the driver's there; the operator's elsewhere)
DRIVER_PATHS = r"^/api/v1/(reservations|me)(/|$)"


@dataclass(frozen=True)
class FuzzWorld:
    ids: dict[str, str]  # path parameter name -> an object of the world
    operator_token: str
    driver_token: str
    device_key: str
    partner_key: str


async def build_fuzz_world(settings: Settings, clock: ManualClock) -> FuzzWorld:
    """An operator's lot with a rate card, a device and a mapped sensor; a driver with a vehicle and a held
    reservation; a partner."""
    ctx = build_context(settings, clock=clock)
    now, secret = clock.now(), settings.secret_bytes
    try:
        async with ctx.engine.begin() as conn:
            org = await ensure_organisation(conn=conn, name=f"fuzz-{uuid.uuid4().hex[:6]}")
            operator = await create_user(conn=conn, email=f"op-{uuid.uuid4().hex[:6]}@example.com",
                                         password="correct horse battery", role="operator", organisation_id=org)
            driver = await create_user(conn=conn, email=f"dr-{uuid.uuid4().hex[:6]}@example.com",
                                       password="correct horse battery")
            lot = await insert_lot(conn, organisation_id=org, spots={"regular": 6, "ev": 2})
            rules = card()["rules"]
            for rule in rules:
                rule["spot_types"] = ["regular", "compact", "ev"]
            await put_rate_card(conn, lot_id=lot, data=card(rules=rules, monthly_pass_amount=9000), now=now)
            _, device_key = await create_device(conn=conn, lot_id=lot)
            _, partner_key = await create_partner(conn=conn, name="fuzz partner")
            vehicle = await add_vehicle(conn=conn, secret=secret, user_id=driver.id, plate="FUZZ1",
                                        vehicle_type="regular", handicap_permit=False, now=now)
            spot = (await conn.execute(text("SELECT id, level_id, label FROM spots WHERE lot_id = :l ORDER BY idx"
                                            " LIMIT 1"), {"l": lot})).one()
            gate = (await conn.execute(text("SELECT id FROM gates WHERE lot_id = :l ORDER BY direction LIMIT 1"),
                                       {"l": lot})).scalar_one()
        from booking import holds
        from booking.wiring import booking_deps

        held = await holds.hold_reservation(
            deps=booking_deps(ctx), user_id=driver.id, lot_id=lot, vehicle_type="regular",
            starts_at=now + timedelta(hours=2), ends_at=now + timedelta(hours=4), plate="FUZZ1", now=now)
        from booking.pass_subscriptions import buy_pass

        subscription = await buy_pass(deps=booking_deps(ctx), user_id=driver.id, lot_id=lot, plate="FUZZ2",
                                      payment_token="pm_card_visa", spot_type=None, now=now)
        async with ctx.engine.connect() as conn:
            intent = await conn.scalar(text("SELECT intent_id FROM payments WHERE reservation_id = :r"),
                                       {"r": held.id})
    finally:
        await ctx.aclose()

    def token(user_id: uuid.UUID, role: str, org_id: uuid.UUID | None) -> str:
        return create_access_token(secret=secret, user_id=user_id, role=role, organisation_id=org_id,
                                   issuer=settings.jwt_issuer, audience=settings.jwt_audience,
                                   ttl_seconds=settings.access_token_ttl_seconds, now=now)

    ids = {"lot_id": lot, "gate_id": gate, "level_id": spot.level_id, "spot_id": spot.id, "vehicle_id": vehicle.id,
           "reservation_id": held.id, "sensor_id": spot.label, "intent_id": intent,
           "subscription_id": subscription.id}
    return FuzzWorld(ids={k: str(v) for k, v in ids.items()}, operator_token=token(operator.id, "operator", org),
                     driver_token=token(driver.id, "driver", None), device_key=device_key, partner_key=partner_key)


class ServedApp:
    """The app under uvicorn on a thread of this process (so it shares the test's ManualClock)."""

    def __init__(self, settings: Settings, clock: ManualClock) -> None:
        self.port = free_port()
        config = uvicorn.Config(create_app(settings, clock=clock), host="127.0.0.1", port=self.port,
                                log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="fuzzed-app", daemon=True)

    def __enter__(self) -> ServedApp:
        self.thread.start()
        wait_port(self.port, timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _toml(value: object) -> str:
    return json.dumps(value)  # a JSON string or number is a TOML basic string or number


def fuzz_config(world: FuzzWorld, *, max_examples: int, seed: int, phases: list[str]) -> str:
    """A schemathesis.toml for the world: every check on, credentials by security scheme, ids fixed."""
    lines = [f"seed = {seed}", "", "[generation]", f"max-examples = {max_examples}", "deterministic = true", "",
             "[phases]", *(f"{p}.enabled = {'true' if p in phases else 'false'}"
                           for p in ("examples", "coverage", "fuzzing", "stateful")), "",
             "[checks]", "enabled = true",
             # JSON Schema cannot say "a window in the future" or "a level of this lot" (422 naming the field), nor
             # which payment tokens a card network takes (402): this check accepts those refusals; every other
             # check stays as Schemathesis defines it
             "positive_data_acceptance.expected-statuses = "
             '["2xx", "3xx", "401", "402", "403", "404", "409", "422", "429"]', "",
             "[auth.openapi.HTTPBearer]", f"bearer = {_toml(world.operator_token)}", "",
             "[auth.openapi.DeviceKey]", f"api_key = {_toml(world.device_key)}", "",
             "[auth.openapi.PartnerKey]", f"api_key = {_toml(world.partner_key)}", "",
             "[parameters]", *(f'"path.{name}" = {_toml(value)}' for name, value in world.ids.items()), "",
             "[[operations]]", 'include-path = "/api/v1/payments/stripe/webhook"',
             # only a payload signed with the webhook secret is accepted: no schema can generate one
             'checks.positive_data_acceptance.expected-statuses = ["2xx", "400"]', "",
             "[[operations]]", f"include-path-regex = {_toml(DRIVER_PATHS)}",
             f"headers = {{ Authorization = {_toml('Bearer ' + world.driver_token)} }}", ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class FuzzRun:
    returncode: int
    output: str
    seconds: float


def run_schemathesis(base_url: str, config: str, workdir: Path, *, max_time: int | None = None,
                     timeout: float = 600) -> FuzzRun:
    """The Schemathesis CLI against the served app's document; returns its exit code and report."""
    path = workdir / "schemathesis.toml"
    path.write_text(config)
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(path), "--no-color", "run",
           f"{base_url}/openapi.json", "--workers", "1"]
    if max_time:
        cmd += ["--max-time", str(max_time)]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"}
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    return FuzzRun(proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - started)


def fuzz(settings: Settings, workdir: Path, *, max_examples: int, seed: int, phases: list[str],
         max_time: int | None = None, timeout: float = 600) -> FuzzRun:
    """Build the world, serve the app and run Schemathesis against it."""
    clock = ManualClock()
    # a webhook secret, so unsigned webhooks are the 400 they are in production (not 503 "not configured")
    settings = settings.model_copy(update={"stripe_webhook_secret": SecretStr("whsec_fuzz"), "rate_limits": "off"})
    world = asyncio.run(build_fuzz_world(settings, clock))
    with ServedApp(settings, clock) as served:
        return run_schemathesis(served.url, fuzz_config(world, max_examples=max_examples, seed=seed, phases=phases),
                                workdir, max_time=max_time, timeout=timeout)


