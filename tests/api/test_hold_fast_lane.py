"""Holds ahead of routing (api.routers.reservations.hold_shortcut) get FastAPI's lane's verdict on every input, and
everything the shortcut does not take as it is reaches that lane with its body intact."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from hypothesis import strategies as st
from starlette.responses import Response

from api.deps import SignedIn
from api.routers import reservations
from api.routers.reservations import HoldIn, _plain_hold
from core.clock import ManualClock
from core.context import AppContext
from tests.api.test_message_lanes import NUMBERS, TIMES, UNICODE_DIGITS, WORDS, _collect, _encode
from tests.factories import UserFactory, insert_lot

PATH = "/api/v1/reservations"
LOT = "7d3f9a52-1c1e-4b7a-9c55-2f1f0f0a9b10"
GOOD = {"lot_id": LOT, "vehicle_type": "regular", "starts_at": "2030-01-07T08:00:00Z",
        "ends_at": "2030-01-07T10:00:00+01:00", "plate": "AB 123 CD"}
JSON = (b"content-type", b"application/json")


def _routed_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sends every hold down FastAPI's lane (the shortcut takes nothing)."""
    monkeypatch.setattr(reservations, "_plain_hold", lambda headers, raw: None)


def test_a_plain_hold_is_taken_as_fastapi_reads_it() -> None:
    taken = _plain_hold([JSON, (b"idempotency-key", b"k-1")], json.dumps(GOOD).encode())
    assert taken is not None
    body, key = taken
    assert body == HoldIn.model_validate(GOOD) and key == "k-1"
    assert _plain_hold([JSON], json.dumps(GOOD).encode("utf-16")) is not None  # json.loads reads UTF-16 too


@pytest.mark.parametrize(("headers", "body"), [
    ([], GOOD),  # FastAPI's lane refuses a body without a content type (its strict_content_type)
    ([(b"content-type", b"text/plain")], GOOD),
    ([(b"content-type", b"application/json; charset=utf-8")], GOOD),  # FastAPI reads it: its lane answers
    ([JSON, JSON], GOOD),
    ([JSON, (b"idempotency-key", b"")], GOOD),
    ([JSON, (b"idempotency-key", b"x" * 201)], GOOD),
    ([JSON, (b"idempotency-key", b"a"), (b"idempotency-key", b"b")], GOOD),
    ([JSON], {**GOOD, "plate": ""}),
    ([JSON], {**GOOD, "starts_at": 1893916800}),
    ([JSON], {**GOOD, "vehicle_type": "tank"}),
    ([JSON], {**GOOD, "lot_id": "not-a-uuid"}),
    ([JSON], {**GOOD, "plate": "٥٠٠" * 7}),
    ([JSON], [GOOD]),
])
def test_what_the_model_or_the_header_rule_refuses_goes_to_fastapi(headers: list[tuple[bytes, bytes]],
                                                                    body: Any) -> None:
    assert _plain_hold(headers, json.dumps(body).encode()) is None


# --- one verdict on both lanes ------------------------------------------------------------------------------------

hold_values = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**40), st.floats(allow_nan=False),
                        st.sampled_from(NUMBERS + UNICODE_DIGITS + TIMES + WORDS + [LOT, LOT.upper(), "ev", "Ab-1"]),
                        st.text(max_size=6), st.just("x" * 21), st.lists(st.integers(), max_size=2))
HOLD_FIELDS = [*GOOD, "quote_token", "discount_code", "unknown"]
hold_requests = st.tuples(
    st.one_of(st.just({}), st.dictionaries(st.sampled_from(HOLD_FIELDS), hold_values, max_size=2)),  # overrides
    st.one_of(st.just(set()), st.sets(st.sampled_from(list(GOOD)), max_size=1)),  # removed
    st.sampled_from(["utf-8", "utf-8", "utf-16", "ascii-escaped", "latin-1", "not-json", "array"]),
    st.sampled_from([None, "application/json", "application/json", "application/json; charset=utf-8",
                     "text/plain", "application/merge-patch+json"]),
    st.sampled_from([None, None, "", "k-1", "ключ", "x" * 200, "x" * 201, ("a", "b")]),
)


