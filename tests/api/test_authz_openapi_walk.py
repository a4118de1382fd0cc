"""Walk every ID-bearing route in the OpenAPI document with someone else's credentials: none may answer 2xx.

The walk reads /openapi.json at run time, so routes added later are covered without touching this file,
as long as their path parameters can be filled. Each parameter is filled with the id of a real object
owned by side A of a small world (ID_SOURCES); the requests are made as side B (a driver, an operator of
another organisation, a planner, plus a device of another lot and a partner key, and anonymously).

Adding a route with a new kind of path parameter? The walk FAILS (it does not skip) until you add the
parameter to ID_SOURCES and, if needed, the object to `build_world`. Path parameters named plain `{id}`
are resolved from the segment before them: /reservations/{id} -> reservation_id.

A route whose ids are public on purpose (discovery shows any lot) goes in PUBLIC with a reason.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from fastapi import APIRouter
from sqlalchemy import text

from api.app import create_app
from api.deps import ConnDep, CurrentUser
from core.accounts import add_vehicle, create_device, create_partner
from core.context import AppContext
from core.security import plate_hash
from core.settings import Settings
from tests import factories
from tests.factories import UserFactory, insert_lot

# path parameter name -> key of World.ids (objects owned by side A)
ID_SOURCES: dict[str, str] = {
    "lot_id": "lot", "gate_id": "gate", "level_id": "level", "spot_id": "spot", "vehicle_id": "vehicle",
    "reservation_id": "reservation", "session_id": "session", "export_id": "export", "device_id": "device",
    "sensor_id": "sensor", "payment_id": "payment", "user_id": "user", "partner_id": "partner",
    "pass_id": "pass", "debt_id": "debt", "alert_id": "alert", "intent_id": "intent",
    "subscription_id": "subscription",
}

# (METHOD, path template) -> why anyone may read it with any id.
PUBLIC: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/lots/{lot_id}"): "discovery: lot details are public",
    ("GET", "/api/v1/lots/{lot_id}/forecast"): "discovery: a lot's occupancy forecast is public, like its detail",
    ("GET", "/api/v1/lots/{lot_id}/availability"): "discovery: a count and a quote, never which spots",
    ("GET", "/ogc/collections/lots/items/{lot_id}"): "open data: every published lot is public to partners",
}

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


@dataclass
class World:
    ids: dict[str, str]
    side_b: dict[str, dict[str, str]]  # credential set name -> headers
    side_a: dict[str, dict[str, str]]
    now: datetime


@dataclass
class WalkReport:
    leaks: list[str] = field(default_factory=list)
    unfillable: list[str] = field(default_factory=list)
    calls: list[tuple[str, str, str, int]] = field(default_factory=list)  # method, url, as, status


async def build_world(ctx: AppContext, users: UserFactory) -> World:
    """Side A owns one of everything; side B owns its own lot, device and accounts."""
    now = ctx.clock.now()
    secret = ctx.settings.secret_bytes
    op_a, op_b = await users.create("operator", org="Org A"), await users.create("operator", org="Org B")
    driver_a, driver_b = await users.create("driver"), await users.create("driver")
    planner_a, planner_b = await users.create("planner"), await users.create("planner")
    async with ctx.engine.begin() as conn:
        lot_a = await insert_lot(conn, organisation_id=op_a.organisation_id, name="A", spots={"regular": 3})
        lot_b = await insert_lot(conn, organisation_id=op_b.organisation_id, name="B", spots={"regular": 3})
        gate = (await conn.execute(text("SELECT id FROM gates WHERE lot_id = :l ORDER BY direction LIMIT 1"),
                                   {"l": lot_a})).scalar_one()
        spot = (await conn.execute(text("SELECT id, level_id FROM spots WHERE lot_id = :l ORDER BY idx LIMIT 1"),
                                   {"l": lot_a})).one()
        vehicle = await add_vehicle(conn=conn, secret=secret, user_id=driver_a.id, plate="AAA111",
                                    vehicle_type="regular", handicap_permit=False, now=now)
        ph = plate_hash(secret, "AAA111")
        starts = now + timedelta(hours=1)
        reservation = (await conn.execute(text(
            "INSERT INTO reservations (lot_id, user_id, spot_id, vehicle_type, plate, plate_hash, starts_at, ends_at,"
            " period, status, price_amount) VALUES (:lot, :user, :spot, 'regular', 'AAA111', :ph, :s, :e,"
            " tstzrange(:s, :e, '[)'), 'confirmed', 500) RETURNING id"),
            {"lot": lot_a, "user": driver_a.id, "spot": spot.id, "ph": ph, "s": starts,
             "e": starts + timedelta(hours=2)})).scalar_one()
        session = (await conn.execute(text(
            "INSERT INTO parking_sessions (lot_id, kind, reservation_id, spot_id, plate, plate_hash, entered_at)"
            " VALUES (:lot, 'reservation', :r, :spot, 'AAA111', :ph, :now) RETURNING id"),
            {"lot": lot_a, "r": reservation, "spot": spot.id, "ph": ph, "now": now})).scalar_one()
        payment = (await conn.execute(text(
            "INSERT INTO payments (lot_id, reservation_id, provider, intent_id, status, amount)"
            " VALUES (:lot, :r, 'local', :intent, 'authorised', 500) RETURNING id"),
            {"lot": lot_a, "r": reservation, "intent": (intent := f"pi_{uuid.uuid4().hex}")})).scalar_one()
        export = (await conn.execute(text(
            "INSERT INTO exports (user_id, params, status, progress) VALUES (:u, '{}', 'done', 1) RETURNING id"),
            {"u": planner_a.id})).scalar_one()
        await conn.execute(text("INSERT INTO sensors (lot_id, id, spot_id) VALUES (:lot, 'sensor-a-1', :spot)"),
                           {"lot": lot_a, "spot": spot.id})
        pass_id = (await conn.execute(text(
            "INSERT INTO monthly_passes (lot_id, user_id, plate_hash, month, price_amount)"
            " VALUES (:lot, :u, :ph, date_trunc('month', CAST(:now AS timestamptz))::date, 9000) RETURNING id"),
            {"lot": lot_a, "u": driver_a.id, "ph": ph, "now": now})).scalar_one()
        subscription = (await conn.execute(text(
            "INSERT INTO pass_subscriptions (lot_id, user_id, plate_hash, price_amount, currency, payment_method,"
            " status, current_month, created_at, updated_at) VALUES (:lot, :u, :ph, 9000, 'usd', 'pm_card_visa',"
            " 'active', date_trunc('month', CAST(:now AS timestamptz))::date, :now, :now) RETURNING id"),
            {"lot": lot_a, "u": driver_a.id, "ph": ph, "now": now})).scalar_one()
        debt = (await conn.execute(text(
            "INSERT INTO plate_debts (lot_id, plate_hash, session_id, amount, reason)"
            " VALUES (:lot, :ph, :s, 300, 'payment failed at exit') RETURNING id"),
            {"lot": lot_a, "ph": ph, "s": session})).scalar_one()
        device_a, key_a = await create_device(conn=conn, lot_id=lot_a)
        _, key_b = await create_device(conn=conn, lot_id=lot_b)
        partner_a, partner_key_a = await create_partner(conn=conn, name="Partner A")
        _, partner_key_b = await create_partner(conn=conn, name="Partner B")

    def creds(user: factories.TestUser | None, device_key: str, partner_key: str) -> dict[str, str]:
        return {**(user.headers if user else {}), "X-Device-Key": device_key, "X-API-Key": partner_key}

    ids = {"lot": lot_a, "gate": gate, "level": spot.level_id, "spot": spot.id, "vehicle": vehicle.id,
           "reservation": reservation, "session": session, "export": export, "device": device_a,
           "sensor": "sensor-a-1", "payment": payment, "user": driver_a.id, "partner": partner_a, "pass": pass_id,
           "debt": debt, "alert": f"unpaid_exit:{debt}", "intent": intent, "subscription": subscription}
    return World(
        ids={k: str(v) for k, v in ids.items()},
        side_b={"driver B": creds(driver_b, key_b, partner_key_b), "operator B": creds(op_b, key_b, partner_key_b),
                "planner B": creds(planner_b, key_b, partner_key_b), "anonymous": {}},
        side_a={"driver A": creds(driver_a, key_a, partner_key_a), "operator A": creds(op_a, key_a, partner_key_a),
                "planner A": creds(planner_a, key_a, partner_key_a)},
        now=now,
    )


# --- request synthesis from the OpenAPI document ------------------------------------------------------------

def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [_resolve(spec, s) for s in schema[key]]
            return next((o for o in options if o.get("type") != "null"), options[0])
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(_resolve(spec, part))
        return merged
    return schema


def sample(spec: dict[str, Any], schema: dict[str, Any], world: World, name: str = "") -> Any:
    """A plausible value for `schema`; ids named like path parameters get side A's objects."""
    schema = _resolve(spec, schema)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {k: sample(spec, v, world, k) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [sample(spec, schema.get("items", {}), world, name) for _ in range(max(1, schema.get("minItems", 1)))]
    if kind == "integer":
        return max(int(schema.get("minimum", 1)), 1)
    if kind == "number":
        return float(schema.get("minimum", 0.5))
    if kind == "boolean":
        return False
    if name in ID_SOURCES:
        return world.ids[ID_SOURCES[name]]
    fmt = schema.get("format")
    if fmt == "uuid":
        return str(uuid.uuid4())
    if fmt == "date-time":
        return (world.now + timedelta(hours=1)).isoformat()
    if fmt == "date":
        return world.now.date().isoformat()
    if fmt == "email":
        return "walker@example.com"
    if name == "plate":
        return "BBB222"
    return "x" * max(1, int(schema.get("minLength", 1)))


def param_key(path: str, name: str) -> str:
    """`lot_id` -> `lot_id`; `{id}` after /reservations -> `reservation_id`."""
    if name != "id":
        return name
    before = path.split("{id}")[0].rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"(ie)?s$", lambda m: "y" if m.group(1) else "", before) + "_id"


