"""OGC API - Features (Part 1: Core, GeoJSON) under /ogc: the published lots as one `lots` collection.

Served from the same snapshot as the other feeds (geo.feed_snapshot), with the same X-API-Key, quota and caching
headers. Features are the GeoJSON feed's features, in lot id order, paged by limit/offset with `next`/`prev`
links; coordinates are WGS 84 longitude/latitude (CRS84). Bad parameters answer 400 as the standard requires.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from api.deps import CtxDep
from api.feeds import feed_response
from api.problems import problem
from api.ratelimit import LimitedPartner
from core.errors import ValidationFailed
from geo import feed_formats as fmt
from geo.feed_snapshot import feed_snapshots
from geo.window import parse_bbox

router = APIRouter(prefix="/ogc", tags=["OGC API - Features"])

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CONFORMS_TO = ["http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
               "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson"]
GEOJSON = "application/geo+json"
JSON = "application/json"
DEFAULT_LIMIT, MAX_LIMIT = 100, 10_000
ITEM_PARAMS = {"bbox", "limit", "offset", "f"}


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/ogc"


def _json(body: dict[str, Any]) -> Response:
    return Response(content=orjson.dumps(body), media_type=JSON)


def _bad(request: Request, detail: str, field: str) -> JSONResponse:
    return problem(request, status=400, slug="bad-parameter", title="Bad parameter", detail=detail,
                   errors=[{"loc": ["query", field], "msg": detail}])


@router.get("", summary="Landing page")
async def landing(request: Request, partner: LimitedPartner) -> Response:
    base = _base(request)
    return _json({"title": "ParkGrid car parks", "description": "Public car parks with live availability",
                  "links": [{"rel": "self", "type": JSON, "title": "this document", "href": base},
                            {"rel": "service-desc", "type": "application/vnd.oai.openapi+json;version=3.0",
                             "title": "the API definition", "href": str(request.base_url).rstrip("/") + "/openapi.json"},
                            {"rel": "conformance", "type": JSON, "title": "conformance", "href": f"{base}/conformance"},
                            {"rel": "data", "type": JSON, "title": "collections", "href": f"{base}/collections"}]})


@router.get("/conformance", summary="Conformance classes")
async def conformance(partner: LimitedPartner) -> Response:
    return _json({"conformsTo": CONFORMS_TO})


def _collection(request: Request, extent: list[float] | None) -> dict[str, Any]:
    base = _base(request)
    body: dict[str, Any] = {
        "id": "lots", "title": "Car parks", "itemType": "feature", "crs": [CRS84],
        "description": "Public car parks: capacity by spot type, live availability (null when unknown or stale), "
                       "status and its reason, freshness, opening hours, fee, OSM id",
        "links": [{"rel": "self", "type": JSON, "href": f"{base}/collections/lots"},
                  {"rel": "items", "type": GEOJSON, "title": "car parks", "href": f"{base}/collections/lots/items"}]}
    if extent is not None:
        body["extent"] = {"spatial": {"bbox": [extent], "crs": CRS84}}
    return body


async def _extent(ctx: CtxDep) -> list[float] | None:
    snap = await feed_snapshots(ctx).current(now=ctx.clock.now())
    if not snap.lots:
        return None
    return [float(snap.lng.min()), float(snap.lat.min()), float(snap.lng.max()), float(snap.lat.max())]


@router.get("/collections", summary="Collections")
async def collections(request: Request, ctx: CtxDep, partner: LimitedPartner) -> Response:
    base = _base(request)
    return _json({"links": [{"rel": "self", "type": JSON, "href": f"{base}/collections"}],
                  "collections": [_collection(request, await _extent(ctx))]})


@router.get("/collections/lots", summary="The lots collection")
async def collection(request: Request, ctx: CtxDep, partner: LimitedPartner) -> Response:
    return _json(_collection(request, await _extent(ctx)))


def _int(request: Request, name: str, default: int, low: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"{name} must be a whole number", loc=("query", name)) from None
    if value < low:
        raise ValidationFailed(f"{name} must be at least {low}", loc=("query", name))
    return value


@router.get("/collections/lots/items", summary="Car parks (GeoJSON), by bbox, limit and offset",
            responses={200: {"content": {GEOJSON: {}}}})
async def items(request: Request, ctx: CtxDep, partner: LimitedPartner) -> Response:
    unknown = sorted(set(request.query_params) - ITEM_PARAMS)
    if unknown:
        return _bad(request, f"unknown parameter {unknown[0]!r}; known: {sorted(ITEM_PARAMS)}", unknown[0])
    try:
        limit = min(_int(request, "limit", DEFAULT_LIMIT, 1), MAX_LIMIT)
        offset = _int(request, "offset", 0, 0)
        raw_bbox = request.query_params.get("bbox")
        box = None
        if raw_bbox is not None:
            b = parse_bbox(raw_bbox)
            box = (b.west, b.south, b.east, b.north)
    except ValidationFailed as exc:
        return _bad(request, exc.detail, str(exc.loc[-1]) if exc.loc else "?")
    snap = await feed_snapshots(ctx).current(now=ctx.clock.now())
    matched = snap.in_bbox(box)
    page = matched[offset:offset + limit]
    base = f"{_base(request)}/collections/lots/items"
    query = f"&bbox={','.join(repr(v) for v in box)}" if box else ""

    def href(at: int) -> str:
        return f"{base}?limit={limit}&offset={at}{query}"

    def build() -> dict[str, Any]:
        links = [{"rel": "self", "type": GEOJSON, "href": href(offset)},
                 {"rel": "collection", "type": JSON, "href": f"{_base(request)}/collections/lots"}]
        if offset + limit < len(matched):
            links.append({"rel": "next", "type": GEOJSON, "href": href(offset + limit)})
        if offset > 0:
            links.append({"rel": "prev", "type": GEOJSON, "href": href(max(0, offset - limit))})
        return {"type": "FeatureCollection", "features": [fmt.geojson_feature(lot) for lot in page],
                "numberMatched": len(matched), "numberReturned": len(page),
                "timeStamp": fmt.iso(snap.changed_at), "links": links}

    return feed_response(request, snap=snap, variant=f"ogc-items?{limit}&{offset}&{box}&{request.base_url}",
                         media_type=GEOJSON, max_age=ctx.settings.open_data_cache_seconds, cache=False, build=build)


_FEATURE_SCHEMA = {"type": "object", "required": ["type", "geometry", "properties"], "properties": {
    "type": {"const": "Feature"}, "id": {"type": "string"}, "geometry": {"type": "object"},
    "properties": {"type": "object"}, "links": {"type": "array", "items": {"type": "object"}}}}


@router.get("/collections/lots/items/{lot_id}", summary="One car park (GeoJSON Feature)",
            responses={200: {"content": {GEOJSON: {"schema": _FEATURE_SCHEMA}}}, 404: {"description": "no such car park"}})
async def item(request: Request, ctx: CtxDep, partner: LimitedPartner, lot_id: str) -> Response:
    feature_id = lot_id  # OGC's featureId: the lot id
    snap = await feed_snapshots(ctx).current(now=ctx.clock.now())
    try:
        lot = snap.get(uuid.UUID(feature_id))
    except ValueError:
        lot = None
    if lot is None:
        return problem(request, status=404, slug="not-found", title="Not found", detail=f"no car park {feature_id}")

    def build() -> dict[str, Any]:
        feature = fmt.geojson_feature(lot)
        feature["links"] = [
            {"rel": "self", "type": GEOJSON, "href": f"{_base(request)}/collections/lots/items/{feature_id}"},
            {"rel": "collection", "type": JSON, "href": f"{_base(request)}/collections/lots"}]
        return feature

    return feed_response(request, snap=snap, variant=f"ogc-item?{feature_id}&{request.base_url}", media_type=GEOJSON,
                         max_age=ctx.settings.open_data_cache_seconds, cache=False, build=build)
