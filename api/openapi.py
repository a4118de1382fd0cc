"""The OpenAPI document, completed from what each route depends on (so routers added later are covered too).

FastAPI's own document describes bodies and parameters; this adds what the app does around them:
- every error answer is RFC 9457 `application/problem+json` (api.problems), so each error status of an operation
  is documented with the `Problem` schema, including the 422 FastAPI documents as `application/json`;
- the error statuses an operation can answer are read off its dependencies: credentials (401), a role or a lot it
  must operate (403), path parameters (404), parameters or a body (422), a rate limit (429), an Idempotency-Key
  (409 while the first request runs), a body (400 when it is not JSON, 413 past PARKGRID_MAX_BODY_BYTES);
  statuses only the domain knows are declared on the route (`responses=`) or in DOMAIN_ERRORS below;
- `X-Device-Key` and `X-API-Key` header parameters become the `DeviceKey` and `PartnerKey` security schemes
  (bearer tokens already are `HTTPBearer`);
- JSON Schema `$defs` nested in a response schema (a pydantic model used as raw JSON Schema, e.g. GeoJSON) move
  to `components/schemas`, where OpenAPI's references can reach them.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from api.problems import PROBLEM_MEDIA_TYPE

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details; `errors` lists each bad field of a 422.",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["loc", "msg"],
            "properties": {"loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                           "msg": {"type": "string"}}}},
    },
    "additionalProperties": True,
}

DESCRIPTIONS = {
    400: "Bad request", 401: "Missing, invalid or expired credentials", 402: "Payment failed or needs the customer",
    403: "Signed in without the role this needs", 404: "Not found (someone else's object answers 404 too)",
    405: "Method not allowed", 406: "Not acceptable", 409: "Conflict with the object's current state",
    413: "Request body too large", 415: "Unsupported media type",
    422: "Invalid input: `errors` names each bad field", 429: "Too many requests: retry after `Retry-After` seconds",
    500: "Internal error", 503: "A service it needs is unavailable; retry shortly",
}

#: security schemes for key headers: header name -> (scheme name, description)
KEY_HEADERS = {
    "x-device-key": ("DeviceKey", "A lot controller's key (`parkgrid devices create`), scoped to one lot"),
    "x-api-key": ("PartnerKey", "An open data partner's key (`parkgrid partners create`)"),
}

#: statuses only the domain knows, by (method, path template); routes may also declare them with `responses=`
DOMAIN_ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("POST", "/api/v1/reservations"): (404, 409, 503),  # 404: the body names no lot
    ("PATCH", "/api/v1/reservations/{reservation_id}"): (402, 409, 503),
    ("POST", "/api/v1/reservations/{reservation_id}/confirm"): (402, 409),
    ("POST", "/api/v1/reservations/{reservation_id}/cancel"): (409,),
    ("GET", "/readyz"): (503,),
    ("GET", "/api/v1/lots/search"): (404,),  # a destination_id that names no destination
    ("POST", "/api/v1/auth/register"): (409,),
    ("POST", "/api/v1/me/vehicles"): (409,),
    ("POST", "/api/v1/lots/{lot_id}/passes"): (409,),
    ("POST", "/api/v1/lots/{lot_id}/passes/{pass_id}/cancel"): (409,),
    ("POST", "/api/v1/lots/{lot_id}/close"): (409,),
    ("POST", "/api/v1/lots/{lot_id}/open"): (409,),
    ("POST", "/api/v1/gates/{gate_id}/events"): (409,),
    ("PUT", "/api/v1/lots/{lot_id}/sensors/{sensor_id}"): (409,),
    ("POST", "/api/v1/me/passes"): (402, 404, 409),  # 404: the body names no lot
    ("GET", "/api/v1/exports/{id}/download"): (403, 404, 410),  # a bad or expired signature; a purged file
    ("GET", "/api/v1/lots/{lot_id}/live"): (401, 403, 404),  # a stream token, or another organisation's lot
    ("POST", "/api/v1/exports"): (503,),  # the broker is away: the job is recorded failed
}

def _obj(*required: str, **properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": properties}


_LINKS = {"type": "array", "items": _obj("href", "rel", href={"type": "string"}, rel={"type": "string"})}
#: success bodies that routes answer as raw bytes (feeds, files, streams), by media type: what a client can rely on
MEDIA_SCHEMAS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("GET", "/api/v1/open/parkapi"): {"application/json": _obj(
        "last_updated", "lots", last_updated={"type": "string"}, last_downloaded={"type": "string"},
        lots={"type": "array", "items": _obj("id", "name", "coords", "state", id={"type": "string"},
                                              name={"type": "string"}, state={"type": "string"},
                                              coords=_obj("lat", "lng", lat={"type": "number"},
                                                          lng={"type": "number"}))})},
    ("GET", "/api/v1/open/parkapi/v3/parking-sites"): {"application/json": _obj(
        "items", items={"type": "array", "items": {"type": "object"}})},
    ("GET", "/api/v1/open/datex2"): {"application/json": _obj(
        "parkingPublicationLight", _modelBaseVersion={"type": "string"}, parkingPublicationLight={"type": "object"})},
    ("GET", "/api/v1/exports/{id}/download"): {
        "text/csv": {"type": "string"}, "application/geo+json": {"type": "object"},
        "application/vnd.apache.parquet": {"type": "string", "format": "binary"}},
    ("GET", "/ogc"): {"application/json": _obj("links", title={"type": "string"}, links=_LINKS)},
    ("GET", "/ogc/conformance"): {"application/json": _obj("conformsTo", conformsTo={
        "type": "array", "items": {"type": "string"}})},
    ("GET", "/ogc/collections"): {"application/json": _obj("collections", "links", collections={
        "type": "array", "items": {"type": "object"}}, links=_LINKS)},
    ("GET", "/ogc/collections/lots"): {"application/json": _obj("id", "links", id={"type": "string"}, links=_LINKS)},
    ("GET", "/api/v1/lots/{lot_id}/live"): {"text/event-stream": {  # any: each event's data is its own JSON
        "description": "Server-Sent Events: `id:`, `event:` (occupancy, gate, alerts, reset, ready) and a JSON `data:`"}},
}

_BEARER = {"current_user", "signed_in", "_principal"}
_ROLE = {"operated_lot_id"}
_RATE_LIMITED = {"write_rate_limit", "partner_rate_limit"}


def _calls(dependant: Dependant) -> list[str]:
    """Qualified names of every callable in a route's dependency tree."""
    names: list[str] = []
    for dep in dependant.dependencies:
        call = dep.call
        names.append(getattr(call, "__qualname__", getattr(call, "__name__", type(call).__name__)))
        names += _calls(dep)
    return names


