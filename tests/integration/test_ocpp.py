"""The OCPP 1.6J endpoint against the `ocpp` library's own ChargePoint over `websockets`, on a real uvicorn server:
handshake refusals, CALLERRORs for unknown actions and malformed frames (the connection lives on), reconnection
with the same id, revocation closing an open connection."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import timedelta

import pytest
from ocpp.exceptions import FormatViolationError, NotImplementedError, NotSupportedError, OCPPError
from ocpp.v16 import call
from sqlalchemy import text
from websockets.exceptions import ConnectionClosed, InvalidStatus

from api.ocpp import charger_hub
from core.context import AppContext
from core.security import hash_api_key
from core.settings import Settings
from tests.factories import insert_lot
from tests.integration.ocpp_world import Charger, boot, charger, create_charger, open_ws, run_cli, serving, status


async def _lot(ctx: AppContext) -> object:
    async with ctx.engine.begin() as conn:
        return await insert_lot(conn, spots={"ev": 2, "regular": 2})


async def _refused(port: int, cp_id: str, password: str | None, **kwargs: object) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with open_ws(port, cp_id, password, **kwargs):
            pass
    return refused.value.response.status_code


async def test_handshake_refuses_unknown_chargers_wrong_passwords_and_missing_subprotocol(
        settings: Settings, ctx: AppContext) -> None:
    lot = await _lot(ctx)
    made = await create_charger(settings, lot, "--connectors", "2")
    other = await create_charger(settings, lot)
    async with ctx.engine.connect() as conn:  # stored hashed, never as given
        stored = await conn.scalar(text("SELECT password_hash FROM chargers WHERE charge_point_id = :id"),
                                   {"id": made.charge_point_id})
    assert stored == hash_api_key(made.password) and made.password not in stored
    async with serving(settings, ctx) as port:
        assert await _refused(port, "pgc-nobody", made.password) == 401
        assert await _refused(port, made.charge_point_id, made.password[:-1] + "x") == 401
        assert await _refused(port, made.charge_point_id, None) == 401
        assert await _refused(port, made.charge_point_id, other.password, user=other.charge_point_id) == 401
        assert await _refused(port, made.charge_point_id, made.password, subprotocol=False) == 400
        async with charger(port, made.charge_point_id, made.password) as c:  # the same credentials, well formed
            answer = await boot(c)
            assert answer.status == "Accepted" and answer.interval == settings.ocpp_heartbeat_seconds


async def _listening(settings: Settings, ctx: AppContext) -> None:
    """Until the server's revocation listener has subscribed and checked its open connections (the server runs on
    this test's context): a revocation from now on reaches the connection only by the announcement, or by the
    charger's next message."""
    await asyncio.wait_for(charger_hub(ctx).listening.wait(), 5)


@dataclasses.dataclass
class FlyToTheMoon:  # an action OCPP 1.6 does not have (the library names a call after its payload class)
    speed: int = 1


async def test_unknown_actions_and_malformed_frames_get_a_callerror_and_the_connection_lives_on(
        settings: Settings, ctx: AppContext) -> None:
    lot = await _lot(ctx)
    made = await create_charger(settings, lot)
    async with serving(settings, ctx) as port:
        async with open_ws(port, made.charge_point_id, made.password) as ws:
            # frames the library can't parse: answered (it would only log them), on the same connection
            for frame, code, unique_id in (("not json", "FormatViolation", "-1"),
                                           ('{"a": 1}', "ProtocolError", "-1"),
                                           ('[2, "m-1", "Heartbeat"]', "ProtocolError", "m-1"),
                                           ('[9, "m-2", "Heartbeat", {}]', "PropertyConstraintViolation", "m-2"),
                                           ('[2, "m-3", "Heartbeat", []]', "FormatViolation", "m-3")):
                await ws.send(frame)
                reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert reply[:3] == [4, unique_id, code], (frame, reply)
            c = Charger(made.charge_point_id, ws)
            try:
                with pytest.raises(NotSupportedError):
                    await c.call(FlyToTheMoon(), skip_schema_validation=True)
                with pytest.raises(NotImplementedError):  # a 1.6 action ParkGrid does not handle
                    await c.call(call.DataTransfer(vendor_id="acme"))
                with pytest.raises(OCPPError) as bad:  # against the 1.6 schema: connectorId is an integer
                    await c.call(call.StatusNotification(connector_id="one", error_code="NoError",  # type: ignore
                                                         status="Available"), skip_schema_validation=True)
                assert bad.value.code == "TypeConstraintViolation"
                with pytest.raises(OCPPError) as wrong:  # schema-valid, but the charger has 1 connector
                    await c.call(call.StatusNotification(connector_id=3, error_code="NoError", status="Available"))
                assert wrong.value.code == "PropertyConstraintViolation"
                heartbeat = await c.call(call.Heartbeat())  # still connected, still answered
                assert heartbeat.current_time.startswith(ctx.clock.now().isoformat()[:19])
            finally:
                await c.close()
    assert FormatViolationError.code == "FormatViolation"  # the library's code for 1.6 (its known spec erratum)