def build_request(spec: dict[str, Any], path: str, op: dict[str, Any], world: World) -> dict[str, Any] | str:
    """httpx.request kwargs for this operation, or a string saying which parameter can't be filled."""
    url = path
    query: dict[str, Any] = {}
    for param in op.get("parameters", []):
        param = _resolve(spec, param)
        name, where = param["name"], param["in"]
        if where == "path":
            key = param_key(path, name)
            if key not in ID_SOURCES:
                return f"path parameter {{{name}}} (as {key!r}) is not in ID_SOURCES"
            url = url.replace("{" + name + "}", world.ids[ID_SOURCES[key]])
        elif where == "query" and param.get("required"):
            query[name] = sample(spec, param.get("schema", {}), world, name)
    kwargs: dict[str, Any] = {"url": url, "params": query}
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        kwargs["json"] = sample(spec, content["application/json"].get("schema", {}), world)
    elif "application/x-www-form-urlencoded" in content:
        body = sample(spec, content["application/x-www-form-urlencoded"].get("schema", {}), world)
        kwargs["data"] = {k: str(v) for k, v in body.items()}
    return kwargs


async def walk(http: httpx.AsyncClient, world: World, credentials: dict[str, dict[str, str]]) -> WalkReport:
    """Call every ID-bearing operation with each credential set; report 2xx answers and unfillable routes."""
    spec = (await http.get("/openapi.json")).json()
    report = WalkReport()
    for path, item in sorted(spec["paths"].items()):
        if "{" not in path:
            continue
        for method in HTTP_METHODS:
            op = item.get(method)
            if op is None:
                continue
            op = {**op, "parameters": [*item.get("parameters", []), *op.get("parameters", [])]}
            request = build_request(spec, path, op, world)
            if isinstance(request, str):
                report.unfillable.append(f"{method.upper()} {path}: {request}")
                continue
            for who, headers in credentials.items():
                res = await http.request(method.upper(), headers=headers, **request)
                report.calls.append((method.upper(), path, who, res.status_code))
                if 200 <= res.status_code < 300 and (method.upper(), path) not in PUBLIC:
                    report.leaks.append(f"{method.upper()} {request['url']} as {who} -> {res.status_code}: "
                                        f"{res.text[:200]}")
    return report