async def test_hold_lanes_give_one_verdict(client: httpx.AsyncClient, ctx: AppContext, users: UserFactory,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated requests (odd values, encodings, content types and keys) go to both lanes; the endpoint both call
    is replaced by a recorder, so what is compared is the judge: the same status, the same problem, and for an
    accepted request the same body and key handed on."""
    seen: list[tuple[HoldIn, str | None]] = []

    async def recorder(call: SignedIn, body: HoldIn, key: str | None) -> Response:
        seen.append((body, key))
        return Response(body.model_dump_json().encode(), status_code=201, media_type="application/json")

    monkeypatch.setattr(reservations, "answer_hold", recorder)
    driver = await users.create()
    fast_lane = reservations._plain_hold
    taken = {"shortcut": 0, "routed": 0, "refused": 0}
    for overrides, removed, encoding, content_type, key in _collect(hold_requests, 300):
        body = {k: v for k, v in {**GOOD, **overrides}.items() if k not in removed}
        payload = _encode(body, encoding)
        headers = [(n.lower().encode(), v.encode()) for n, v in driver.headers.items()]
        if content_type is not None:
            headers.append((b"content-type", content_type.encode()))
        for k in (key if isinstance(key, tuple) else () if key is None else (key,)):
            headers.append((b"idempotency-key", k.encode()))  # UTF-8 bytes: a server reads them as latin-1
        answers = []
        for lane in (fast_lane, lambda headers, raw: None):
            monkeypatch.setattr(reservations, "_plain_hold", lane)
            before = len(seen)
            res = await client.post(PATH, content=payload, headers=headers)
            answers.append((res.status_code, res.json(), seen[before:]))
        (fast_status, fast_json, fast_seen), (routed_status, routed_json, routed_seen) = answers
        assert fast_status == routed_status, (payload, headers, fast_json, routed_json)
        assert fast_json == routed_json and fast_seen == routed_seen, (payload, headers)
        assert fast_status in (201, 400, 422), (payload, fast_json)  # 400: a body that is not JSON text at all
        if fast_status != 201:
            taken["refused"] += 1
        else:
            taken["shortcut" if fast_lane(headers, payload) else "routed"] += 1
    assert min(taken.values()) >= 5, taken  # every verdict, and both lanes of the accepted one, were exercised


# --- real holds on both lanes ---------------------------------------------------------------------------------------

def _hold_body(lot: uuid.UUID, clock: ManualClock, plate: str) -> dict[str, str]:
    start = clock.now() + timedelta(hours=2)
    return {"lot_id": str(lot), "vehicle_type": "regular", "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=1)).isoformat(), "plate": plate}


async def test_holds_and_their_replays_are_alike_on_both_lanes(client: httpx.AsyncClient, ctx: AppContext,
                                                               users: UserFactory, clock: ManualClock,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 1})
    driver = await users.create()
    keyed = {**driver.headers, "Idempotency-Key": "hold-1"}
    fast = await client.post(PATH, json=_hold_body(lot, clock, "AA1"), headers=keyed)
    assert fast.status_code == 201, fast.text
    with monkeypatch.context() as patch:
        _routed_only(patch)
        replayed = await client.post(PATH, json=_hold_body(lot, clock, "AA1"), headers=keyed)
        sold_routed = await client.post(PATH, json=_hold_body(lot, clock, "BB2"), headers=driver.headers)
        other_body = await client.post(PATH, json=_hold_body(lot, clock, "CC3"), headers=keyed)
    sold_fast = await client.post(PATH, json=_hold_body(lot, clock, "BB2"), headers=driver.headers)
    assert replayed.status_code == 201 and replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json() == fast.json()
    assert sold_fast.status_code == sold_routed.status_code == 409
    assert sold_fast.json() == sold_routed.json() and sold_fast.json()["type"].endswith("/sold-out")
    assert other_body.status_code == 422 and other_body.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    unsigned = await client.post(PATH, json=_hold_body(lot, clock, "DD4"))
    _routed_only(monkeypatch)
    unsigned_routed = await client.post(PATH, json=_hold_body(lot, clock, "DD4"))
    assert unsigned.status_code == unsigned_routed.status_code == 401 and unsigned.json() == unsigned_routed.json()


async def test_plain_holds_never_reach_routing(client: httpx.AsyncClient, ctx: AppContext, users: UserFactory,
                                               clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    async def routed(self: APIRoute, scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError(f"routed: {scope['method']} {scope['path']}")

    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 1})
    driver = await users.create()
    monkeypatch.setattr(APIRoute, "handle", routed)
    assert (await client.post(PATH, json=_hold_body(lot, clock, "AA1"), headers=driver.headers)).status_code == 201
    assert (await client.post(PATH, json=_hold_body(lot, clock, "BB2"), headers=driver.headers)).status_code == 409
    with pytest.raises(AssertionError, match="routed"):  # the control: what the shortcut does not take is routed
        await client.post(PATH, content=json.dumps(_hold_body(lot, clock, "CC3")),
                          headers={**driver.headers, "content-type": "text/plain"})


async def _asgi_post(app: Any, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[int, Any]:
    """POSTs a body sent in `chunks` (one http.request message each) straight into the ASGI app."""
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": PATH, "raw_path": PATH.encode(), "query_string": b"", "root_path": "", "app": app,
             "headers": [(b"host", b"test"), *headers], "client": ("127.0.0.1", 1), "server": ("test", 80)}
    await app(scope, receive, send)
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


async def test_a_body_in_several_messages_is_read_whole_on_both_lanes(client: httpx.AsyncClient, ctx: AppContext,
                                                                      users: UserFactory, clock: ManualClock) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 2})
    driver = await users.create()
    app = client._transport.app  # type: ignore[attr-defined]
    auth = [(b"authorization", driver.headers["Authorization"].encode())]
    raw = json.dumps(_hold_body(lot, clock, "AA1")).encode()
    status, held = await _asgi_post(app, [raw[:7], raw[7:30], raw[30:]], [JSON, *auth])  # the shortcut's
    assert status == 201 and held["plate"] == "AA1"
    refused = json.dumps({**_hold_body(lot, clock, "BB2"), "plate": ""}).encode()
    status, problem = await _asgi_post(app, [refused[:10], refused[10:]], [JSON, *auth])  # replayed to the route
    assert status == 422 and problem["errors"][0]["loc"] == ["body", "plate"]
    status, held = await _asgi_post(app, [raw[:5], raw[5:]], [(b"content-type", b"application/json; charset=utf-8"),
                                                               *auth])
    assert status == 409  # the route read the whole replayed body: AA1 already holds this window


async def test_holds_keep_request_ids_and_route_metrics(client: httpx.AsyncClient, ctx: AppContext,
                                                        users: UserFactory, clock: ManualClock) -> None:
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 1})
    driver = await users.create()
    res = await client.post(PATH, json=_hold_body(lot, clock, "AA1"),
                            headers={**driver.headers, "x-request-id": "trace-7"})
    assert res.status_code == 201 and res.headers["x-request-id"] == "trace-7"
    await client.post(PATH, json={**_hold_body(lot, clock, "BB2"), "plate": ""}, headers=driver.headers)  # routed: 422
    metrics = [line for line in (await client.get("/metrics")).text.splitlines()
               if line.startswith("parkgrid_http_requests_total{") and "reservations" in line]
    assert metrics == ['parkgrid_http_requests_total{method="POST",route="/api/v1/reservations",status="201"} 1.0',
                       'parkgrid_http_requests_total{method="POST",route="/api/v1/reservations",status="422"} 1.0']


async def test_negative_control_a_lenient_shortcut_is_caught(client: httpx.AsyncClient, users: UserFactory,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A judge that also took a body without a content type (as a first version of this shortcut did) answers
    where FastAPI's lane refuses: the comparison above sees the difference."""
    async def recorder(call: SignedIn, body: HoldIn, key: str | None) -> Response:
        return Response(b"{}", status_code=201, media_type="application/json")

    monkeypatch.setattr(reservations, "answer_hold", recorder)
    driver = await users.create()
    payload = json.dumps(GOOD).encode()
    monkeypatch.setattr(reservations, "_plain_hold", lambda headers, raw: _plain_hold([*headers, JSON], raw))
    lenient = await client.post(PATH, content=payload, headers=driver.headers)
    _routed_only(monkeypatch)
    routed = await client.post(PATH, content=payload, headers=driver.headers)
    assert (lenient.status_code, routed.status_code) == (201, 422)
