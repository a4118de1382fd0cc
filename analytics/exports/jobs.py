"""Export jobs: create one (scoped to who asks), write its file (the worker and the CLI share `write_export`),
show its status, sign its download link, and purge files past retention."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode

import orjson
import pyarrow as pa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from analytics.exports import queries as q
from analytics.exports.metrics import metric_batch
from analytics.exports.places import LotRow, Place, build_places, lot_arrays
from analytics.exports.source import PlaceHours, PlaceHourSource, place_hours_from_sessions
from analytics.exports.spec import EXTENSIONS, MEDIA_TYPES, ExportRequest, check_request
from analytics.exports.writers import OCCUPANCY, SESSIONS, open_writer
from core.clock import Clock
from core.errors import DomainError, Forbidden, NotFound, ValidationFailed
from core.logging import get_logger
from core.settings import Settings

log = get_logger("parkgrid.exports")
EXPORT_ROLES = ("planner", "operator", "admin")
SESSION_FETCH = 20_000

ProgressFn = Callable[[float, int, int], Awaitable[None]]


class ExportGone(DomainError):
    status, slug, title = 410, "export-expired", "The export's file was removed after its retention period"


@dataclass(frozen=True)
class Requester:
    user_id: uuid.UUID
    role: str
    organisation_id: uuid.UUID | None


@dataclass(frozen=True)
class ExportResult:
    rows: int
    suppressed: int
    places: int


def scope_of(requester: Requester) -> uuid.UUID | None:
    """The organisation whose lots an export may cover (None: any lot). Drivers may not export at all."""
    if requester.role not in EXPORT_ROLES:
        raise Forbidden("exports are for planners and operators")
    if requester.role == "operator":
        if requester.organisation_id is None:
            raise Forbidden("an operator without an organisation has no lots to export")
        return requester.organisation_id
    return None


async def _check_lots(conn: AsyncConnection, *, lot_ids: list[uuid.UUID], organisation_id: uuid.UUID | None) -> None:
    found = {r.id: r.organisation_id for r in await conn.execute(q.LOT_ORGANISATIONS, {"lot_ids": lot_ids})}
    for lot_id in lot_ids:
        if lot_id not in found or (organisation_id is not None and found[lot_id] != organisation_id):
            raise NotFound(f"lot {lot_id} not found")


async def create_export(*, conn: AsyncConnection, requester: Requester, req: ExportRequest, now: datetime,
                        planner_min_sessions: int = 1) -> uuid.UUID:
    """Record a queued export for `requester` (planners: any lot, with a privacy threshold of at least
    `planner_min_sessions`; operators: their organisation's lots, which they see in full anyway)."""
    organisation_id = scope_of(requester)
    check_request(req)
    if requester.role == "planner" and req.min_sessions < planner_min_sessions:
        raise ValidationFailed(f"min_sessions may not be below {planner_min_sessions}", loc=("body", "min_sessions"))
    if req.lot_ids:
        await _check_lots(conn, lot_ids=list(req.lot_ids), organisation_id=organisation_id)
    params = req.as_params() | {"scope": {"organisation_id": str(organisation_id) if organisation_id else None}}
    return (await conn.execute(q.INSERT_EXPORT, {"user_id": requester.user_id, "params": orjson.dumps(params).decode(),
                                                 "now": now})).scalar_one()  # type: ignore[no-any-return]


def request_of(params: dict[str, Any]) -> tuple[ExportRequest, uuid.UUID | None]:
    """The stored request and its organisation scope."""
    body = {k: v for k, v in params.items() if k != "scope"}
    org = (params.get("scope") or {}).get("organisation_id")
    return ExportRequest.model_validate(body), uuid.UUID(org) if org else None


async def load_places(conn: AsyncConnection, *, req: ExportRequest, organisation_id: uuid.UUID | None) -> list[Place]:
    """The lots in scope, grouped as the request asks."""
    w, s, e, n = req.bbox or (None, None, None, None)
    rows = await conn.execute(q.LOTS_IN_SCOPE, {"org": organisation_id, "lot_ids": list(req.lot_ids or []) or None,
                                                "w": w, "s": s, "e": e, "n": n})
    lots = [LotRow(id=r.id, timezone=r.timezone, capacity=r.capacity, lat=r.lat, lng=r.lng) for r in rows]
    return build_places(lots, resolution=req.resolution)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


SESSIONS_BATCH = pa.schema([
    pa.field("place", pa.int32()), pa.field("session_id", pa.string()), pa.field("vehicle_type", pa.string()),
    pa.field("event_time_start", pa.string()), pa.field("event_time_end", pa.string()),
    pa.field("duration_minutes", pa.int32()),
])
BATCH_ROWS = 65_536


def _session_batch(part: Sequence[Any]) -> pa.RecordBatch:
    """Session rows as written: a fresh random id each, times already rounded by the query, no other id."""
    return pa.RecordBatch.from_arrays([
        pa.array([r.rank for r in part], type=pa.int32()),
        pa.array([str(uuid.uuid4()) for _ in part], type=pa.string()),
        pa.array([r.vehicle_type for r in part], type=pa.string()),
        pa.array([_iso(r.start_r) for r in part], type=pa.string()),
        pa.array([_iso(r.end_r) for r in part], type=pa.string()),
        pa.array([int((r.end_r - r.start_r).total_seconds() // 60) for r in part], type=pa.int32()),
    ], schema=SESSIONS_BATCH)


async def write_export(*, engine: AsyncEngine, req: ExportRequest, organisation_id: uuid.UUID | None,
                       out: BinaryIO, now: datetime, progress: ProgressFn | None = None,
                       source: PlaceHourSource = place_hours_from_sessions) -> ExportResult:
    """Write the export's file to `out`, streaming (a batch of about BATCH_ROWS rows at a time); `progress(share,
    rows, suppressed)` is awaited whenever another percent is done. The worker's and `parkgrid exports run`'s path."""
    rows = suppressed = 0
    reported = 0.0

    async def step(done: float) -> None:
        nonlocal reported
        if progress is not None and done - reported >= 0.01:
            reported = done
            await progress(done, rows, suppressed)

    async with engine.connect() as conn:
        # a reporting transaction (settings local to it: gone when the connection returns to the pool)
        await conn.execute(q.EXPORT_SETTINGS)
        places = await load_places(conn, req=req, organisation_id=organisation_id)
        total = max(1, len(places))
        if req.kind == "occupancy":
            writer = open_writer(req.format, out, OCCUPANCY, places)
            blocks: list[PlaceHours] = []
            pending = 0

            async def flush() -> None:
                nonlocal rows, suppressed, pending
                batch, hidden = metric_batch(blocks, min_sessions=req.min_sessions)
                writer.write(batch)
                rows += batch.num_rows
                suppressed += hidden
                done = (blocks[-1].place + 1) / total
                blocks.clear()
                pending = 0
                await step(done)

            async for block in source(conn, places=places, start=req.start, end=req.end, now=now):
                blocks.append(block)
                pending += len(block.grid) * 4
                if pending >= BATCH_ROWS:
                    await flush()
            if blocks:
                await flush()
        else:
            arrays = lot_arrays(places)
            base = {"lot_ids": arrays["lot_ids"], "ranks": arrays["ranks"], "from": req.start, "to": req.end, "now": now}
            counts = {r.rank: r.n for r in await conn.execute(q.SESSIONS_PER_PLACE, base)}
            kept = sorted(rank for rank, n in counts.items() if n >= req.min_sessions)
            suppressed = sum(n for n in counts.values() if n < req.min_sessions)
            writer = open_writer(req.format, out, SESSIONS, places, present=[places[r] for r in kept])
            result = await conn.stream(q.SESSION_ROWS, {**base, "ranks_kept": kept})
            async for part in result.partitions(SESSION_FETCH):
                writer.write(_session_batch(part))
                rows += len(part)
                await step((part[-1].rank + 1) / total)
            await result.close()
        writer.close()
    return ExportResult(rows=rows, suppressed=suppressed, places=len(places))


def export_path(settings: Settings, export_id: uuid.UUID, fmt: str) -> Path:
    return Path(settings.export_dir).resolve() / f"{export_id}.{EXTENSIONS[fmt]}"


async def run_export_job(*, engine: AsyncEngine, settings: Settings, clock: Clock, export_id: uuid.UUID) -> str:
    """Claim a queued export (or one whose worker died), write its file, record the outcome: 'done', 'failed',
    or 'skipped' when another worker has it or it already finished (a duplicated task does nothing)."""
    now = clock.now()
    async with engine.begin() as conn:
        claimed = (await conn.execute(q.CLAIM_EXPORT, {"id": export_id, "now": now, "stale_before":
                                                       now - timedelta(seconds=settings.export_stale_seconds)})).first()
    if claimed is None:
        return "skipped"
    part: Path | None = None

    async def report(share: float, rows: int, suppressed: int) -> None:
        async with engine.begin() as conn:
            await conn.execute(q.PROGRESS_EXPORT, {"id": export_id, "progress": min(share, 0.99), "rows": rows,
                                                   "suppressed": suppressed, "now": clock.now()})

    try:
        req, organisation_id = request_of(dict(claimed.params))
        final = export_path(settings, export_id, req.format)
        part = final.with_name(final.name + ".part")
        final.parent.mkdir(parents=True, exist_ok=True)
        with part.open("wb") as out:
            result = await write_export(engine=engine, req=req, organisation_id=organisation_id, out=out, now=now,
                                        progress=report)
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, final)
        done = clock.now()
        async with engine.begin() as conn:
            await conn.execute(q.FINISH_EXPORT, {
                "id": export_id, "rows": result.rows, "suppressed": result.suppressed, "path": str(final),
                "bytes": final.stat().st_size, "now": done,
                "expires_at": done + timedelta(hours=settings.export_retention_hours)})
        log.info("export_done", export_id=str(export_id), rows=result.rows, suppressed=result.suppressed)
        return "done"
    except Exception as exc:  # the job's outcome is recorded, not lost with the worker's log
        if part is not None:
            with contextlib.suppress(OSError):
                part.unlink()
        log.error("export_failed", export_id=str(export_id), error=repr(exc), exc_info=exc)
        async with engine.begin() as conn:
            await conn.execute(q.FAIL_EXPORT, {"id": export_id, "error": type(exc).__name__, "now": clock.now()})
        return "failed"


async def get_export(*, conn: AsyncConnection, export_id: uuid.UUID, requester: Requester) -> Any:
    """The export row, if `requester` made it (admins see every export); someone else's answers 404."""
    scope_of(requester)
    row = (await conn.execute(q.GET_EXPORT, {"id": export_id})).first()
    if row is None or (row.user_id != requester.user_id and requester.role != "admin"):
        raise NotFound(f"export {export_id} not found")
    return row


async def list_exports(*, conn: AsyncConnection, requester: Requester, limit: int) -> list[Any]:
    """The requester's own exports, newest first."""
    scope_of(requester)
    return list(await conn.execute(q.LIST_EXPORTS, {"user_id": requester.user_id, "limit": limit}))


def _signature(secret: bytes, export_id: uuid.UUID, expires: int) -> str:
    return hmac.new(secret, f"export-download:{export_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def download_link(*, settings: Settings, export_id: uuid.UUID, now: datetime,
                  file_expires_at: datetime) -> tuple[str, datetime]:
    """A signed link to the file, valid for PARKGRID_EXPORT_LINK_TTL_SECONDS (never past the file's expiry)."""
    until = min(now + timedelta(seconds=settings.export_link_ttl_seconds), file_expires_at)
    expires = int(until.timestamp())
    query = urlencode({"expires": expires, "signature": _signature(settings.secret_bytes, export_id, expires)})
    return f"{settings.public_base_url.rstrip('/')}/api/v1/exports/{export_id}/download?{query}", until


def export_view(row: Any, *, settings: Settings, now: datetime) -> dict[str, Any]:
    """The status document of GET /api/v1/exports/{id} (docs/api.md, Exports)."""
    params = dict(row.params or {})
    body: dict[str, Any] = {
        "id": str(row.id), "status": row.status, "progress": round(float(row.progress), 4), "rows": int(row.rows),
        "suppressed": int(row.suppressed), "kind": params.get("kind"), "format": params.get("format"),
        "group_by": params.get("group_by"), "h3_res": params.get("h3_res"), "from": params.get("from"),
        "to": params.get("to"), "min_sessions": params.get("min_sessions"), "created_at": row.created_at,
        "finished_at": row.finished_at, "expires_at": row.expires_at, "download_url": None,
        "download_expires_at": None, "bytes": row.bytes,
        "media_type": MEDIA_TYPES.get(str(params.get("format"))),
    }
    if row.status == "failed":
        body["error"] = row.error
    if row.status == "done" and row.path and row.expires_at and row.expires_at > now:
        body["download_url"], body["download_expires_at"] = download_link(
            settings=settings, export_id=row.id, now=now, file_expires_at=row.expires_at)
    return body


async def open_download(*, conn: AsyncConnection, settings: Settings, export_id: uuid.UUID, expires: int,
                        signature: str, now: datetime) -> tuple[Path, str, str]:
    """(file, media type, file name) for a valid, unexpired signed link; 403 otherwise, 410 once purged."""
    good = _signature(settings.secret_bytes, export_id, expires)
    if not hmac.compare_digest(good.encode(), signature.encode()):  # bytes: a non-ASCII str would raise
        raise Forbidden("invalid download signature")
    if expires < now.timestamp():
        raise Forbidden("the download link has expired; GET the export again for a fresh one")
    row = (await conn.execute(q.GET_EXPORT, {"id": export_id})).first()
    if row is None or row.status != "done":
        raise NotFound(f"export {export_id} not found")
    if row.path is None or (row.expires_at is not None and row.expires_at <= now) or not _present(row.path):
        raise ExportGone(f"export {export_id} expired at {row.expires_at.isoformat() if row.expires_at else '?'}")
    fmt = str(row.params.get("format"))
    return Path(row.path), MEDIA_TYPES[fmt], f"parkgrid-{row.params.get('kind')}-{export_id}.{EXTENSIONS[fmt]}"


def _present(path: str) -> bool:
    return os.path.isfile(path)


def _remove(path: str) -> None:
    for name in (path, path + ".part"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


async def purge_expired_exports(*, engine: AsyncEngine, now: datetime, batch: int = 500) -> int:
    """Delete the files of exports past their expiry and forget their paths; returns how many. Idempotent."""
    purged = 0
    while True:
        async with engine.connect() as conn:
            expired = (await conn.execute(q.EXPIRED_EXPORTS, {"now": now, "batch": batch})).all()
        for row in expired:
            _remove(row.path)
            async with engine.begin() as conn:
                await conn.execute(q.FORGET_FILE, {"id": row.id, "path": row.path, "now": now})
            purged += 1
        if len(expired) < batch:
            break
    if purged:
        log.info("exports_purged", files=purged)
    return purged


async def fail_export(*, engine: AsyncEngine, export_id: uuid.UUID, error: str, now: datetime) -> None:
    """Record an export as failed (e.g. its task could not be queued)."""
    async with engine.begin() as conn:
        await conn.execute(q.FAIL_EXPORT, {"id": export_id, "error": error, "now": now})
