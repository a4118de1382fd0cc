"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text

from api.deps import CtxDep
from api.problems import problem
from booking.reconcile import reconcile_stats
from booking.runtime import REDIS_DOWN, slot_store
from core.broker import check_broker
from core.context import AppContext, database_revision

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: 200 while the process runs")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _check_database(ctx: AppContext) -> str | None:
    async with ctx.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return None


async def _check_migrations(ctx: AppContext) -> str | None:
    head = ctx.extras.get("migration_head")
    current = await database_revision(ctx.engine)
    if current != head:
        return f"database at {current or 'no revision'}, code expects {head}"
    return None


async def _check_redis(ctx: AppContext) -> str | None:
    await ctx.redis.ping()
    return None


async def _check_broker(ctx: AppContext) -> str | None:
    await check_broker(ctx.settings.broker_url, timeout=1.0)
    return None


class Ready(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str]


@router.get("/readyz", summary="Readiness: 200 only when PostgreSQL, Redis, the broker and migrations are good",
            responses={200: {"model": Ready}, 503: {"description": "not ready: `checks` names what failed"}})
async def readyz(request: Request, ctx: CtxDep) -> Response:
    checks = {"database": _check_database, "redis": _check_redis, "broker": _check_broker,
              "migrations": _check_migrations}
    results = await asyncio.gather(*(asyncio.wait_for(fn(ctx), 3.0) for fn in checks.values()),
                                   return_exceptions=True)
    report: dict[str, str] = {}
    for name, result in zip(checks, results, strict=True):
        if isinstance(result, BaseException):
            report[name] = f"down: {type(result).__name__}: {result}"[:300]
        elif result:
            report[name] = f"down: {result}"
        else:
            report[name] = "ok"
    failed = [name for name, state in report.items() if state != "ok"]
    if failed:
        if "migrations" in failed and report["migrations"].startswith("down: ") and "database" in failed:
            report["migrations"] = "unknown: database down"
        return problem(request, status=503, slug="not-ready", title="Not ready",
                       detail="not ready: " + ", ".join(failed), checks=report)
    return JSONResponse({"status": "ready", "checks": report})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
async def metrics(request: Request, ctx: CtxDep) -> Response:
    body = generate_latest(request.app.state.registry).decode()
    try:  # process-shared counters kept in Redis by the workers
        stats = await asyncio.wait_for(reconcile_stats(slot_store(ctx)), 0.5)
    except (TimeoutError, *REDIS_DOWN):
        stats = {}
    for name, value in sorted(stats.items()):
        metric = f"parkgrid_reconcile_{name}_total"
        body += f"# HELP {metric} Slot reconciler total of {name}\n# TYPE {metric} counter\n{metric} {value}\n"
    return Response(body, media_type=CONTENT_TYPE_LATEST)
