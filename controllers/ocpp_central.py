"""ParkGrid as an OCPP 1.6J central system: one `ocpp` library ChargePoint per connected charger, its `@on`
handlers calling controllers.charging. The library frames, validates (the OCPP 1.6 JSON schemas it ships) and
answers CALLERRORs; api/ocpp.py accepts the WebSocket and hands this class a connection with recv/send.

Every answer is sent after the write it reports has committed (docs/design.md invariant 9). A message that can't be
parsed at all gets a CALLERROR too (the library would only log it) and the connection lives on; a charger revoked
while connected is closed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import asyncpg
from ocpp.exceptions import FormatViolationError, OCPPError, PropertyConstraintViolationError, SecurityError
from ocpp.messages import Call, CallError, unpack
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as OcppChargePoint
from ocpp.v16 import call_result
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus

from controllers import charging
from controllers.chargers import Charger, EvBoard
from core.clock import Clock
from core.errors import ValidationFailed
from core.logging import get_logger

log = get_logger("parkgrid.ocpp")
T = TypeVar("T")


class _WithholdFrames(logging.Filter):
    """The library logs every frame it sends and receives (INFO) and the frame of a failed call (ERROR): frames
    carry id tags, which may be plates (personal data). Its records keep their text, never the frame."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple("<frame withheld>" for _ in record.args) if isinstance(record.args, tuple) else ()
        return True


#: the stdlib logger the library's ChargePoint writes to: warnings and errors only, frames withheld
FRAMES = logging.getLogger("parkgrid.ocpp.frames")
FRAMES.setLevel(logging.WARNING)
FRAMES.addFilter(_WithholdFrames())


