"""WebSocket /ocpp/{charge_point_id}: ParkGrid's OCPP 1.6J central system endpoint.

The handshake is refused (HTTP 401, before any frame) unless the charger offers the `ocpp1.6` subprotocol and
HTTP Basic credentials (OCPP 1.6 security profile 1: the charge point id and its password) of a registered,
unrevoked charger whose id is the path's. The protocol itself is the `ocpp` library's
(controllers.ocpp_central.CentralChargePoint); `StarletteConnection` gives it the recv/send it expects.

`ChargerHub` keeps this process's open connections: a charger that reconnects with the same id replaces its
previous connection (closed), and a charger revoked anywhere (`parkgrid chargers revoke`, announced on a Redis
channel) is closed at once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from fastapi import APIRouter, WebSocket
from starlette.responses import Response
from starlette.websockets import WebSocketDisconnect, WebSocketState

from controllers.chargers import Charger, authenticate, ev_board, revoked_among
from controllers.ocpp_central import CentralChargePoint, CentralDeps
from core.context import AppContext
from core.keys import Keys
from core.logging import get_logger

log = get_logger("parkgrid.ocpp")
SUBPROTOCOL = "ocpp1.6"
router = APIRouter(tags=["ev chargers"])


class StarletteConnection:
    """The connection interface the `ocpp` library's ChargePoint uses (recv/send of text frames) over a Starlette
    WebSocket. A binary frame is handed on as text when it is UTF-8 (the library then judges it) and as "" (a
    malformed message) when it is not."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def recv(self) -> str:
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
        if message.get("text") is not None:
            return str(message["text"])
        try:
            return bytes(message.get("bytes") or b"").decode()
        except UnicodeDecodeError:
            return ""

    async def send(self, message: str) -> None:
        await self.websocket.send_text(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError, OSError):
                await self.websocket.close(code=code, reason=reason)


class ChargerHub:
    """This process's open charger connections, by charge point id; listens for revocations while any is open."""

    def __init__(self, redis: aioredis.Redis, channel: str, pg: Callable[[], Awaitable[asyncpg.Pool]]) -> None:
        self.redis, self.channel, self.pg = redis, channel, pg
        self.open: dict[str, StarletteConnection] = {}
        self._listener: asyncio.Task[None] | None = None
        #: set once the listener has subscribed and checked the open connections (cleared when it stops)
        self.listening = asyncio.Event()

    async def attach(self, charge_point_id: str, connection: StarletteConnection) -> None:
        previous = self.open.get(charge_point_id)
        self.open[charge_point_id] = connection
        if previous is not None:
            log.info("ocpp_replaced_connection", charge_point_id=charge_point_id)
            await previous.close(1000, "replaced by a new connection")
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen())

    async def detach(self, charge_point_id: str, connection: StarletteConnection) -> None:
        if self.open.get(charge_point_id) is connection:
            del self.open[charge_point_id]
        if not self.open and self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None

    async def revoked(self, charge_point_id: str) -> None:
        connection = self.open.get(charge_point_id)
        if connection is not None:
            log.info("ocpp_closed_revoked", charge_point_id=charge_point_id)
            await connection.close(1008, "charger revoked")

    async def _listen(self) -> None:
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    # revocations announced before this subscription (or while Redis was away) were missed
                    for charge_point_id in await revoked_among(pool=await self.pg(), charge_point_ids=list(self.open)):
                        await self.revoked(charge_point_id)
                    self.listening.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            data = message["data"]
                            await self.revoked(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                self.listening.clear()
                raise
            except Exception as exc:  # Redis away: heartbeats still find a revoked charger (controllers.charging)
                self.listening.clear()
                log.warning("ocpp_revocation_listener_failed", error=repr(exc)[:200])
                await asyncio.sleep(1.0)


def charger_hub(ctx: AppContext) -> ChargerHub:
    return ctx.shared("ocpp_hub", lambda: ChargerHub(ctx.redis, Keys(ctx.settings.redis_prefix).charger_revocations(),
                                                     ctx.pg))


def basic_credentials(headers: Any) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic` header, or None."""
    raw = headers.get("authorization", "")
    scheme, _, value = raw.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


async def _refuse(websocket: WebSocket, status: int, detail: str) -> None:
    headers = {"WWW-Authenticate": 'Basic realm="ParkGrid OCPP", charset="UTF-8"'} if status == 401 else {}
    try:
        await websocket.send_denial_response(Response(detail, status_code=status, headers=headers))
    except RuntimeError:  # a server without the denial-response extension: a close before accepting is a 403
        await websocket.close(code=1008)


async def _identify(ctx: AppContext, websocket: WebSocket, charge_point_id: str) -> Charger | None:
    creds = basic_credentials(websocket.headers)
    if creds is None or creds[0] != charge_point_id:
        return None
    pool = await ctx.pg()
    async with pool.acquire() as conn:
        return await authenticate(conn=conn, charge_point_id=charge_point_id, password=creds[1])


@router.websocket("/ocpp/{charge_point_id}")
async def ocpp_endpoint(websocket: WebSocket, charge_point_id: str) -> None:
    """A charger's OCPP 1.6J connection (subprotocol `ocpp1.6`, HTTP Basic auth)."""
    ctx: AppContext = websocket.app.state.ctx
    if SUBPROTOCOL not in websocket.scope.get("subprotocols", []):
        await _refuse(websocket, 400, "offer the ocpp1.6 subprotocol")
        return
    charger = await _identify(ctx, websocket, charge_point_id)
    if charger is None:
        log.info("ocpp_refused", charge_point_id=charge_point_id[:48])
        await _refuse(websocket, 401, "unknown charger or wrong password")
        return
    await websocket.accept(subprotocol=SUBPROTOCOL)
    settings = ctx.settings
    connection = StarletteConnection(websocket)
    point = CentralChargePoint(charger, connection, CentralDeps(
        pg=ctx.pg, clock=ctx.clock, secret=settings.secret_bytes, heartbeat_s=settings.ocpp_heartbeat_seconds,
        board=ev_board(ctx)))
    hub = charger_hub(ctx)
    await hub.attach(charger.charge_point_id, connection)
    log.info("ocpp_connected", charge_point_id=charger.charge_point_id, lot_id=str(charger.lot_id))
    try:
        # the charger went away, or its socket was closed here (revoked, replaced): both end the session
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await point.start()
    finally:
        await hub.detach(charger.charge_point_id, connection)
        log.info("ocpp_disconnected", charge_point_id=charger.charge_point_id)