def _headers(dependant: Dependant) -> set[str]:
    found = {(p.alias or p.name).lower() for p in dependant.header_params}
    for dep in dependant.dependencies:
        found |= _headers(dep)
    return found


def api_routes(app: FastAPI) -> list[Any]:
    """The app's API routes with their full paths (FastAPI >= 0.160 keeps included routers as contexts)."""
    iter_contexts = getattr(routing, "iter_route_contexts", None)
    if iter_contexts is None:
        return [r for r in app.routes if isinstance(r, APIRoute)]
    return [rc for rc in iter_contexts(app.routes) if isinstance(getattr(rc, "original_route", None), APIRoute)]


def error_statuses(route: Any) -> set[int]:
    """The error statuses a route can answer, read off its dependencies and declarations."""
    calls, headers = _calls(route.dependant), _headers(route.dependant)
    found: set[int] = set()
    if any(c.split(".")[0] in _BEARER for c in calls) or headers & KEY_HEADERS.keys() \
            or any(c in ("current_device", "current_partner") for c in calls):
        found.add(401)
    if any(c.startswith("require_roles.") or c in _ROLE for c in calls):
        found |= {403, 404}
    if route.dependant.path_params or any(c in ("lot_device", "gate_device") for c in calls):
        found.add(404)
    if any(c in _RATE_LIMITED or c.startswith("limit_per_ip.") for c in calls):
        found.add(429)
    if "idempotency-key" in headers:
        found.add(409)
    if route.body_field is not None:  # 400: a body that is not JSON; 413: past PARKGRID_MAX_BODY_BYTES
        found |= {400, 413, 422}
    if route.dependant.query_params or route.dependant.path_params or route.dependant.header_params \
            or headers or route.body_field is not None:
        found.add(422)
    for method in route.methods or ():
        found |= set(DOMAIN_ERRORS.get((method, route.path_format), ()))
    found |= {int(code) for code in route.responses if str(code).isdigit() and int(code) >= 400}
    return found


