"""Rate-limit dependencies for routers: per client IP, per signed-in user on writes, per partner key.

Use them like this:

    @router.post("/things", dependencies=[WRITE_LIMIT])           # charge the caller's write budget
    async def create(user: CurrentUser, ...): ...

    async def create(user: WriteUser, ...): ...                     # same, and get the Principal

    async def feed(partner: LimitedPartner, ...): ...               # X-API-Key + the partner's own quota
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request

from api.deps import CtxDep, CurrentPartner, CurrentUser, Partner, Principal
from core.context import AppContext
from core.ratelimit import RateLimiter


def get_limiter(ctx: AppContext) -> RateLimiter:
    """The process's limiter, built on first use on the context's Redis pool."""
    limiter = ctx.extras.get("rate_limiter")
    if not isinstance(limiter, RateLimiter):
        limiter = RateLimiter(settings=ctx.settings, redis=ctx.redis)
        ctx.extras["rate_limiter"] = limiter
    return limiter


def client_ip(request: Request) -> str:
    """The peer address (behind a proxy, run uvicorn with --proxy-headers so this is the real client)."""
    return request.client.host if request.client else "unknown"


def limit_per_ip(scope: str, setting: str) -> Callable[..., Coroutine[Any, Any, None]]:
    """A dependency charging one request to the client IP under `scope`, at the rate in Settings.<setting>."""

    async def dep(request: Request, ctx: CtxDep) -> None:
        await get_limiter(ctx).enforce(scope=scope, identity=client_ip(request), rate=getattr(ctx.settings, setting))

    return dep


LOGIN_LIMIT = Depends(limit_per_ip("login", "rate_limit_login"))
REGISTER_LIMIT = Depends(limit_per_ip("register", "rate_limit_register"))


async def write_rate_limit(ctx: CtxDep, user: CurrentUser) -> Principal:
    """Charge one write to the signed-in caller (PARKGRID_RATE_LIMIT_WRITES); returns the caller."""
    await get_limiter(ctx).enforce(scope="writes", identity=str(user.user_id), rate=ctx.settings.rate_limit_writes)
    return user


WriteUser = Annotated[Principal, Depends(write_rate_limit)]
WRITE_LIMIT = Depends(write_rate_limit)


async def partner_rate_limit(ctx: CtxDep, partner: CurrentPartner) -> Partner:
    """Charge one request to the partner's own quota (partners.quota, e.g. '600/minute')."""
    await get_limiter(ctx).enforce(scope="partner", identity=str(partner.partner_id), rate=partner.quota)
    return partner


LimitedPartner = Annotated[Partner, Depends(partner_rate_limit)]
