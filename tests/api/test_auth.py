"""Drivers sign up, sign in, refresh (single use, reuse revokes the family) and manage their vehicles."""

import base64
import json
from datetime import timedelta

import httpx
from sqlalchemy import text

from core.clock import ManualClock
from core.context import AppContext
from core.settings import Settings
from tests.factories import UserFactory

PASSWORD = "correct horse battery staple"


async def _register(client: httpx.AsyncClient, email: str = "Driver@Example.com") -> httpx.Response:
    return await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})


async def _login(client: httpx.AsyncClient, email: str = "driver@example.com",
                 password: str = PASSWORD) -> httpx.Response:
    return await client.post("/api/v1/auth/token", data={"username": email, "password": password})


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_register_then_sign_in_then_me(client: httpx.AsyncClient, ctx: AppContext) -> None:
    res = await _register(client)
    assert res.status_code == 201, res.text
    body = res.json()
    assert set(body) == {"id", "email"} and body["email"] == "driver@example.com"
    async with ctx.engine.connect() as conn:
        stored = await conn.scalar(text("SELECT password_hash FROM users WHERE id = :id"), {"id": body["id"]})
    assert stored.startswith("$argon2id$") and PASSWORD not in stored

    tok = await _login(client, "DRIVER@example.com")
    assert tok.status_code == 200, tok.text
    pair = tok.json()
    assert pair["token_type"] == "bearer" and pair["expires_in"] == ctx.settings.access_token_ttl_seconds
    assert pair["access_token"] and pair["refresh_token"]

    me = await client.get("/api/v1/me", headers=_bearer(pair["access_token"]))
    assert me.status_code == 200
    assert me.json() == {"id": body["id"], "email": "driver@example.com", "role": "driver", "organisation_id": None}


async def test_duplicate_email_is_409(client: httpx.AsyncClient) -> None:
    assert (await _register(client)).status_code == 201
    dup = await _register(client, "driver@EXAMPLE.com")
    assert dup.status_code == 409
    assert dup.headers["content-type"] == "application/problem+json"


async def test_wrong_password_and_unknown_email_are_the_same_401(client: httpx.AsyncClient) -> None:
    await _register(client)
    wrong = await _login(client, password="not the password")
    unknown = await _login(client, email="nobody@example.com")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]
    assert "refresh_token" not in wrong.text


async def test_input_limits_name_the_field(client: httpx.AsyncClient) -> None:
    bad_email = await client.post("/api/v1/auth/register", json={"email": "not-an-email", "password": PASSWORD})
    assert bad_email.status_code == 422
    assert ["body", "email"] in [e["loc"] for e in bad_email.json()["errors"]]
    long_pw = await client.post("/api/v1/auth/register", json={"email": "a@example.com", "password": "x" * 129})
    assert ["body", "password"] in [e["loc"] for e in long_pw.json()["errors"]]
    short_pw = await client.post("/api/v1/auth/register", json={"email": "a@example.com", "password": "short"})
    assert ["body", "password"] in [e["loc"] for e in short_pw.json()["errors"]]
    huge_email = await client.post("/api/v1/auth/register",
                                   json={"email": "a" * 400 + "@example.com", "password": PASSWORD})
    assert huge_email.status_code == 422
    form = await client.post("/api/v1/auth/token", data={"username": "u" * 400, "password": "p"})
    assert form.status_code == 422 and ["body", "username"] in [e["loc"] for e in form.json()["errors"]]


async def test_oversized_body_is_413(client: httpx.AsyncClient, settings: Settings) -> None:
    res = await client.post("/api/v1/auth/register", content=b"{" + b" " * settings.max_body_bytes + b"}",
                            headers={"content-type": "application/json"})
    assert res.status_code == 413


async def test_access_token_expires_on_the_injected_clock(client: httpx.AsyncClient, clock: ManualClock,
                                                          settings: Settings) -> None:
    await _register(client)
    access = (await _login(client)).json()["access_token"]
    assert (await client.get("/api/v1/me", headers=_bearer(access))).status_code == 200
    clock.advance(seconds=settings.access_token_ttl_seconds)
    expired = await client.get("/api/v1/me", headers=_bearer(access))
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]


async def test_tampered_and_alg_none_tokens_are_401(client: httpx.AsyncClient, users: UserFactory) -> None:
    driver = await users.create("driver")
    token = driver.headers["Authorization"].split()[1]
    header, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))

    def b64(d: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    as_admin = f"{header}.{b64(claims | {'role': 'admin'})}.{sig}"
    alg_none = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims | {'role': 'admin'})}."
    for bad in (as_admin, alg_none, token[:-4] + "AAAA", "garbage"):
        res = await client.get("/api/v1/me", headers=_bearer(bad))
        assert res.status_code == 401, bad
        assert res.headers["content-type"] == "application/problem+json"
    assert (await client.get("/api/v1/me")).status_code == 401
    assert (await client.get("/api/v1/me", headers=driver.headers)).status_code == 200


