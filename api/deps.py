"""FastAPI dependencies as Annotated aliases: context, connection, clock, and who is calling."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection

from core.context import AppContext
from core.errors import Forbidden, Unauthorized
from core.keyring import Device, keyring
from core.security import decode_access_token, hash_api_key


async def get_ctx(request: Request) -> AppContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


CtxDep = Annotated[AppContext, Depends(get_ctx)]


async def get_conn(ctx: CtxDep) -> AsyncIterator[AsyncConnection]:
    """One transaction per request: committed when the handler returns, rolled back if it raises.

    Used only through ConnDep, whose `scope="function"` makes FastAPI run this exit (the COMMIT) as soon as the
    handler returns and before the response starts: a failed commit propagates to the problem handlers as a
    500, and a 2xx is only ever sent for a committed write (docs/adr/0015-idempotency-with-its-effect.md). With
    the default request scope the exit ran after the response was sent: a client could read its 201's object
    before it existed, and a commit failing then left it holding a 201 for nothing."""
    async with ctx.engine.begin() as conn:
        yield conn


ConnDep = Annotated[AsyncConnection, Depends(get_conn, scope="function")]


async def get_now(ctx: CtxDep) -> datetime:
    return ctx.clock.now()


NowDep = Annotated[datetime, Depends(get_now)]

bearer = HTTPBearer(auto_error=False, description="JWT access token from POST /api/v1/auth/token")


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    role: str
    organisation_id: uuid.UUID | None


def _principal(ctx: AppContext, creds: HTTPAuthorizationCredentials | None) -> Principal:
    if creds is None or creds.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token")
    s = ctx.settings
    claims = decode_access_token(token=creds.credentials, secret=s.secret_bytes, issuer=s.jwt_issuer,
                                 audience=s.jwt_audience, now=ctx.clock.now())
    return Principal(user_id=claims.user_id, role=claims.role, organisation_id=claims.organisation_id)


async def _active(ctx: AppContext, principal: Principal) -> Principal:
    """The principal, unless the user was revoked (`parkgrid users revoke`) after the token was signed."""
    if not await keyring(ctx).user_active(principal.user_id):
        raise Unauthorized("this account has been revoked")
    return principal


async def current_user(
    ctx: CtxDep, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    """The caller named by a valid access token of a user not revoked since (401 otherwise)."""
    return await _active(ctx, _principal(ctx, creds))


CurrentUser = Annotated[Principal, Depends(current_user)]


@dataclass(frozen=True)
class SignedIn:
    """A signed-in caller with the process context and the time of the request: CtxDep, CurrentUser and NowDep
    in one dependency, for the hot write routes (FastAPI's per-dependency work cost more than a hold's SQL)."""

    ctx: AppContext
    user: Principal
    now: datetime


async def signed_in(request: Request,
                    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> SignedIn:
    ctx: AppContext = request.app.state.ctx
    return SignedIn(ctx, await _active(ctx, _principal(ctx, creds)), ctx.clock.now())


SignedInDep = Annotated[SignedIn, Depends(signed_in)]


def require_roles(*roles: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency admitting only the given roles (403 for anyone else who is signed in)."""

    async def dep(user: CurrentUser) -> Principal:
        if user.role not in roles:
            raise Forbidden(f"requires role {' or '.join(roles)}")
        return user

    return dep


OperatorUser = Annotated[Principal, Depends(require_roles("operator", "admin"))]
PlannerUser = Annotated[Principal, Depends(require_roles("planner", "admin"))]


async def current_device(
    ctx: CtxDep, x_device_key: Annotated[str | None, Header(alias="X-Device-Key", max_length=200)] = None
) -> Device:
    """A lot controller identified by its X-Device-Key (stored hashed). A revoked key is refused from the next
    request on, on every worker (core.keyring: remembered keys are forgotten when a revocation is announced)."""
    if not x_device_key:
        raise Unauthorized("missing X-Device-Key")
    device = await keyring(ctx).device(hash_api_key(x_device_key))
    if device is None:
        raise Unauthorized("unknown or revoked device key")
    return device


CurrentDevice = Annotated[Device, Depends(current_device)]


@dataclass(frozen=True)
class Partner:
    partner_id: uuid.UUID
    quota: str


async def current_partner(
    ctx: CtxDep, x_api_key: Annotated[str | None, Header(alias="X-API-Key", max_length=200)] = None
) -> Partner:
    """A data partner identified by X-API-Key (stored hashed; revoked keys refused)."""
    if not x_api_key:
        raise Unauthorized("missing X-API-Key")
    # on the raw asyncpg pool (ADR 0007): every feed poll looks its key up, and SQLAlchemy's checkout, BEGIN and
    # ROLLBACK around one SELECT cost about as much CPU as the rest of a 304
    row = await (await ctx.pg()).fetchrow(
        "SELECT id, quota FROM partners WHERE api_key_hash = $1 AND revoked_at IS NULL", hash_api_key(x_api_key))
    if row is None:
        raise Unauthorized("unknown or revoked API key")
    return Partner(partner_id=row["id"], quota=row["quota"])


CurrentPartner = Annotated[Partner, Depends(current_partner)]
