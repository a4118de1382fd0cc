"""The OpenAPI document is valid (openapi-spec-validator) and complete: success schemas, problem+json errors
for each status an operation can answer, key and bearer security schemes, and examples that work as sent."""

from __future__ import annotations

import json
from typing import Any

import httpx
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from core.clock import ManualClock
from core.context import AppContext
from tests.factories import UserFactory, device_key_for, insert_lot

METHODS = ("get", "put", "post", "patch", "delete")


async def _spec(client: httpx.AsyncClient) -> dict[str, Any]:
    res = await client.get("/openapi.json")
    assert res.status_code == 200
    return res.json()  # type: ignore[no-any-return]


def _ops(spec: dict[str, Any]):  # type: ignore[no-untyped-def]
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


async def test_the_document_validates(client: httpx.AsyncClient) -> None:
    spec = await _spec(client)
    errors = [str(e)[:300] for e in OpenAPIV31SpecValidator(spec).iter_errors()]
    assert errors == []
    validate(spec)  # the library's own entry point, which raises on the first error


async def test_every_operation_documents_success_and_problem_errors(client: httpx.AsyncClient) -> None:
    spec = await _spec(client)
    missing: list[str] = []
    for method, path, op in _ops(spec):
        ok = {c: r for c, r in op["responses"].items() if c.startswith("2")}
        if not ok:
            missing.append(f"{method} {path}: no success answer")
        for code, answer in ok.items():
            if code == "204":
                continue
            content = answer.get("content") or {}
            if not content or any(not (entry or {}).get("schema") for entry in content.values()):
                missing.append(f"{method} {path} {code}: no schema")
        for code, answer in op["responses"].items():
            if code[0] in "45":
                assert list(answer["content"]) == ["application/problem+json"], f"{method} {path} {code}"
        secured = {name for req in op.get("security", []) for name in req}
        if secured:
            assert "401" in op["responses"], f"{method} {path} takes credentials but documents no 401"
        if "{" in path:
            assert "404" in op["responses"], f"{method} {path}"
        if op.get("parameters") or op.get("requestBody"):
            assert "422" in op["responses"], f"{method} {path}"
        headers = {p["name"].lower() for p in op.get("parameters", []) if p["in"] == "header"}
        assert not headers & {"x-device-key", "x-api-key", "authorization"}, f"{method} {path}: key as a parameter"
    assert missing == []
    schemes = spec["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    assert schemes["DeviceKey"] == {**schemes["DeviceKey"], "type": "apiKey", "in": "header", "name": "X-Device-Key"}
    assert schemes["PartnerKey"] == {**schemes["PartnerKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    gate = spec["paths"]["/api/v1/gates/{gate_id}/events"]["post"]
    assert gate["security"] == [{"DeviceKey": []}]


async def test_documented_errors_are_what_the_app_answers(client: httpx.AsyncClient) -> None:
    """A sample of the inferred statuses, answered for real: 401 without credentials, 404, 422, all problem+json."""
    spec = await _spec(client)
    for method, path, status in (("post", "/api/v1/reservations", 401), ("get", "/api/v1/open/lots", 401),
                                 ("post", "/api/v1/lots/{lot_id}/sensor-events", 401)):
        assert str(status) in spec["paths"][path][method]["responses"]
        res = await client.request(method.upper(), path.replace("{lot_id}", "00000000-0000-0000-0000-000000000000"),
                                   json={})
        assert res.status_code == status and res.headers["content-type"] == "application/problem+json"


async def test_examples_work_as_sent(client: httpx.AsyncClient, ctx: AppContext, users: UserFactory,
                                     clock: ManualClock) -> None:
    """Every request-body example, sent with the credentials its operation names to a lot of the caller's."""
    spec = await _spec(client)
    op_user = await users.create("operator")
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, organisation_id=op_user.organisation_id, spots={"regular": 3})
        device = await device_key_for(conn, lot)
    creds = {"HTTPBearer": op_user.headers, "DeviceKey": {"X-Device-Key": device}}
    sent = 0
    for method, path, op in _ops(spec):
        body = (op.get("requestBody") or {}).get("content", {}).get("application/json", {})
        for name, example in (body.get("examples") or {}).items():
            headers: dict[str, str] = {"Content-Type": "application/json"}
            for req in op.get("security", [{}])[:1]:
                for scheme in req:
                    headers.update(creds[scheme])
            res = await client.request(method.upper(), path.replace("{lot_id}", str(lot)), headers=headers,
                                       content=json.dumps(example["value"]),
                                       params=None)
            assert 200 <= res.status_code < 300, f"{method} {path} example {name}: {res.status_code} {res.text}"
            sent += 1
    assert sent >= 2  # the rate card and the sensor batch