async def test_refresh_rotates_and_a_used_token_is_refused(client: httpx.AsyncClient) -> None:
    await _register(client)
    first = (await _login(client)).json()
    second = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.text
    new = second.json()
    assert set(new) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert new["refresh_token"] != first["refresh_token"]
    assert (await client.get("/api/v1/me", headers=_bearer(new["access_token"]))).status_code == 200
    third = await client.post("/api/v1/auth/refresh", json={"refresh_token": new["refresh_token"]})
    assert third.status_code == 200


async def test_refresh_reuse_revokes_the_whole_family(client: httpx.AsyncClient, ctx: AppContext) -> None:
    await _register(client)
    stolen = (await _login(client)).json()["refresh_token"]
    other_session = (await _login(client)).json()["refresh_token"]  # another device: another family
    legit = (await client.post("/api/v1/auth/refresh", json={"refresh_token": stolen})).json()["refresh_token"]

    replay = await client.post("/api/v1/auth/refresh", json={"refresh_token": stolen})
    assert replay.status_code == 401 and "already used" in replay.json()["detail"]
    # The legitimate successor is now dead too: the thief and the owner both have to sign in again.
    dead = await client.post("/api/v1/auth/refresh", json={"refresh_token": legit})
    assert dead.status_code == 401
    # ...but the user's other sign-in is untouched.
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": other_session})).status_code == 200
    async with ctx.engine.connect() as conn:
        families = (await conn.execute(text(
            "SELECT family_id, count(*) FILTER (WHERE revoked_at IS NOT NULL) AS revoked, count(*) AS n "
            "FROM refresh_tokens GROUP BY family_id"))).all()
    assert sorted((r.revoked, r.n) for r in families) == [(0, 2), (2, 2)]


async def test_refresh_token_expires_and_access_token_is_no_refresh_token(
    client: httpx.AsyncClient, clock: ManualClock, settings: Settings
) -> None:
    await _register(client)
    pair = (await _login(client)).json()
    wrong_kind = await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["access_token"]})
    assert wrong_kind.status_code == 401
    clock.advance(timedelta(seconds=settings.refresh_token_ttl_seconds))
    late = await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert late.status_code == 401 and "expired" in late.json()["detail"]


async def test_disabled_user_cannot_sign_in_or_refresh(client: httpx.AsyncClient, ctx: AppContext) -> None:
    await _register(client)
    pair = (await _login(client)).json()
    async with ctx.engine.begin() as conn:
        await conn.execute(text("UPDATE users SET disabled = true"))
    assert (await _login(client)).status_code == 401
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})).status_code \
        == 401


async def test_vehicles_are_normalised_shown_to_owner_and_hidden_from_others(
    client: httpx.AsyncClient, users: UserFactory, ctx: AppContext
) -> None:
    alice, bob = await users.create("driver"), await users.create("driver")
    made = await client.post("/api/v1/me/vehicles", headers=alice.headers,
                             json={"plate": "ab-123 cd", "vehicle_type": "ev", "handicap_permit": True})
    assert made.status_code == 201, made.text
    vehicle = made.json()
    assert (vehicle["plate"], vehicle["vehicle_type"], vehicle["handicap_permit"]) == ("AB123CD", "ev", True)

    dup = await client.post("/api/v1/me/vehicles", headers=alice.headers, json={"plate": "AB 123 CD"})
    assert dup.status_code == 409
    listed = await client.get("/api/v1/me/vehicles", headers=alice.headers)
    assert [v["plate"] for v in listed.json()["items"]] == ["AB123CD"] and listed.json()["next_cursor"] is None
    assert (await client.get(f"/api/v1/me/vehicles/{vehicle['id']}", headers=alice.headers)).status_code == 200

    assert (await client.get("/api/v1/me/vehicles", headers=bob.headers)).json()["items"] == []
    for method in ("GET", "DELETE"):
        res = await client.request(method, f"/api/v1/me/vehicles/{vehicle['id']}", headers=bob.headers)
        assert res.status_code == 404 and "AB123CD" not in res.text

    async with ctx.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT plate, plate_hash FROM vehicles"))).one()
    from core.security import plate_hash

    assert stored.plate_hash == plate_hash(ctx.settings.secret_bytes, "AB123CD")
    gone = await client.delete(f"/api/v1/me/vehicles/{vehicle['id']}", headers=alice.headers)
    assert gone.status_code == 204
    assert (await client.get(f"/api/v1/me/vehicles/{vehicle['id']}", headers=alice.headers)).status_code == 404


async def test_vehicle_input_errors_name_the_field(client: httpx.AsyncClient, users: UserFactory) -> None:
    alice = await users.create("driver")
    for body, field in (({"plate": "!!"}, "plate"), ({"plate": "X" * 21}, "plate"),
                        ({"plate": "AB1", "vehicle_type": "tank"}, "vehicle_type")):
        res = await client.post("/api/v1/me/vehicles", headers=alice.headers, json=body)
        assert res.status_code == 422, body
        assert ["body", field] in [e["loc"] for e in res.json()["errors"]], res.json()
