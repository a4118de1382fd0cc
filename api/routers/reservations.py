"""Reservations: hold, confirm, cancel, read (docs/api.md, Reservations)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from fastapi.requests import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import Field, ValidationError
from starlette.types import Receive, Scope, Send

from api.deps import ConnDep, CtxDep, CurrentUser, SignedIn, SignedInDep, bearer, signed_in
from api.idempotency import run_idempotent, run_keyed_hold
from api.middleware import Shortcut, read_body
from api.problems import domain_problem
from api.schemas.common import Rfc3339, StrictBody, WireUuid, decode_cursor, encode_cursor, money, parse_cursor_time
from api.schemas.reservations import CancelledOut, ChangedOut, ReservationOut, ReservationPage
from booking import holds, transitions
from booking.access import qr_token
from booking.amendments import amend_window
from booking.lifecycle import STATUSES
from booking.wiring import booking_deps
from core.context import AppContext
from core.errors import DomainError, InvalidTransition
from core.security import mask_plate
from core.vocabulary import VehicleType

router = APIRouter(prefix="/api/v1", tags=["reservations"])

IDEM_KEY_MIN, IDEM_KEY_MAX = 1, 200
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=IDEM_KEY_MIN, max_length=IDEM_KEY_MAX)]


class HoldIn(StrictBody):
    lot_id: WireUuid
    vehicle_type: Annotated[VehicleType, Field(strict=False)]  # the enum from its JSON string
    starts_at: Rfc3339
    ends_at: Rfc3339
    plate: str = Field(min_length=1, max_length=20)
    quote_token: str | None = Field(None, max_length=2000)
    discount_code: str | None = Field(None, min_length=1, max_length=64)


class WindowChangeIn(StrictBody):
    starts_at: Rfc3339
    ends_at: Rfc3339


class ConfirmIn(StrictBody):
    payment_token: str = Field(min_length=1, max_length=200)


def payment_state(status: str, authorised: int, captured: int, refunded: int) -> str:
    """One word for where a payment's money is: pending, requires_action, authorised, captured, voided,
    refunded or partially_refunded."""
    if status == "canceled":
        return "voided"
    if status == "succeeded":
        return "captured" if refunded == 0 else ("refunded" if refunded >= captured else "partially_refunded")
    if status == "requires_capture" and authorised > 0:
        return "authorised"
    return "requires_action" if status == "requires_action" else "pending"


def payment_json(row: Any) -> dict[str, Any]:
    """A reservation's payment: amounts and their state. `voided` is the authorisation released without being
    captured (a cancelled intent, or what a partial capture left); money returned = voided + refunded."""
    authorised, captured = int(getattr(row, "amount_authorised", 0) or 0), int(row.amount_captured or 0)
    refunded = int(row.amount_refunded or 0)
    voided = authorised - captured if row.payment_status in ("canceled", "succeeded") else 0
    return {"provider": row.payment_provider, "intent_id": row.intent_id, "status": row.payment_status,
            "state": payment_state(row.payment_status, authorised, captured, refunded),
            "authorised": money(authorised, row.currency), "captured": money(captured, row.currency),
            "voided": money(voided, row.currency), "refunded": money(refunded, row.currency)}


def reservation_json(row: Any, *, secret: bytes, owner: bool = True) -> dict[str, Any]:
    """The wire form of a reservation row (booking.queries.RESERVATION_COLUMNS)."""
    out: dict[str, Any] = {
        "id": str(row.id), "status": row.status, "kind": row.kind, "lot_id": str(row.lot_id),
        "vehicle_type": row.vehicle_type,
        "plate": row.plate if owner else mask_plate(row.plate),
        "spot": {"id": str(row.spot_id), "label": row.spot_label, "level": row.level_name},
        "starts_at": row.starts_at, "ends_at": row.ends_at,
        "slots": {"starts_at": row.slot_start, "ends_at": row.slot_end},
        "hold_expires_at": row.hold_expires_at if row.status == "held" else None,
        "price": money(row.price_amount, row.currency),
        "payment": payment_json(row) if row.intent_id else None,
        "quote": row.quote, "created_at": row.created_at, "confirmed_at": row.confirmed_at,
        "cancelled_at": row.cancelled_at,
    }
    if row.status in ("held", "confirmed", "active"):
        out["access"] = {"qr_token": qr_token(secret=secret, reservation_id=row.id, lot_id=row.lot_id,
                                              not_after=row.ends_at)}
    return out


async def _current(ctx: AppContext, reservation_id: uuid.UUID, user_id: uuid.UUID) -> dict[str, Any]:
    """The reservation as it is after a write, in its wire form."""
    async with ctx.engine.connect() as conn:
        row = await transitions.get_reservation(conn, reservation_id=reservation_id, user_id=user_id)
    return reservation_json(row, secret=ctx.settings.secret_bytes)


def held_json(row: Any, *, secret: bytes, provider: str, client_secret: str | None) -> dict[str, Any]:
    """A new hold's answer: the reservation with its payment's provider and client secret."""
    out = reservation_json(row, secret=secret)
    out["payment"] = {**(out["payment"] or {}), "provider": provider, "client_secret": client_secret}
    return out


_SNAPSHOT_IDS = ("id", "lot_id", "user_id", "spot_id")
_SNAPSHOT_TIMES = ("starts_at", "ends_at", "slot_start", "slot_end", "hold_expires_at", "created_at", "confirmed_at",
                   "entered_at", "exited_at", "cancelled_at")


def snapshot_row(data: dict[str, Any]) -> SimpleNamespace:
    """A hold's row as its key stored it (to_jsonb of HOLD_WRITE's answer), typed as the write answered it."""
    row = dict(data)
    for name in _SNAPSHOT_IDS:
        if row.get(name) is not None:
            row[name] = uuid.UUID(row[name])
    for name in _SNAPSHOT_TIMES:
        if row.get(name) is not None:
            row[name] = datetime.fromisoformat(row[name]).astimezone(UTC)
    return SimpleNamespace(**row)


@router.post("/reservations", status_code=201, summary="Hold a spot (Idempotency-Key supported)",
             responses={201: {"model": ReservationOut}, 409: {"description": "sold-out or plate-conflict"}})
async def create_reservation(body: HoldIn, call: SignedInDep, idempotency_key: IdemKey = None) -> Response:
    return await answer_hold(call, body, idempotency_key)


async def answer_hold(call: SignedIn, body: HoldIn, idempotency_key: str | None) -> Response:
    """A hold from a body HoldIn accepted, on FastAPI's lane or the shortcut's: the same on both."""
    ctx, user, now = call.ctx, call.user, call.now
    deps = booking_deps(ctx)
    secret, provider = ctx.settings.secret_bytes, deps.payments.name

    async def handler(key_record: holds.KeyRecord | None) -> tuple[int, dict[str, Any]]:
        held = await holds.hold_reservation(
            deps=deps, user_id=user.user_id, lot_id=body.lot_id, vehicle_type=body.vehicle_type,
            starts_at=body.starts_at, ends_at=body.ends_at, plate=body.plate, now=now,
            quote_token=body.quote_token, idempotency_key=idempotency_key, discount_code=body.discount_code,
            key_record=key_record)
        return 201, held_json(held.row, secret=secret, provider=provider, client_secret=held.client_secret)

    def render(stored: dict[str, Any]) -> dict[str, Any]:
        return held_json(snapshot_row(stored["row"]), secret=secret, provider=provider,
                         client_secret=stored["client_secret"])

    return await run_keyed_hold(ctx, scope=f"{user.user_id}:POST:/reservations", key=idempotency_key,
                                body=lambda: body.model_dump(mode="json"), handler=handler, render=render)


def hold_shortcut() -> Shortcut:
    """Holds ahead of routing (`api.middleware.RequestContextMiddleware`), as search's shortcut: a JSON body the
    route's own model accepts (`HoldIn`, validated as FastAPI validates it) with at most one Idempotency-Key the
    route's header rule accepts is answered by the same `signed_in` and `answer_hold` without FastAPI's routing,
    dependency solving, exception and exit-stack middleware (docs/adr/0025). A domain error answers as the app's
    handler would; anything else propagates to the server error middleware (500, as on every route). Anything the
    shortcut does not accept (another content type, malformed JSON, a body the model refuses, an odd header) goes
    to the route with its body replayed, whose answer (422 naming the field) is the contract's."""
    route = next(r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is create_reservation)

    async def answer(scope: Scope, receive: Receive, send: Send) -> Receive | None:
        if scope["method"] != "POST":
            return receive
        raw, replay = await read_body(receive)
        accepted = _plain_hold(scope["headers"], raw) if raw is not None else None
        if accepted is None:
            return replay
        body, key = accepted
        scope["route"] = route  # what routing would have set: the metrics' route label
        request = Request(scope, replay, send)
        try:
            response = await answer_hold(await signed_in(request, await bearer(request)), body, key)
        except DomainError as exc:
            response = domain_problem(request, exc)
        await response(scope, replay, send)
        return None

    return answer


