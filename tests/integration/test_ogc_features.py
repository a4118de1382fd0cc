"""OGC API - Features read by a real client: OWSLib over HTTP against the API served by uvicorn in its own process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from owslib.ogcapi.features import Features

from core.context import AppContext
from core.settings import Settings
from tests.open_data_world import City, build_city
from tests.procs import free_port, kill, wait_port

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PARKGRID_DATABASE_URL": settings.database_url,
           "PARKGRID_SECRET_KEY": settings.secret_key.get_secret_value(), "PARKGRID_REDIS_URL": settings.redis_url,
           "PARKGRID_REDIS_PREFIX": settings.redis_prefix, "PARKGRID_BROKER_URL": settings.broker_url,
           "PARKGRID_RATE_LIMITS": "off", "PARKGRID_ENVIRONMENT": "test"}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.asgi:factory", "--factory", "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "warning"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        kill(proc)  # type: ignore[arg-type]


def _read_with_owslib(base: str, key: str) -> dict[str, object]:
    api = Features(f"{base}/ogc", headers={"X-API-Key": key})
    out: dict[str, object] = {"links": api.links, "conformance": api.conformance(),
                              "collections": api.feature_collections(), "collection": api.collection("lots")}
    pages, offset = [], 0
    while True:  # walk the pages as a client does: numberMatched / numberReturned and the next link
        page = api.collection_items("lots", limit=3, offset=offset)
        pages.append(page)
        nxt = [link for link in page["links"] if link["rel"] == "next"]
        if not nxt:
            break
        offset = int(nxt[0]["href"].split("offset=")[1].split("&")[0])
    out["pages"] = pages
    out["boxed"] = api.collection_items("lots", bbox=[13.404, 52.519, 13.4115, 52.5245], limit=50)
    first = pages[0]["features"][0]["id"]  # type: ignore[index]
    out["item"] = api.collection_item("lots", first)
    return out


async def test_owslib_reads_landing_conformance_collections_items_and_one_item(ctx: AppContext, server: str) -> None:
    city: City = await build_city(ctx)
    got = await asyncio.to_thread(_read_with_owslib, server, city.key)
    assert {link["rel"] for link in got["links"]} >= {"self", "conformance", "data", "service-desc"}  # type: ignore[union-attr]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in got["conformance"]["conformsTo"]  # type: ignore[index]
    assert got["collections"] == ["lots"]
    assert got["collection"]["extent"]["spatial"]["bbox"][0][0] == pytest.approx(13.405)  # type: ignore[index]
    pages = got["pages"]
    assert [p["numberReturned"] for p in pages] == [3, 3, 2]  # type: ignore[index]
    assert {p["numberMatched"] for p in pages} == {8}  # type: ignore[index]
    ids = [uuid.UUID(f["id"]) for p in pages for f in p["features"]]  # type: ignore[index]
    assert len(ids) == len(set(ids)) == 8 and set(ids) == city.published()
    boxed = got["boxed"]
    assert {uuid.UUID(f["id"]) for f in boxed["features"]} == {city.gate, city.sensor, city.stale}  # type: ignore[index]
    assert boxed["numberMatched"] == boxed["numberReturned"] == 3  # type: ignore[index]
    item = got["item"]
    assert item["type"] == "Feature" and item["id"] == pages[0]["features"][0]["id"]  # type: ignore[index]


async def test_ogc_refuses_what_the_standard_refuses(ctx: AppContext, client: httpx.AsyncClient) -> None:
    city = await build_city(ctx)
    h = city.headers
    assert (await client.get("/ogc/collections/lots/items", params={"colour": "red"}, headers=h)).status_code == 400
    bad = await client.get("/ogc/collections/lots/items", params={"limit": "0"}, headers=h)
    assert bad.status_code == 400 and bad.json()["errors"][0]["loc"] == ["query", "limit"]
    assert (await client.get("/ogc/collections/lots/items", params={"bbox": "1,2"}, headers=h)).status_code == 400
    assert (await client.get(f"/ogc/collections/lots/items/{uuid.uuid4()}", headers=h)).status_code == 404
    assert (await client.get(f"/ogc/collections/lots/items/{city.private}", headers=h)).status_code == 404
    assert (await client.get("/ogc/collections/lots/items")).status_code == 401
    big = (await client.get("/ogc/collections/lots/items", params={"limit": "100000"}, headers=h)).json()
    assert big["numberReturned"] == 8 and not [link for link in big["links"] if link["rel"] == "next"]
    r = await client.get("/ogc/collections/lots/items", headers=h)
    again = await client.get("/ogc/collections/lots/items", headers={**h, "If-None-Match": r.headers["etag"]})
    assert r.headers["content-type"] == "application/geo+json" and again.status_code == 304
