"""One model per message: the same generated inputs (unicode digits, odd encodings, out-of-range values, missing
fields) fed to every lane of a message get the same verdict.

- search: the fast lane ahead of routing (api.routers.search_query.plain_search_query) against FastAPI's own
  extraction and validation of the route's query model (fastapi.dependencies.utils.request_params_to_args, what
  the routed lane runs);
- gate events: POST /api/v1/gates/{gate_id}/events (FastAPI's body decoding and validation) against the MQTT
  consumer (controllers.mqtt_ingest.Ingestor.handle on the gate topic) and the edge agent's own app (in front of
  this cloud), all on a real lot;
- sensor events: items of POST /api/v1/lots/{lot_id}/sensor-events against single MQTT sensor messages.

The async lanes cannot run inside Hypothesis' own loop, so a Hypothesis run collects its generated inputs first and
each is then fed to every lane (no shrinking: a failure prints the input).
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.dependencies.utils import request_params_to_args
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from api.edge_app import GateEventIn as EdgeGateEventIn
from api.edge_app import create_edge_app
from api.routers import gates as gates_router
from api.routers import search as search_router
from api.routers.gates import GateEventIn as HttpGateEventIn
from api.routers.search_query import plain_search_query
from controllers import gates as gates_domain
from controllers.edge.agent import EdgeAgent, EdgeConfig
from controllers.edge.store import EdgeStore
from controllers.gates import Decision, GateEvent, GateOutcome, gate_event
from controllers.messages import GateEventIn
from controllers.mqtt_ingest import Ingestor
from controllers.occupancy import counters_for
from core.clock import ManualClock
from core.context import AppContext
from tests.api.test_gates_world import gate_lot

# --- generated values: what devices and clients get wrong --------------------------------------------------------

UNICODE_DIGITS = ["５００", "٥٠٠", "५००", "５", "٣", "१", "𝟓"]  # fullwidth, Arabic-Indic, Devanagari, math bold
NUMBERS = ["0", "1", "20", "100", "101", "500", "-1", "1.5", "1e1", "+1", " 1", "1 ", "007", "0x10", "1_000",
           "nan", "inf", "-inf", "", "90", "-90", "90.0001", "180", "-180.5", "1" * 30]
TIMES = ["2030-01-07T08:00:00Z", "2030-01-07T08:00:00+02:00", "2030-01-07T08:00:00", "2030-01-07 08:00:00Z",
         "2030-02-30T08:00:00Z", "2030-01-07t08:00:00z", "１７００", "1700000000", "2030-01-07T08:00:00.123456Z",
         "2030-01-07T25:00:00Z", "2030-01-07T08:00Z", "2030-01-07"]
WORDS = ["regular", "ev", "EV", " ev", "tank", "distance", "price", "Price", "covered", "covered,cctv", "helipad",
         "x" * 501, ""]

text_values = st.one_of(st.sampled_from(NUMBERS + UNICODE_DIGITS + TIMES + WORDS), st.text(max_size=8))


def _query_string(pairs: list[tuple[str, str]], escape: list[bool]) -> bytes:
    """Pairs as a query string: values percent-encoded (UTF-8) or raw UTF-8 bytes where that stays parseable."""
    out = []
    for (name, value), esc in zip(pairs, escape, strict=False):
        raw = not esc and not set(value) & set("&=%+#") and value.isprintable()
        out.append(name.encode() + b"=" + (value.encode() if raw else quote(value).encode()))
    return b"&".join(out)


FIELDS = ["lat", "lng", "radius_m", "limit", "max_price", "vehicle_type", "sort", "starts_at", "ends_at", "cursor",
          "bbox", "amenities", "prefilter", "unknown"]
queries = st.lists(st.tuples(st.sampled_from(FIELDS), text_values), max_size=8).flatmap(
    lambda pairs: st.tuples(st.just(pairs), st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs))))


# --- search ------------------------------------------------------------------------------------------------------

_ROUTE = next(r for r in search_router.router.routes if isinstance(r, APIRoute) and r.endpoint is search_router.search)


def routed_lane(query_string: bytes) -> Any:
    """What FastAPI's lane passes the endpoint (its query model), or None when it answers 422."""
    values, errors = request_params_to_args(_ROUTE.dependant.query_params, QueryParams(query_string.decode("latin-1")))
    return None if errors else values["params"]