def _plain_hold(headers: list[tuple[bytes, bytes]], raw: bytes) -> tuple[HoldIn, str | None] | None:
    """The body and Idempotency-Key of a hold FastAPI's lane would accept as they are, or None to leave it to
    that lane."""
    content_type = key = None
    for name, value in headers:
        if name == b"content-type":
            if content_type is not None:
                return None
            content_type = value
        elif name == b"idempotency-key":
            if key is not None:
                return None
            key = value.decode("latin-1")
    if content_type != b"application/json":  # FastAPI reads others too (a charset, +json): its lane answers them
        return None
    if key is not None and not IDEM_KEY_MIN <= len(key) <= IDEM_KEY_MAX:
        return None
    try:
        return HoldIn.model_validate(json.loads(raw), from_attributes=True), key  # as FastAPI validates a body
    except (ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


@router.get("/reservations/{reservation_id}", summary="A reservation of the caller", response_model=None,
            responses={200: {"model": ReservationOut}})
async def read_reservation(reservation_id: uuid.UUID, conn: ConnDep, ctx: CtxDep, user: CurrentUser) -> dict[str, Any]:
    row = await transitions.get_reservation(conn, reservation_id=reservation_id, user_id=user.user_id)
    return reservation_json(row, secret=ctx.settings.secret_bytes)


@router.post("/reservations/{reservation_id}/confirm", summary="Pay for a hold: held -> confirmed",
             description="402 `payment-failed` when declined; 402 `payment-requires-action` when the card needs "
                         "3-D Secure: its `payment` member carries `client_secret` and Stripe's `next_action`; "
                         "finish it, then confirm again. 409 when the hold expired or the transition is impossible.",
             responses={200: {"model": ReservationOut}})
async def confirm_reservation(reservation_id: uuid.UUID, body: ConfirmIn, call: SignedInDep,
                              idempotency_key: IdemKey = None) -> Response:
    ctx, user, now = call.ctx, call.user, call.now
    deps = booking_deps(ctx)

    async def handler() -> tuple[int, dict[str, Any]]:
        await transitions.confirm(deps=deps, reservation_id=reservation_id, user_id=user.user_id,
                                  payment_token=body.payment_token, now=now)
        return 200, await _current(ctx, reservation_id, user.user_id)

    async def recover() -> tuple[int, dict[str, Any]]:
        """The key's first request died: it may have confirmed before it did (then this is its answer)."""
        try:
            return await handler()
        except InvalidTransition:
            current = await _current(ctx, reservation_id, user.user_id)
            if current["status"] != "confirmed":
                raise
            return 200, current

    return await run_idempotent(ctx, scope=f"{user.user_id}:POST:/reservations/{reservation_id}/confirm",
                                key=idempotency_key, body=body.model_dump(), handler=handler, recover=recover)


@router.post("/reservations/{reservation_id}/cancel", summary="Cancel a held or confirmed reservation",
             responses={200: {"model": CancelledOut}})
async def cancel_reservation(reservation_id: uuid.UUID, call: SignedInDep,
                             idempotency_key: IdemKey = None) -> Response:
    ctx, user, now = call.ctx, call.user, call.now
    deps = booking_deps(ctx)

    async def handler() -> tuple[int, dict[str, Any]]:
        refund = await transitions.cancel(deps=deps, reservation_id=reservation_id, user_id=user.user_id, now=now)
        out = await _current(ctx, reservation_id, user.user_id)
        out["refund"] = refund.as_json()
        return 200, out

    return await run_idempotent(ctx, scope=f"{user.user_id}:POST:/reservations/{reservation_id}/cancel",
                                key=idempotency_key, body={}, handler=handler)


@router.patch("/reservations/{reservation_id}", summary="Extend or shorten a reservation's window",
              description="The price becomes the new window's (the lot's rules now). A paid, uncaptured "
                          "reservation's authorisation is raised for an extension (402 and nothing changes when "
                          "refused); removed time is released except the fee the lot's cancellation policy keeps. "
                          "409 sold-out when the spot is not free, or once the payment was captured.",
              responses={200: {"model": ChangedOut}})
async def change_reservation_window(reservation_id: uuid.UUID, body: WindowChangeIn, call: SignedInDep,
                                    idempotency_key: IdemKey = None) -> Response:
    ctx, user, now = call.ctx, call.user, call.now
    deps = booking_deps(ctx)

    async def handler() -> tuple[int, dict[str, Any]]:
        change = await amend_window(deps=deps, reservation_id=reservation_id, user_id=user.user_id,
                                    starts_at=body.starts_at, ends_at=body.ends_at, now=now)
        out = await _current(ctx, reservation_id, user.user_id)
        out["change"] = change.as_json()
        return 200, out

    return await run_idempotent(ctx, scope=f"{user.user_id}:PATCH:/reservations/{reservation_id}",
                                key=idempotency_key, body=body.model_dump(mode="json"), handler=handler)


@router.get("/me/reservations", summary="The caller's reservations, newest first", response_model=None,
            responses={200: {"model": ReservationPage}})
async def my_reservations(conn: ConnDep, ctx: CtxDep, user: CurrentUser,
                          status: Annotated[Literal[STATUSES] | None, Query()] = None,  # type: ignore[valid-type]
                          limit: Annotated[int, Query(ge=1, le=100)] = 20,
                          cursor: Annotated[str | None, Query(max_length=500)] = None) -> dict[str, Any]:
    after: tuple[datetime, uuid.UUID] | None = None
    if cursor:
        data = decode_cursor(cursor, fields=("c", "i"))
        try:
            after = (parse_cursor_time(data["c"]), uuid.UUID(str(data["i"])))
        except ValueError:
            from core.errors import ValidationFailed

            raise ValidationFailed("malformed cursor", loc=("query", "cursor")) from None
    rows = await transitions.list_reservations(conn, user_id=user.user_id, status=status, limit=limit + 1, after=after)
    items = [reservation_json(r, secret=ctx.settings.secret_bytes) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor({"c": last.created_at.isoformat(), "i": str(last.id)})
    return {"items": items, "next_cursor": next_cursor}
