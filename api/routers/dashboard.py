"""The operators' dashboard (docs/api.md, Operators' dashboard): the lot's numbers, alerts and their acknowledgement,
and its live stream (Server-Sent Events). Another organisation's operator gets 404 on each of them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.authz import OperatedLotId
from api.deps import CtxDep, NowDep, OperatorUser, _principal, bearer
from controllers import dashboard
from controllers.live import live_hub, stream_id
from core.accounts import assert_operates_lot
from core.errors import Forbidden, NotFound, ValidationFailed
from core.security import create_stream_token, decode_stream_token

router = APIRouter(prefix="/lots/{lot_id}", tags=["operators' dashboard"])


@router.get("/dashboard", summary="Occupancy now, gates, alerts, today's revenue and occupancy, forecast slot")
async def get_dashboard(lot_id: OperatedLotId, ctx: CtxDep, now: NowDep) -> dict[str, Any]:
    return await dashboard.build_dashboard(ctx, lot_id=lot_id, now=now)


@router.post("/alerts/{alert_id}/ack", summary="Acknowledge one of the lot's current alerts (who and when kept)")
async def ack_alert(lot_id: OperatedLotId, user: OperatorUser, ctx: CtxDep, now: NowDep,
                    alert_id: Annotated[str, Path(min_length=1, max_length=200)]) -> dict[str, Any]:
    return await dashboard.acknowledge(ctx, lot_id=lot_id, alert_id=alert_id, user_id=user.user_id, now=now)


class StreamToken(BaseModel):
    token: str
    expires_in: int
    url: str


@router.post("/live/token", response_model=StreamToken,
             summary="A short-lived token opening this lot's live stream, for EventSource (?token=)")
async def live_token(lot_id: OperatedLotId, user: OperatorUser, ctx: CtxDep, now: NowDep) -> StreamToken:
    s = ctx.settings
    token = create_stream_token(secret=s.secret_bytes, user_id=user.user_id, role=user.role,
                                organisation_id=user.organisation_id, lot_id=lot_id, issuer=s.jwt_issuer,
                                audience=s.jwt_audience, ttl_seconds=s.live_token_ttl_seconds, now=now)
    return StreamToken(token=token, expires_in=s.live_token_ttl_seconds,
                       url=f"/api/v1/lots/{lot_id}/live?token={token}")


async def live_lot_id(ctx: CtxDep, lot_id: Annotated[uuid.UUID, Path()],
                      creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
                      token: Annotated[str | None, Query(max_length=2000, description=(
                          "a stream token from POST /lots/{lot_id}/live/token (EventSource cannot send an"
                          " Authorization header)"))] = None) -> uuid.UUID:
    """The lot, if the caller (bearer access token, or a stream token for this lot) operates it."""
    s, now = ctx.settings, ctx.clock.now()
    if token:
        claims = decode_stream_token(token=token, secret=s.secret_bytes, issuer=s.jwt_issuer,
                                     audience=s.jwt_audience, now=now)
        if claims.lot_id != lot_id:
            raise NotFound(f"lot {lot_id} not found")
        role, org = claims.role, claims.organisation_id
    else:
        user = _principal(ctx, creds)
        role, org = user.role, user.organisation_id
    if role not in ("operator", "admin"):
        raise Forbidden("requires role operator or admin")
    async with ctx.engine.connect() as conn:
        await assert_operates_lot(conn=conn, lot_id=lot_id, role=role, organisation_id=org)
    return lot_id


@router.get("/live", summary="Server-Sent Events: occupancy changes, gate decisions and alerts of the lot",
            response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "events `occupancy`, `gate`, `alerts` (ids resumable with"
                                            " Last-Event-ID), `reset`, `ready`; a comment line as heartbeat"}})
async def live(lot_id: Annotated[uuid.UUID, Depends(live_lot_id)], ctx: CtxDep,
               last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
               last_event_id: Annotated[str | None, Query(max_length=64, description=(
                   "resume after this event id (as the Last-Event-ID header; for a new EventSource)"))] = None,
               ) -> EventSourceResponse:
    after = last_event_id_header or last_event_id
    if after:
        try:
            stream_id(after)
        except ValueError:
            loc = ("header", "Last-Event-ID") if last_event_id_header else ("query", "last_event_id")
            raise ValidationFailed("not an event id of this stream", loc=loc) from None
    hub = live_hub(ctx)

    async def events() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(comment="parkgrid live", retry=2000)
        async for event in hub.stream(lot_id, last_event_id=after):
            yield ServerSentEvent(data=event.data.decode(), event=event.kind, id=event.id or None)

    return EventSourceResponse(events(), ping=ctx.settings.live_heartbeat_seconds,
                               headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
