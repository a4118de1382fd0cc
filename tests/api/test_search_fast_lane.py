"""The search route's fast lane (api.routers.search_query) answers exactly as FastAPI's validated lane does, and
hands everything it does not fully understand to that lane."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson
import pytest
from fastapi.routing import APIRoute
from hypothesis import given
from hypothesis import strategies as st

from api.routers import search as search_router
from api.routers.search_query import plain_search_query, query_pairs
from api.schemas.discovery import SearchResponse, search_json
from core.clock import ManualClock
from core.context import AppContext
from geo.lotindex import lot_ref_json
from geo.search import SearchItem, SearchPage
from geo.walk import NO_NETWORK, walk_of
from geo.window import resolve_window
from pricing.service import ShownQuote
from tests.api.test_search import NOW, ORIGIN, add, offset
from tests.factories import UserFactory
from tests.pricing_helpers import card


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.mark.parametrize(("query", "expected"), [
    (b"lat=48.85&lng=2.35", {"lat": 48.85, "lng": 2.35}),
    (b"lat=-90&lng=180&radius_m=250.5&limit=100&unknown=1", {"lat": -90.0, "lng": 180.0, "radius_m": 250.5,
                                                             "limit": 100}),
    (b"lat=0&lng=0&amenities=covered&amenities=cctv,staffed&vehicle_type=ev&sort=price&max_price=0",
     {"lat": 0.0, "lng": 0.0, "amenities": ["covered", "cctv,staffed"], "vehicle_type": "ev", "sort": "price",
      "max_price": 0}),
    (b"lat=1&lng=2&starts_at=2025-01-06T18:00:00Z&ends_at=2025-01-06T19:30:00.5%2B02:00",
     {"lat": 1.0, "lng": 2.0, "starts_at": datetime(2025, 1, 6, 18, tzinfo=UTC),
      "ends_at": datetime(2025, 1, 6, 17, 30, 0, 500000, tzinfo=UTC)}),
    (b"lat=1&lat=2&lng=3", {"lat": 2.0, "lng": 3.0}),  # repeated: the last one, as FastAPI takes it
])
def test_plain_queries_are_parsed(query: bytes, expected: dict[str, Any]) -> None:
    params = plain_search_query(query)
    assert params is not None and params.model_dump(exclude_unset=True) == expected


@pytest.mark.parametrize("query", [
    b"lat=91&lng=0", b"lat=nan&lng=0", b"lat=&lng=0", b"lat=1&lng=2&limit=0", b"lat=1&lng=2&limit=101",
    b"lat=1&lng=2&max_price=-1", b"lat=1&lng=2&vehicle_type=tank", b"lat=1&lng=2&sort=rating",
    b"lat=1&lng=2&starts_at=2025-02-30T18:00:00Z", b"lat=1&lng=2&radius_m=inf",
    b"lat=1&lng=2&radius_m=%EF%BC%95%EF%BC%90%EF%BC%90", b"lat=1&lng=2&radius_m=%D9%A5%D9%A0%D9%A0",
    b"lat=1&lng=2&cursor=" + b"x" * 501, b"bbox=" + b"1" * 201,
    b"lat=1&lng=2&" + b"&".join([b"amenities=covered"] * 21),
])
def test_what_the_model_refuses_goes_to_fastapi(query: bytes) -> None:
    assert plain_search_query(query) is None


@given(st.text(alphabet="ab=&;%+2F.-", max_size=24))
def test_query_pairs_are_parse_qsls(text: str) -> None:
    assert query_pairs(text) == parse_qsl(text, keep_blank_values=True)


def test_lots_and_quotes_written_ahead_serialise_like_ones_built_per_request() -> None:
    now = datetime(2025, 1, 6, 16, 0, 0, 123456, tzinfo=UTC)
    window = resolve_window(starts_at=None, ends_at=None, now=now, max_window_days=7)
    lot_id = uuid.uuid4()
    quote = {"total": {"amount": 100, "currency": "eur"}, "multiplier": "1", "token": "a.b", "discount_code": None}
    shown = ShownQuote(quote)
    shown.json = orjson.dumps(quote)
    item = SearchItem(lot_id, 'Quai "des" Célestins', 48.853412, 2.360001, 12.3456, 3, 5, quote, "database", now)
    spliced = item._replace(lot_json=lot_ref_json(lot_id, item.name, item.lat, item.lng), quote=shown)
    page = SearchPage(items=[item], next_cursor="abc", origin=ORIGIN, window=window)
    assert search_json(page) == search_json(SearchPage(items=[spliced], next_cursor="abc", origin=ORIGIN,
                                                       window=window))
    assert orjson.loads(search_json(page))["items"][0]["lot"]["name"] == 'Quai "des" Célestins'


def test_joined_json_is_what_the_response_model_writes() -> None:
    now = datetime(2025, 1, 6, 16, 0, 0, 123456, tzinfo=UTC)
    window = resolve_window(starts_at=None, ends_at=None, now=now, max_window_days=7)
    quote = {"total": {"amount": 250, "currency": "usd"}, "token": "x.y"}
    shown = ShownQuote(quote)
    shown.json = orjson.dumps(quote)
    items = [SearchItem(uuid.uuid4(), "A", 1.5, -2.25, 0.0, 0, 0, None, "database", now),
             SearchItem(uuid.uuid4(), "B\u00e9", -89.9, 179.999999, 1234.5678, 7, 9, shown, "bitmap",
                        now + timedelta(seconds=1)),
             SearchItem(uuid.uuid4(), "C", 0.0, 0.0, 4999.999, 1, 2, quote, "database", now)]
    items[1] = items[1]._replace(lot_json=lot_ref_json(items[1].lot_id, "B\u00e9", -89.9, 179.999999))
    for cursor in (None, "abc"):
        written = search_json(SearchPage(items=items, next_cursor=cursor, origin=ORIGIN, window=window))
        model = SearchResponse.model_validate_json(written)
        assert orjson.loads(written) == orjson.loads(model.model_dump_json(exclude_unset=True))
        assert [i["distance_m"] for i in orjson.loads(written)["items"]] == [0.0, 1234.57, 5000.0]
        assert "walk" not in orjson.loads(written) and "walk" not in orjson.loads(written)["items"][0]
    # a walking search's page: every item says its walk (or why there is none), the answer its summary
    walks = [items[0]._replace(walk=walk_of(812.25)), items[1]._replace(walk_reason=NO_NETWORK)]
    summary = {"speed_m_per_min": 80.0, "max_walk_m": 1500.0, "network": True, "note": "ordered by walking time",
               "destination": None}
    written = search_json(SearchPage(items=walks, next_cursor=None, origin=ORIGIN, window=window, walk=summary))
    model = SearchResponse.model_validate_json(written)
    assert orjson.loads(written) == orjson.loads(model.model_dump_json(exclude_unset=True))
    body = orjson.loads(written)
    assert body["walk"] == summary
    assert [(i["walk"], i["walk_reason"]) for i in body["items"]] == [({"meters": 812.2, "minutes": 10.2}, None),
                                                                       (None, NO_NETWORK)]


def _routed_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sends every search down FastAPI's lane (the shortcut finds nothing it may answer)."""
    monkeypatch.setattr(search_router, "plain_search_query", lambda query_string: None)