# --- the tests ------------------------------------------------------------------------------------------------

async def test_no_id_bearing_route_answers_2xx_to_someone_else(
    client: httpx.AsyncClient, ctx: AppContext, users: UserFactory
) -> None:
    world = await build_world(ctx, users)
    report = await walk(client, world, world.side_b)
    assert not report.unfillable, (
        "routes with path parameters the cross-user walk cannot fill; add them to ID_SOURCES (and build_world) "
        "in tests/api/test_authz_openapi_walk.py:\n  " + "\n  ".join(report.unfillable))
    assert not report.leaks, "someone else's object answered 2xx:\n  " + "\n  ".join(report.leaks)
    walked = {(m, p) for m, p, _, _ in report.calls}
    assert ("GET", "/api/v1/me/vehicles/{vehicle_id}") in walked
    assert ("DELETE", "/api/v1/me/vehicles/{vehicle_id}") in walked


async def test_the_walk_fills_real_ids_so_owners_get_through(
    client: httpx.AsyncClient, ctx: AppContext, users: UserFactory
) -> None:
    # Control: with side A's own credentials the same requests reach the objects, so the 404s above
    # come from authorisation, not from made-up ids.
    world = await build_world(ctx, users)
    report = await walk(client, world, {"driver A": world.side_a["driver A"]})
    statuses = {(m, p): s for m, p, _, s in report.calls}
    assert statuses[("GET", "/api/v1/me/vehicles/{vehicle_id}")] == 200


