"""Tokens: pinned algorithm, signature, issuer, audience, type and expiry against an injected clock."""

import base64
import json
import uuid
from datetime import timedelta

import jwt
import pytest

from core.clock import ManualClock
from core.errors import Unauthorized, ValidationFailed
from core.privacy import plate_for_viewer
from core.security import (
    create_access_token,
    create_refresh_token,
    decode_access_token,
    decode_refresh_token,
    mask_plate,
    normalise_plate,
    plate_hash,
)

SECRET = b"unit-test-secret-that-is-long-enough-0123"
ISS, AUD = "parkgrid", "parkgrid-api"


def _access(clock: ManualClock, **overrides: object) -> str:
    args: dict[str, object] = {"secret": SECRET, "user_id": uuid.uuid4(), "role": "driver", "organisation_id": None,
                               "issuer": ISS, "audience": AUD, "ttl_seconds": 900, "now": clock.now()}
    args.update(overrides)
    return create_access_token(**args)  # type: ignore[arg-type]


def _decode(token: str, clock: ManualClock, **overrides: object) -> object:
    args: dict[str, object] = {"token": token, "secret": SECRET, "issuer": ISS, "audience": AUD, "now": clock.now()}
    args.update(overrides)
    return decode_access_token(**args)  # type: ignore[arg-type]


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_valid_token_round_trips_on_an_injected_clock_far_from_the_wall_clock() -> None:
    clock = ManualClock()  # 2030: PyJWT's own iat/nbf/exp checks would use the wall clock
    uid, org = uuid.uuid4(), uuid.uuid4()
    claims = _decode(_access(clock, user_id=uid, role="operator", organisation_id=org), clock)
    assert (claims.user_id, claims.role, claims.organisation_id) == (uid, "operator", org)  # type: ignore[attr-defined]


def test_expired_token_refused_once_the_clock_moves() -> None:
    clock = ManualClock()
    token = _access(clock, ttl_seconds=60)
    _decode(token, clock)
    clock.advance(seconds=59)
    _decode(token, clock)
    clock.advance(seconds=1)
    with pytest.raises(Unauthorized, match="expired"):
        _decode(token, clock)


def test_alg_none_refused() -> None:
    clock = ManualClock()
    good = jwt.decode(_access(clock), options={"verify_signature": False})
    forged = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(good | {'role': 'admin'})}."
    with pytest.raises(Unauthorized, match="algorithm"):
        _decode(forged, clock)


def test_other_algorithms_and_wrong_signature_refused() -> None:
    clock = ManualClock()
    payload = jwt.decode(_access(clock), options={"verify_signature": False})
    with pytest.raises(Unauthorized, match="algorithm"):
        _decode(jwt.encode(payload, SECRET * 2, algorithm="HS512"), clock)
    with pytest.raises(Unauthorized, match="invalid token"):
        _decode(jwt.encode(payload, b"another-secret-entirely-long-enough-000", algorithm="HS256"), clock)
    header, _body, sig = _access(clock).split(".")
    tampered_body = _b64(payload | {"role": "admin"})
    with pytest.raises(Unauthorized):
        _decode(f"{header}.{tampered_body}.{sig}", clock)


def test_wrong_issuer_or_audience_refused() -> None:
    clock = ManualClock()
    with pytest.raises(Unauthorized):
        _decode(_access(clock, issuer="evil"), clock)
    with pytest.raises(Unauthorized):
        _decode(_access(clock, audience="another-api"), clock)


def test_a_token_verified_once_is_still_checked_against_the_secret_issuer_audience_and_clock() -> None:
    clock = ManualClock()
    token = _access(clock, ttl_seconds=60)
    for _ in range(2):  # the second decode answers from the verified-token cache
        _decode(token, clock)
    with pytest.raises(Unauthorized, match="invalid token"):
        _decode(token, clock, secret=b"another-secret-entirely-long-enough-000")
    with pytest.raises(Unauthorized):
        _decode(token, clock, issuer="evil")
    with pytest.raises(Unauthorized):
        _decode(token, clock, audience="another-api")
    clock.advance(seconds=60)
    with pytest.raises(Unauthorized, match="expired"):
        _decode(token, clock)


def test_refresh_and_access_tokens_are_not_interchangeable() -> None:
    clock = ManualClock()
    refresh = create_refresh_token(secret=SECRET, token_id=uuid.uuid4(), user_id=uuid.uuid4(), family_id=uuid.uuid4(),
                                   issuer=ISS, audience=AUD, expires_at=clock.now() + timedelta(days=1),
                                   now=clock.now())
    with pytest.raises(Unauthorized, match="not an access token"):
        _decode(refresh, clock)
    with pytest.raises(Unauthorized, match="not a refresh token"):
        decode_refresh_token(token=_access(clock), secret=SECRET, issuer=ISS, audience=AUD, now=clock.now())
    decode_refresh_token(token=refresh, secret=SECRET, issuer=ISS, audience=AUD, now=clock.now())
    clock.advance(days=1)
    with pytest.raises(Unauthorized, match="expired"):
        decode_refresh_token(token=refresh, secret=SECRET, issuer=ISS, audience=AUD, now=clock.now())


@pytest.mark.parametrize(("raw", "plate"), [("ab-123 cd", "AB123CD"), (" gate 01 ", "GATE01"), ("x.y.z", "XYZ")])
def test_plates_are_normalised(raw: str, plate: str) -> None:
    assert normalise_plate(raw) == plate


@pytest.mark.parametrize("raw", ["", "  - ", "ÄB123", "A" * 13, "AB_12"])
def test_bad_plates_name_the_field(raw: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        normalise_plate(raw)
    assert info.value.loc == ("body", "plate")


def test_plate_hash_is_keyed_and_stable() -> None:
    assert plate_hash(SECRET, "AB123CD") == plate_hash(SECRET, "AB123CD")
    assert plate_hash(SECRET, "AB123CD") != plate_hash(SECRET + b"x", "AB123CD")
    assert plate_hash(SECRET, "AB123CD") != plate_hash(SECRET, "AB123CE")


def test_plates_masked_for_all_but_owner_lot_operator_and_admin() -> None:
    owner, org = uuid.uuid4(), uuid.uuid4()
    common = {"plate": "AB123CD", "owner_user_id": owner, "lot_organisation_id": org}
    assert plate_for_viewer(**common, viewer_user_id=owner, viewer_role="driver", viewer_organisation_id=None) \
        == "AB123CD"
    assert plate_for_viewer(**common, viewer_user_id=uuid.uuid4(), viewer_role="operator",
                            viewer_organisation_id=org) == "AB123CD"
    assert plate_for_viewer(**common, viewer_user_id=uuid.uuid4(), viewer_role="admin",
                            viewer_organisation_id=None) == "AB123CD"
    for role, viewer_org in (("driver", None), ("operator", uuid.uuid4()), ("planner", org)):
        assert plate_for_viewer(**common, viewer_user_id=uuid.uuid4(), viewer_role=role,
                                viewer_organisation_id=viewer_org) == "*****CD"
    assert plate_for_viewer(**common, viewer_user_id=None, viewer_role=None, viewer_organisation_id=None) \
        == mask_plate("AB123CD")