class Connection(Protocol):
    """What the library's ChargePoint reads and writes: one text frame at a time."""

    async def recv(self) -> str: ...

    async def send(self, message: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


@dataclass
class CentralDeps:
    pg: Callable[[], Awaitable[asyncpg.Pool]]
    clock: Clock
    secret: bytes
    heartbeat_s: int
    #: the process's charger board, re-read for the charger's lot after each StatusNotification (None: not kept)
    board: EvBoard | None = None


def _stamp(value: str | None) -> datetime | None:
    """An OCPP dateTime (RFC 3339); one without an offset is read as UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PropertyConstraintViolationError(description=f"not a date-time: {value!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _unique_id(raw: Any) -> str:
    """The UniqueId of a message that failed to parse, when it has one; "-1" (as OCPP 2.0.1 says) otherwise."""
    try:
        msg = json.loads(raw)
    except (ValueError, TypeError):
        return "-1"
    if isinstance(msg, list) and len(msg) > 1 and isinstance(msg[1], str) and 0 < len(msg[1]) <= 36:
        return msg[1]
    return "-1"


class CentralChargePoint(OcppChargePoint):
    """One connected charger."""

    def __init__(self, charger: Charger, connection: Connection, deps: CentralDeps) -> None:
        super().__init__(charger.charge_point_id, connection, logger=FRAMES)
        self.charger, self.deps, self.connection = charger, deps, connection

    async def route_message(self, raw_msg: Any) -> None:
        """Calls go to their handler (the library's routing); a frame that is not an OCPP message gets a
        CALLERROR instead of being dropped; results and errors are ignored (ParkGrid sends no calls)."""
        try:
            msg = unpack(raw_msg)
        except OCPPError as exc:
            log.info("ocpp_malformed", charge_point_id=self.id, error=exc.code)
            await self._send(CallError(_unique_id(raw_msg), exc.code, exc.description, exc.details or {}).to_json())
            return
        if isinstance(msg, Call):
            if not isinstance(msg.payload, dict):
                error = FormatViolationError(description="payload must be a JSON object")
                await self._send(msg.create_call_error(error).to_json())
                return
            await super().route_message(raw_msg)

    async def _db(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run one message's work on a pooled connection; domain refusals become OCPP errors; a charger revoked
        meanwhile is disconnected."""
        pool = await self.deps.pg()
        try:
            async with pool.acquire() as conn:
                return await work(conn)
        except ValidationFailed as exc:
            raise PropertyConstraintViolationError(description=exc.detail) from None
        except charging.UnknownCharger:
            log.info("ocpp_revoked_while_connected", charge_point_id=self.id)
            await self.connection.close(1008, "charger revoked")
            raise SecurityError(description="charger revoked") from None

    @property
    def now(self) -> datetime:
        return self.deps.clock.now()

    @on(Action.boot_notification)
    async def on_boot_notification(self, charge_point_vendor: str, charge_point_model: str,
                                   **extra: Any) -> call_result.BootNotification:
        now = self.now
        await self._db(lambda conn: charging.boot(
            conn=conn, charger=self.charger, vendor=charge_point_vendor, model=charge_point_model,
            serial=extra.get("charge_point_serial_number"), firmware=extra.get("firmware_version"),
            interval_s=self.deps.heartbeat_s, now=now))
        return call_result.BootNotification(current_time=now.isoformat(), interval=self.deps.heartbeat_s,
                                            status=RegistrationStatus.accepted)

    @on(Action.heartbeat)
    async def on_heartbeat(self) -> call_result.Heartbeat:
        now = self.now
        await self._db(lambda conn: charging.seen(conn=conn, charger=self.charger, now=now))
        return call_result.Heartbeat(current_time=now.isoformat())

    @on(Action.status_notification)
    async def on_status_notification(self, connector_id: int, error_code: str, status: str,
                                     **extra: Any) -> call_result.StatusNotification:
        now, at = self.now, _stamp(extra.get("timestamp"))
        await self._db(lambda conn: charging.record_status(
            conn=conn, charger=self.charger, connector_id=connector_id, status=status, error_code=error_code,
            at=at, now=now))
        return call_result.StatusNotification()

    @after(Action.status_notification)
    async def after_status_notification(self, **_: Any) -> None:
        """Once the answer is sent: this process's searches see the lot's new counts at once."""
        board = self.deps.board
        if board is None:
            return
        try:
            pool = await self.deps.pg()
            async with pool.acquire() as conn:
                await board.refresh_lot(conn=conn, lot_id=self.charger.lot_id, now=self.now)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            log.warning("ev_board_lot_refresh_failed", error=repr(exc)[:200])  # the next full read catches up

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str) -> call_result.Authorize:
        now = self.now
        ok = await self._db(lambda conn: charging.authorize(conn=conn, charger=self.charger, id_tag=id_tag,
                                                            secret=self.deps.secret, now=now))
        return call_result.Authorize(id_tag_info=_tag_info(ok))

    @on(Action.start_transaction)
    async def on_start_transaction(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str,
                                   **extra: Any) -> call_result.StartTransaction:
        now, at = self.now, _stamp(timestamp)
        assert at is not None
        started = await self._db(lambda conn: charging.start_transaction(
            conn=conn, charger=self.charger, connector_id=connector_id, id_tag=id_tag, meter_start_wh=meter_start,
            at=at, secret=self.deps.secret, now=now))
        return call_result.StartTransaction(transaction_id=started.transaction_id,
                                            id_tag_info=_tag_info(started.accepted))

    @on(Action.stop_transaction)
    async def on_stop_transaction(self, meter_stop: int, timestamp: str, transaction_id: int,
                                  **extra: Any) -> call_result.StopTransaction:
        now, at = self.now, _stamp(timestamp)
        assert at is not None
        await self._db(lambda conn: charging.stop_transaction(
            conn=conn, charger=self.charger, transaction_id=transaction_id, meter_stop_wh=meter_stop, at=at,
            reason=extra.get("reason"), now=now))
        return call_result.StopTransaction()

    @on(Action.meter_values)
    async def on_meter_values(self, connector_id: int, meter_value: list[dict[str, Any]],
                              **extra: Any) -> call_result.MeterValues:
        now = self.now
        await self._db(lambda conn: charging.meter_values(
            conn=conn, charger=self.charger, connector_id=connector_id, transaction_id=extra.get("transaction_id"),
            values=meter_value, now=now))
        return call_result.MeterValues()


def _tag_info(accepted: bool) -> IdTagInfo:
    return IdTagInfo(status=AuthorizationStatus.accepted if accepted else AuthorizationStatus.invalid)