async def test_the_walk_catches_a_leaky_route_and_an_unknown_parameter(
    settings: Settings, ctx: AppContext, users: UserFactory
) -> None:
    # Negative control: a route that forgets the owner check, and one with a parameter nobody mapped.
    leaky = APIRouter()

    @leaky.get("/api/v1/leaky/vehicles/{vehicle_id}")
    async def leak(vehicle_id: uuid.UUID, user: CurrentUser, conn: ConnDep) -> dict[str, str]:
        plate = await conn.scalar(text("SELECT plate FROM vehicles WHERE id = :id"), {"id": vehicle_id})
        return {"plate": str(plate)}

    @leaky.get("/api/v1/widgets/{widget_id}")
    async def widget(widget_id: uuid.UUID) -> dict[str, str]:
        return {}

    app = create_app(settings, context=ctx)
    app.include_router(leaky)
    world = await build_world(ctx, users)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        report = await walk(http, world, world.side_b)
    assert any("/api/v1/leaky/vehicles/" in leak and "driver B" in leak for leak in report.leaks)
    assert not any("/api/v1/me/" in leak for leak in report.leaks)
    assert report.unfillable == ["GET /api/v1/widgets/{widget_id}: path parameter {widget_id} (as 'widget_id') "
                                 "is not in ID_SOURCES"]


def test_plain_id_parameters_take_their_name_from_the_path() -> None:
    assert param_key("/api/v1/reservations/{id}/confirm", "id") == "reservation_id"
    assert param_key("/api/v1/exports/{id}", "id") == "export_id"
    assert param_key("/api/v1/categories/{id}", "id") == "category_id"
    assert param_key("/api/v1/lots/{lot_id}/sessions", "lot_id") == "lot_id"