@settings(max_examples=400, deadline=None)
@given(queries)
def test_search_lanes_give_one_verdict(generated: tuple[list[tuple[str, str]], list[bool]]) -> None:
    query_string = _query_string(*generated)
    fast, routed = plain_search_query(query_string), routed_lane(query_string)
    assert (fast is None) == (routed is None), query_string
    assert fast == routed, query_string


@pytest.mark.parametrize("radius", ["５００", "٥٠٠", "५००"])
async def test_unicode_digits_are_422_on_both_lanes(client: httpx.AsyncClient, radius: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"/api/v1/lots/search?lat=48.85&lng=2.35&radius_m={quote(radius)}"
    assert plain_search_query(url.partition("?")[2].encode()) is None
    first = await client.get(url)
    monkeypatch.setattr(search_router, "plain_search_query", lambda query_string: None)  # FastAPI's lane only
    second = await client.get(url)
    assert first.status_code == second.status_code == 422
    assert first.json()["errors"][0]["loc"] == second.json()["errors"][0]["loc"] == ["query", "radius_m"]


def test_negative_control_the_hand_parser_this_replaced_took_unicode_digits() -> None:
    # the fast lane's former number rule (a `\d` regular expression, then float()): 500 m where pydantic says 422
    decimal = re.compile(r"-?\d{1,9}(?:\.\d{1,17})?")
    radius = "５００"
    assert decimal.fullmatch(radius) and float(radius) == 500.0
    assert routed_lane(f"lat=1&lng=2&radius_m={quote(radius)}".encode()) is None


# --- gate events: HTTP and MQTT ----------------------------------------------------------------------------------

gate_values = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**40), st.floats(allow_nan=True),
                        st.sampled_from(NUMBERS + UNICODE_DIGITS + TIMES + WORDS), st.text(max_size=6),
                        st.just("x" * 101), st.lists(st.integers(), max_size=2))
GATE_FIELDS = ["event_id", "sequence", "occurred_at", "plate", "plate_confidence", "qr_token", "vehicle_type",
               "direction", "decided_locally", "decision", "payment_token"]
good_gate = {"event_id": "e-1", "sequence": 1, "occurred_at": "2030-01-07T08:00:00Z"}
gate_bodies = st.tuples(
    st.one_of(st.just({}), st.dictionaries(st.sampled_from(GATE_FIELDS), gate_values, max_size=2)),  # overrides
    st.one_of(st.just(set()), st.sets(st.sampled_from(["event_id", "sequence", "occurred_at"]), max_size=1)),
    st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32", "ascii-escaped", "latin-1", "not-json", "array"]),
)


def _encode(body: dict[str, Any], encoding: str) -> bytes:
    if encoding == "not-json":
        return json.dumps(body)[:-1].encode()
    if encoding == "array":
        return json.dumps([body]).encode()
    if encoding == "ascii-escaped":
        return json.dumps(body, ensure_ascii=True).encode()
    text = json.dumps(body, ensure_ascii=False)
    return text.encode(encoding, errors="replace")


def _collect(strategy: st.SearchStrategy[Any], n: int) -> list[Any]:
    """`n` inputs Hypothesis generates (run here, fed to the async lanes afterwards)."""
    out: list[Any] = []

    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: Any) -> None:
        out.append(value)

    collect()
    return out


def test_every_gate_lane_uses_the_one_model() -> None:
    assert HttpGateEventIn is GateEventIn and EdgeGateEventIn is GateEventIn


