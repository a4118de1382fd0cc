"""Sign-up, sign-in and token refresh for drivers, operators, planners and admins."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Form
from pydantic import BaseModel, EmailStr, Field

from api.deps import ConnDep, CtxDep, NowDep
from api.ratelimit import LOGIN_LIMIT, REGISTER_LIMIT
from core.accounts import TokenPair, authenticate, create_user, issue_tokens, rotate_refresh_token
from core.errors import Unauthorized

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class RegisterIn(BaseModel):
    email: EmailStr = Field(max_length=320)
    password: str = Field(min_length=8, max_length=128)


class RegisterOut(BaseModel):
    id: uuid.UUID
    email: str


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the access token expires")

    @classmethod
    def of(cls, pair: TokenPair) -> TokenOut:
        return cls(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=2048)


@router.post("/register", status_code=201, response_model=RegisterOut, dependencies=[REGISTER_LIMIT],
             summary="Create a driver account", responses={409: {"description": "email already registered"}})
async def register(body: RegisterIn, conn: ConnDep) -> RegisterOut:
    user = await create_user(conn=conn, email=str(body.email), password=body.password, role="driver")
    return RegisterOut(id=user.id, email=user.email)


@router.post("/token", response_model=TokenOut, dependencies=[LOGIN_LIMIT],
             summary="Sign in (OAuth2 password form: username = email, password)",
             responses={401: {"description": "wrong email or password"}, 429: {"description": "too many attempts"}})
async def token(
    conn: ConnDep, ctx: CtxDep, now: NowDep,
    username: Annotated[str, Form(min_length=1, max_length=320, description="the account's email")],
    password: Annotated[str, Form(min_length=1, max_length=128)],
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
) -> TokenOut:
    user = await authenticate(conn=conn, email=username, password=password)
    return TokenOut.of(await issue_tokens(conn=conn, settings=ctx.settings, user=user, now=now))


@router.post("/refresh", response_model=TokenOut, summary="Swap a refresh token for a new pair (single use)",
             responses={401: {"description": "refresh token invalid, expired, revoked or already used"}})
async def refresh(body: RefreshIn, ctx: CtxDep, now: NowDep) -> TokenOut:
    # Own transaction, committed before answering: a reuse must revoke the family even though we answer 401.
    async with ctx.engine.begin() as conn:
        outcome = await rotate_refresh_token(conn=conn, settings=ctx.settings, token=body.refresh_token, now=now)
    if isinstance(outcome, TokenPair):
        return TokenOut.of(outcome)
    raise Unauthorized(outcome.reason)