async def test_reconnecting_with_the_same_id_replaces_the_old_connection_and_keeps_the_state(
        settings: Settings, ctx: AppContext) -> None:
    lot = await _lot(ctx)
    made = await create_charger(settings, lot)
    async with serving(settings, ctx) as port:
        async with charger(port, made.charge_point_id, made.password) as first:
            await boot(first)
            await status(first, 1, "Charging", ctx.clock.now())
            async with charger(port, made.charge_point_id, made.password) as second:
                with pytest.raises(ConnectionClosed):  # the server closed the older connection: its reader ends
                    await asyncio.wait_for(first.task, 5)
                await boot(second)
                assert (await second.call(call.Heartbeat())).current_time
                # a charger that lost its StopTransaction starts anew on the connector: the old one is closed
                first_tx = await second.call(call.StartTransaction(connector_id=1, id_tag="UNKNOWN1", meter_start=5,
                                                                   timestamp=ctx.clock.now().isoformat()))
                assert first_tx.id_tag_info["status"] == "Invalid"  # recorded all the same (OCPP needs an id)
                later = (ctx.clock.now() + timedelta(minutes=1)).isoformat()
                next_tx = await second.call(call.StartTransaction(connector_id=1, id_tag="UNKNOWN1", meter_start=9,
                                                                  timestamp=later))
                assert next_tx.transaction_id != first_tx.transaction_id
        async with ctx.engine.connect() as conn:
            assert await conn.scalar(text("SELECT status FROM charger_connectors")) == "Charging"
            rows = (await conn.execute(text("SELECT id, stop_reason, meter_stop_wh FROM charging_sessions ORDER BY id"))).all()
        assert [(r.stop_reason, r.meter_stop_wh) for r in rows] == [("Superseded", 5), (None, None)]


async def test_revoking_a_charger_closes_its_open_connection_at_once_and_refuses_it_after(
        settings: Settings, ctx: AppContext) -> None:
    lot = await _lot(ctx)
    made = await create_charger(settings, lot)
    async with serving(settings, ctx) as port:
        async with charger(port, made.charge_point_id, made.password) as c:
            await boot(c)
            await _listening(settings, ctx)
            code, out, err = await run_cli(settings, "chargers", "revoke", "--id", made.charge_point_id, "--json")
            assert code == 0 and json.loads(out)["revoked"] is True, err
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(c.task, 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert await _refused(port, made.charge_point_id, made.password) == 401
    code, _, err = await run_cli(settings, "chargers", "revoke", "--id", "pgc-nobody")
    assert code == 1 and "not found" in err


async def test_control_a_revocation_nobody_announces_is_only_noticed_at_the_chargers_next_message(
        settings: Settings, ctx: AppContext) -> None:
    """Without the announcement (the CLI's publish), the open connection outlives the revocation: what the push
    in the test above prevents."""
    lot = await _lot(ctx)
    made = await create_charger(settings, lot)
    async with serving(settings, ctx) as port, charger(port, made.charge_point_id, made.password) as c:
        await boot(c)
        await _listening(settings, ctx)
        async with ctx.engine.begin() as conn:
            await conn.execute(text("UPDATE chargers SET revoked_at = now()"))
        await asyncio.sleep(0.5)
        assert not c.task.done()  # still connected
        with pytest.raises((ConnectionClosed, asyncio.TimeoutError)):
            await c.call(call.Heartbeat())  # its next message finds it revoked: closed
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(c.task, 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_create_refuses_a_spot_of_another_lot_and_an_unknown_lot(settings: Settings, ctx: AppContext) -> None:
    lot, other = await _lot(ctx), await _lot(ctx)
    async with ctx.engine.connect() as conn:
        spot = await conn.scalar(text("SELECT id FROM spots WHERE lot_id = :l LIMIT 1"), {"l": other})
    code, _, err = await run_cli(settings, "chargers", "create", "--lot", str(lot), "--spot", str(spot))
    assert code == 1 and "not a spot of lot" in err
    code, _, err = await run_cli(settings, "chargers", "create", "--lot", "00000000-0000-0000-0000-000000000001")
    assert code == 1 and "not found" in err
    async with ctx.engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM chargers")) == 0