async def test_gate_events_get_one_verdict_over_http_mqtt_and_the_edge(client: httpx.AsyncClient, ctx: AppContext,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    gl = await gate_lot(ctx)
    over_http: list[GateEvent] = []
    over_mqtt: list[GateEvent] = []

    async def decide_http(*, event: GateEvent, **_: Any) -> GateOutcome:
        # the lane's judge is under test, not the decision: record what the route would decide on
        over_http.append(event)
        return GateOutcome(Decision("open", None, None, None, "recorded"), duplicate=False)

    async def decide_mqtt(lot_id: uuid.UUID, gate_id: uuid.UUID, body: GateEventIn, now: Any) -> None:
        assert (lot_id, gate_id) == (gl.lot_id, gl.entry)
        over_mqtt.append(gate_event(body))

    monkeypatch.setattr(gates_domain, "decide", decide_http)
    assert gates_router.gates.decide is decide_http
    ingestor = Ingestor(engine=ctx.engine, pg=await ctx.pg(), counters=counters_for(ctx), clock=ctx.clock,
                        gate_decider=decide_mqtt)
    topic = f"parkgrid/lots/{gl.lot_id}/gates/{gl.entry}/events"
    # the edge agent's lane: its own app in front of this cloud (the agent forwards what its model accepted)
    store = await EdgeStore.open(tmp_path / "edge.sqlite3")
    try:  # closed whatever happens: an open SQLite connection's thread would keep pytest from exiting
        agent = EdgeAgent(config=EdgeConfig(lot_id=str(gl.lot_id), device_key=gl.key, cloud_url="http://test"),
                          store=store, clock=ctx.clock,
                          http=httpx.AsyncClient(transport=client._transport, base_url="http://test",
                                                 headers=gl.headers))
        edge_app = create_edge_app(agent, run_background=False)
        async with edge_app.router.lifespan_context(edge_app), \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=edge_app), base_url="http://edge") as edge:
            verdicts = await _gate_lanes(client, edge, ingestor, gl, topic, over_http, over_mqtt)
    finally:
        await store.close()
    assert min(verdicts.values()) > 15, verdicts  # both verdicts were exercised


async def _gate_lanes(client: httpx.AsyncClient, edge: httpx.AsyncClient, ingestor: Ingestor, gl: Any, topic: str,
                      over_http: list[GateEvent], over_mqtt: list[GateEvent]) -> dict[str, int]:
    verdicts = {"accepted": 0, "refused": 0}
    for overrides, removed, encoding in _collect(gate_bodies, 200):
        body = {k: v for k, v in {**good_gate, **overrides}.items() if k not in removed}
        try:
            payload = _encode(body, encoding)
        except ValueError:  # NaN and friends: json.dumps writes them, still a payload
            continue
        res = await client.post(f"/api/v1/gates/{gl.entry}/events", content=payload,
                                headers={**gl.headers, "content-type": "application/json"})
        before = len(over_mqtt)
        await ingestor.handle(topic, payload)
        http_ok, mqtt_ok = res.status_code == 200, len(over_mqtt) > before
        assert res.status_code in (200, 400, 422), (payload, res.text)
        assert http_ok == mqtt_ok, (payload, res.status_code, res.text)
        if http_ok:
            assert over_http[-1] == over_mqtt[-1], payload
        at_edge = await edge.post(f"/api/v1/gates/{gl.entry}/events", content=payload,
                                  headers={**gl.headers, "content-type": "application/json"})
        assert (at_edge.status_code == 200) == http_ok, (payload, at_edge.status_code, at_edge.text)
        verdicts["accepted" if http_ok else "refused"] += 1
    return verdicts


# --- sensor events: HTTP batch items and MQTT messages -----------------------------------------------------------

good_sensor = {"event_id": "s-1", "sensor_id": "L0-001", "state": "occupied", "confidence": 0.9,
               "occurred_at": "2030-01-07T08:00:00Z"}
