"""Planner exports (docs/api.md, Exports): start a job on the workers, follow it, download its file by a signed link."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from analytics.exports import jobs
from analytics.exports.spec import ExportRequest
from analytics.exports.tasks import enqueue_export
from api.deps import CtxDep, NowDep, Principal, require_roles
from api.ratelimit import WRITE_LIMIT
from core.errors import ServiceUnavailable

router = APIRouter(prefix="/api/v1/exports", tags=["exports"])

ExportUser = Annotated[Principal, Depends(require_roles("planner", "operator", "admin"))]
ExportId = Annotated[uuid.UUID, Path()]


class ExportAccepted(BaseModel):
    id: uuid.UUID
    status: Literal["queued", "running", "done", "failed"]


class ExportOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: uuid.UUID
    status: Literal["queued", "running", "done", "failed"]
    progress: float
    rows: int
    suppressed: int
    kind: str | None = None
    format: str | None = None
    group_by: str | None = None
    h3_res: int | None = None
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    min_sessions: int | None = None
    media_type: str | None = None
    bytes: int | None = None
    created_at: datetime
    finished_at: datetime | None = None
    expires_at: datetime | None = None
    download_url: str | None = None
    download_expires_at: datetime | None = None
    error: str | None = None


def _requester(user: Principal) -> jobs.Requester:
    return jobs.Requester(user_id=user.user_id, role=user.role, organisation_id=user.organisation_id)


class ExportList(BaseModel):
    items: list[ExportOut]
    next_cursor: str | None = None


@router.get("", response_model=ExportList, summary="The caller's own exports, newest first")
async def my_exports(user: ExportUser, ctx: CtxDep, now: NowDep,
                     limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
    async with ctx.engine.connect() as conn:
        rows = await jobs.list_exports(conn=conn, requester=_requester(user), limit=limit)
    return {"items": [jobs.export_view(r, settings=ctx.settings, now=now) for r in rows], "next_cursor": None}


@router.post("", status_code=202, response_model=ExportAccepted, dependencies=[WRITE_LIMIT],
             summary="Start an occupancy or sessions export (planners: any lots; operators: their own)")
async def start_export(body: ExportRequest, user: ExportUser, ctx: CtxDep, now: NowDep,
                       response: Response) -> dict[str, Any]:
    async with ctx.engine.begin() as conn:
        export_id = await jobs.create_export(conn=conn, requester=_requester(user), req=body, now=now,
                                             planner_min_sessions=ctx.settings.export_min_sessions_floor)
    try:
        await enqueue_export(ctx, export_id)
    except ServiceUnavailable:
        await jobs.fail_export(engine=ctx.engine, export_id=export_id, error="not queued: broker unavailable",
                               now=ctx.clock.now())
        raise
    response.headers["Location"] = f"/api/v1/exports/{export_id}"
    return {"id": export_id, "status": "queued"}


@router.get("/{id}", response_model=ExportOut,
            summary="An export's status, counts and (when done) a signed, expiring download link")
async def export_status(id: ExportId, user: ExportUser, ctx: CtxDep, now: NowDep) -> dict[str, Any]:
    async with ctx.engine.connect() as conn:
        row = await jobs.get_export(conn=conn, export_id=id, requester=_requester(user))
    return jobs.export_view(row, settings=ctx.settings, now=now)


@router.get("/{id}/download", response_class=FileResponse,
            responses={200: {"content": {"text/csv": {}, "application/geo+json": {}, "application/vnd.apache.parquet": {}}}},
            summary="The export's file, by the signed link from GET /api/v1/exports/{id} (no bearer token needed)")
async def download_export(id: ExportId, ctx: CtxDep, now: NowDep, expires: Annotated[int, Query(ge=0)],
                          signature: Annotated[str, Query(min_length=1, max_length=128)]) -> FileResponse:
    async with ctx.engine.connect() as conn:
        path, media_type, filename = await jobs.open_download(conn=conn, settings=ctx.settings, export_id=id,
                                                              expires=expires, signature=signature, now=now)
    return FileResponse(path, media_type=media_type, filename=filename,
                        headers={"Cache-Control": "private, no-store"})