async def test_both_lanes_answer_alike(client: httpx.AsyncClient, ctx: AppContext, users: UserFactory,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    op = await users.create("operator")
    for i in range(6):
        lat, lng = offset(*ORIGIN, north_m=60 * (i + 1), east_m=-25 * i)
        lot = await add(ctx, f"L{i}", lat, lng, spots={"regular": 4, "ev": 2})
        if i % 2 == 0:
            await client.put(f"/api/v1/lots/{lot}/rates", json=card(), headers=op.headers)
    start = NOW + timedelta(hours=2)
    base = f"lat={ORIGIN[0]}&lng={ORIGIN[1]}"
    queries = [
        base,
        f"{base}&radius_m=300&limit=2&vehicle_type=ev",
        f"{base}&limit=3&sort=price&max_price=100000&limit=3",
        f"{base}&amenities=covered,cctv&amenities=staffed",
        f"{base}&starts_at={start.isoformat().replace('+00:00', 'Z')}"
        f"&ends_at={(start + timedelta(minutes=50)).isoformat().replace('+00:00', '%2B00:00')}",
    ]
    for query in queries:
        first = await client.get(f"/api/v1/lots/search?{query}")
        assert first.status_code == 200, first.text
        cursor = first.json()["next_cursor"]
        paged = [f"{query}&cursor={cursor}"] if cursor else []
        for q in (query, *paged):
            assert plain_search_query(q.encode()) is not None  # the fast lane takes it ...
            fast = await client.get(f"/api/v1/lots/search?{q}")
            with monkeypatch.context() as patch:  # ... and FastAPI's lane
                _routed_only(patch)
                validated = await client.get(f"/api/v1/lots/search?{q}")
            assert fast.status_code == validated.status_code == 200
            assert fast.content == validated.content, q
            geo = await client.get(f"/api/v1/lots/search?{q}", headers={"accept": "application/geo+json"})
            assert geo.headers["content-type"] == "application/geo+json"
            assert [f["properties"]["name"] for f in geo.json()["features"]] == \
                [i["lot"]["name"] for i in fast.json()["items"]]


@pytest.mark.parametrize(("query", "field"), [
    (f"lat={ORIGIN[0]}&lng={ORIGIN[1]}&radius_m=999999", "radius_m"),  # past the configured maximum
    (f"lat={ORIGIN[0]}&lng={ORIGIN[1]}&cursor=bm90LWEtY3Vyc29y", "cursor"),  # base64 of "not-a-cursor"
    (f"lat={ORIGIN[0]}&lng={ORIGIN[1]}&amenities=helipad", "amenities"),
    (f"lat={ORIGIN[0]}&lng={ORIGIN[1]}&starts_at=2020-01-01T10:00:00Z", "ends_at"),  # a window long past
])
async def test_errors_on_the_shortcut_are_the_validated_lanes(client: httpx.AsyncClient, query: str, field: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert plain_search_query(query.encode()) is not None  # answered ahead of routing ...
    fast = await client.get(f"/api/v1/lots/search?{query}")
    _routed_only(monkeypatch)
    validated = await client.get(f"/api/v1/lots/search?{query}")  # ... and by FastAPI's route
    assert fast.status_code == validated.status_code == 422
    assert fast.headers["content-type"] == validated.headers["content-type"] == "application/problem+json"
    assert fast.json() == validated.json() and fast.json()["errors"][0]["loc"] == ["query", field]


async def test_the_shortcut_keeps_request_ids_and_route_metrics(client: httpx.AsyncClient) -> None:
    plain = f"/api/v1/lots/search?lat={ORIGIN[0]}&lng={ORIGIN[1]}"
    res = await client.get(plain, headers={"x-request-id": "trace-123"})
    assert res.status_code == 200 and res.headers["x-request-id"] == "trace-123"
    await client.get(f"{plain}&radius_m=%EF%BC%95%EF%BC%90%EF%BC%90")  # FastAPI's route: 422
    await client.get(f"{plain}&radius_m=999999")
    metrics = [line for line in (await client.get("/metrics")).text.splitlines()
               if line.startswith("parkgrid_http_requests_total{") and "search" in line]
    assert metrics == ['parkgrid_http_requests_total{method="GET",route="/lots/search",status="200"} 1.0',
                       'parkgrid_http_requests_total{method="GET",route="/lots/search",status="422"} 2.0']


async def test_plain_searches_never_reach_routing(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    async def routed(self: APIRoute, scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError(f"routed: {scope['path']}?{scope['query_string'].decode()}")

    monkeypatch.setattr(APIRoute, "handle", routed)
    plain = f"/api/v1/lots/search?lat={ORIGIN[0]}&lng={ORIGIN[1]}"
    assert (await client.get(plain)).status_code == 200
    assert (await client.get(f"{plain}&radius_m=999999")).status_code == 422
    with pytest.raises(AssertionError, match="routed"):  # the control: anything else is routed
        await client.get(f"{plain}&limit=%EF%BC%92")  # a fullwidth 2: the model refuses it, FastAPI's lane answers