SENSOR_FIELDS = ["event_id", "sensor_id", "state", "confidence", "occurred_at"]
sensor_bodies = st.tuples(
    st.one_of(
        st.just({}),
        st.fixed_dictionaries({  # valid readings: the accepted verdict is exercised too
            "state": st.sampled_from(["vacant", "occupied"]), "confidence": st.floats(0, 1)}),
        st.dictionaries(st.sampled_from(SENSOR_FIELDS), st.one_of(
        gate_values, st.sampled_from(["vacant", "occupied"]), st.floats(0, 1), st.integers(0, 1),
        st.text(min_size=1, max_size=10)), max_size=2)),
    st.one_of(st.just(set()), st.sets(st.sampled_from(SENSOR_FIELDS), max_size=1)),
)


async def test_sensor_events_get_one_verdict_over_http_and_mqtt(client: httpx.AsyncClient, ctx: AppContext) -> None:
    gl = await gate_lot(ctx)
    ingestor = Ingestor(engine=ctx.engine, pg=await ctx.pg(), counters=counters_for(ctx), clock=ctx.clock)
    verdicts = {"accepted": 0, "refused": 0}
    for i, (overrides, removed) in enumerate(_collect(sensor_bodies, 150)):
        body = {k: v for k, v in {**good_sensor, **overrides}.items() if k not in removed}
        fresh = "event_id" not in overrides and "event_id" not in removed
        if fresh:
            body["event_id"] = f"s-{i}"  # fresh ids: a duplicate is neither verdict
        try:
            payload = json.dumps(body, allow_nan=True).encode()
        except ValueError:
            continue
        res = await client.post(f"/api/v1/lots/{gl.lot_id}/sensor-events", content=b'{"events": [' + payload + b"]}",
                                headers={**gl.headers, "content-type": "application/json"})
        assert res.status_code == 202, res.text
        http_refused = bool(res.json()["rejected"])
        rejected_before = ingestor.stats["rejected"]
        # MQTT gets a fresh id of its own; a generated id stays as it is (a prefix would change its verdict: '' is
        # refused, 'm-' is not), and a valid one HTTP accepted is then a duplicate, which is no refusal either
        mqtt_body = {**body, "event_id": f"m-{i}"} if fresh else body
        await ingestor.handle(f"parkgrid/lots/{gl.lot_id}/sensors/L0-001", json.dumps(mqtt_body, allow_nan=True).encode())
        await ingestor.flush()
        mqtt_refused = ingestor.stats["rejected"] > rejected_before
        if "sensor_id" in removed:
            continue  # MQTT takes a missing sensor id from its topic
        assert http_refused == mqtt_refused, (body, res.json())
        verdicts["refused" if http_refused else "accepted"] += 1
    assert min(verdicts.values()) > 5, verdicts  # both verdicts were exercised


async def test_the_edge_refuses_a_body_holding_nan_with_problem_json(tmp_path: Path) -> None:
    """A body that fails validation with NaN in it: FastAPI's default handler would echo the input and fail to
    write NaN as JSON (the exception escaped the edge app); the project's handler names the field instead."""
    store = await EdgeStore.open(tmp_path / "edge.sqlite3")
    try:
        agent = EdgeAgent(config=EdgeConfig(lot_id=str(uuid.uuid4()), device_key="k", cloud_url="http://cloud.invalid"),
                          store=store, clock=ManualClock())
        edge_app = create_edge_app(agent, run_background=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=edge_app), base_url="http://edge") as edge:
            res = await edge.post(f"/api/v1/gates/{uuid.uuid4()}/events", headers={"X-Device-Key": "k",
                                                                                "content-type": "application/json"},
                                  content=b'{"event_id": "e-1", "sequence": 1, "occurred_at": "2030-01-07T08:00:00Z",'
                                          b' "plate": NaN}')
        assert res.status_code == 422 and res.headers["content-type"] == "application/problem+json"
        assert res.json()["errors"][0]["loc"] == ["body", "plate"]
    finally:
        await store.close()