def _hoist_defs(node: Any, schemas: dict[str, Any]) -> Any:
    """Move nested `$defs` into components/schemas and point their references there."""
    if isinstance(node, dict):
        defs = node.pop("$defs", None)
        if isinstance(defs, dict):
            for name, sub in defs.items():
                schemas.setdefault(name, _hoist_defs(sub, schemas))
        for key, value in list(node.items()):
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                node[key] = "#/components/schemas/" + value.removeprefix("#/$defs/")
            else:
                node[key] = _hoist_defs(value, schemas)
    elif isinstance(node, list):
        return [_hoist_defs(v, schemas) for v in node]
    return node


GEOJSON = "application/geo+json"


def _geojson(schemas: dict[str, Any]) -> str:
    """A GeoJSON FeatureCollection schema (geojson-pydantic's models) for geo+json answers that name none."""
    from geojson_pydantic import Feature, FeatureCollection
    from geojson_pydantic.geometries import Geometry

    name = "GeoJSONFeatureCollection"
    if name not in schemas:
        model = FeatureCollection[Feature[Geometry, dict[str, Any]]]
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
        schemas[name] = _hoist_defs(schema, schemas)
    return name


def _problem_response(status: int, existing: dict[str, Any] | None) -> dict[str, Any]:
    description = (existing or {}).get("description") or DESCRIPTIONS.get(status, "Error")
    if description in ("Validation Error", "Successful Response"):
        description = DESCRIPTIONS.get(status, "Error")
    out: dict[str, Any] = {"description": description,
                           "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    if status == 429:
        out["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    return out


def complete_openapi(spec: dict[str, Any], routes: list[Any]) -> dict[str, Any]:
    """Add problem+json errors, key security schemes and reachable `$defs` to FastAPI's document (in place)."""
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemes = components.setdefault("securitySchemes", {})
    schemas["Problem"] = copy.deepcopy(PROBLEM_SCHEMA)
    by_op = {(m.lower(), r.path_format): r for r in routes for m in (r.methods or ())}
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            route = by_op.get((method, path))
            responses = op.setdefault("responses", {})
            _hoist_defs(responses, schemas)
            _keys_as_security(op, schemes)
            for code, answer in responses.items():
                content = answer.get("content") or {}
                if code.startswith("2") and len(content) > 1 and content.get("application/json") == {"schema": {}}:
                    del content["application/json"]  # FastAPI's default beside the media type actually sent
                known = MEDIA_SCHEMAS.get((method.upper(), path), {}) if code.startswith("2") else {}
                for media, entry in content.items():
                    if (entry or {}).get("schema"):
                        continue
                    if media in known:
                        content[media] = {"schema": copy.deepcopy(known[media])}
                    elif media == GEOJSON:
                        content[media] = {"schema": {"$ref": "#/components/schemas/" + _geojson(schemas)}}
            statuses = error_statuses(route) if route is not None else set()
            statuses |= {int(c) for c in responses if c.isdigit() and int(c) >= 400}
            for status in sorted(statuses):
                responses[str(status)] = _problem_response(status, responses.get(str(status)))
    text = json.dumps(spec)
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 body, replaced by Problem
        if f'"#/components/schemas/{unused}"' not in text:
            schemas.pop(unused, None)
    return spec


def _keys_as_security(op: dict[str, Any], schemes: dict[str, Any]) -> None:
    params = op.get("parameters") or []
    kept = []
    for p in params:
        scheme = KEY_HEADERS.get(str(p.get("name", "")).lower()) if p.get("in") == "header" else None
        if scheme is None:
            kept.append(p)
            continue
        name, description = scheme
        schemes[name] = {"type": "apiKey", "in": "header", "name": p["name"], "description": description}
        security = op.setdefault("security", [])
        if {name: []} not in security:
            security.append({name: []})
    if params:
        op["parameters"] = kept
        if not kept:
            del op["parameters"]


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, description=app.description,
                               routes=app.routes, servers=app.servers)
            app.openapi_schema = complete_openapi(spec, api_routes(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
