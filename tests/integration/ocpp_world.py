"""Set-up for the OCPP tests: the real app served by uvicorn on a free port in the test's event loop (so the test's
ManualClock is the server's), chargers registered through the CLI, and the `ocpp` library's own ChargePoint as
the charger, over the `websockets` library."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import uvicorn
from ocpp.v16 import ChargePoint as OcppChargePoint
from ocpp.v16 import call
from typer.testing import CliRunner
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from api.app import create_app
from cli.app import app as cli
from core.context import AppContext
from core.settings import Settings
from tests.conftest import TEST_SECRET
from tests.procs import free_port


async def run_cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {"PARKGRID_DATABASE_URL": settings.database_url, "PARKGRID_SECRET_KEY": TEST_SECRET,
           "PARKGRID_REDIS_URL": settings.redis_url, "PARKGRID_REDIS_PREFIX": settings.redis_prefix,
           "PARKGRID_BROKER_URL": settings.broker_url}
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


@dataclass
class NewCharger:
    charge_point_id: str
    password: str


async def create_charger(settings: Settings, lot_id: uuid.UUID, *extra: str) -> NewCharger:
    code, out, err = await run_cli(settings, "chargers", "create", "--lot", str(lot_id), *extra, "--json")
    assert code == 0, err
    made = json.loads(out)
    return NewCharger(made["charge_point_id"], made["password"])


@contextlib.asynccontextmanager
async def serving(settings: Settings, ctx: AppContext) -> AsyncIterator[int]:
    """The app (this test's settings, context and clock) served by uvicorn on a free port; yields the port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, context=ctx), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on", ws="websockets-sansio"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def open_ws(port: int, cp_id: str, password: str | None, *, subprotocol: bool = True,
            user: str | None = None) -> Any:
    return connect(f"ws://127.0.0.1:{port}/ocpp/{cp_id}",
                   subprotocols=[Subprotocol("ocpp1.6")] if subprotocol else None,
                   additional_headers=basic(user or cp_id, password) if password is not None else None,
                   open_timeout=5)


class Charger:
    """A charger: the `ocpp` library's ChargePoint reading its connection in a task."""

    def __init__(self, cp_id: str, ws: ClientConnection) -> None:
        self.cp = OcppChargePoint(cp_id, ws, response_timeout=5)
        self.ws = ws
        self.task = asyncio.create_task(self.cp.start())

    async def call(self, payload: Any, **kwargs: Any) -> Any:
        return await self.cp.call(payload, suppress=False, **kwargs)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        await self.ws.close()


@contextlib.asynccontextmanager
async def charger(port: int, cp_id: str, password: str) -> AsyncIterator[Charger]:
    async with open_ws(port, cp_id, password) as ws:
        assert ws.subprotocol == "ocpp1.6"
        c = Charger(cp_id, ws)
        try:
            yield c
        finally:
            await c.close()


async def boot(c: Charger) -> Any:
    return await c.call(call.BootNotification(charge_point_model="PG-22", charge_point_vendor="ParkGridTest"))


async def status(c: Charger, connector: int, state: str, at: datetime, error: str = "NoError") -> None:
    await c.call(call.StatusNotification(connector_id=connector, error_code=error, status=state,
                                         timestamp=at.isoformat()))
