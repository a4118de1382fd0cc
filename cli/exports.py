"""`parkgrid exports run`: the planners' export written straight to a file, on the worker's code path."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from analytics.exports.jobs import write_export
from analytics.exports.spec import ExportRequest, check_request
from cli.common import emit, run_with_context
from core.context import AppContext
from core.errors import ValidationFailed

app = typer.Typer(no_args_is_help=True, help="Occupancy and session exports for planners.")

# request field -> the option that sets it, for error messages
_OPTIONS = {"kind": "--kind", "from": "--from", "to": "--to", "group_by": "--group-by", "format": "--format",
            "h3_res": "--h3-res", "min_sessions": "--min-sessions", "lot_ids": "--lot", "bbox": "--bbox"}


def _refuse(field: str, msg: str) -> None:
    print(f"error: {_OPTIONS.get(field, field)}: {msg}", file=sys.stderr)
    raise SystemExit(2)


def build_request(values: dict[str, Any]) -> ExportRequest:
    """The same model and checks as POST /api/v1/exports; exits 2 naming the option on bad input."""
    try:
        return check_request(ExportRequest.model_validate(values), where="option")
    except ValidationError as exc:
        err = exc.errors()[0]
        _refuse(str(err["loc"][0]) if err.get("loc") else "?", err["msg"])
    except ValidationFailed as exc:
        _refuse(str(exc.loc[-1]), exc.detail)
    raise AssertionError("unreachable")


@app.command("run")
def run(kind: str = typer.Option(..., "--kind", help="occupancy | sessions"),
        from_: str = typer.Option(..., "--from", help="start, RFC 3339 with offset (inclusive)"),
        to: str = typer.Option(..., "--to", help="end, RFC 3339 with offset (exclusive)"),
        group_by: str = typer.Option(..., "--group-by", help="lot | h3"),
        fmt: str = typer.Option(..., "--format", help="csv | geojson | parquet"),
        out: Path = typer.Option(..., "--out", help="file to write (replaced only when the export succeeds)"),
        h3_res: int | None = typer.Option(None, "--h3-res", help="H3 resolution 6..10 with --group-by h3"),
        min_sessions: int = typer.Option(10, "--min-sessions", help="suppress place-hours with fewer sessions"),
        lot: list[uuid.UUID] = typer.Option(None, "--lot", help="only this lot (repeatable)"),
        org: uuid.UUID | None = typer.Option(None, "--org", help="only this organisation's lots"),
        bbox: str | None = typer.Option(None, "--bbox", help="min_lng,min_lat,max_lng,max_lat"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
        json: bool = typer.Option(False, "--json")) -> None:
    """Write an export to --out with a progress bar; prints rows and suppressed counts."""
    values: dict[str, Any] = {"kind": kind, "from": from_, "to": to, "group_by": group_by, "format": fmt,
                              "h3_res": h3_res, "min_sessions": min_sessions, "lot_ids": list(lot) if lot else None}
    if bbox:
        try:
            values["bbox"] = [float(v) for v in bbox.split(",")]
        except ValueError:
            _refuse("bbox", "four comma-separated numbers")
    req = build_request(values)
    part = out.with_name(out.name + ".part")

    async def job(ctx: AppContext) -> dict[str, object]:
        with Progress(TextColumn("exporting"), BarColumn(), TaskProgressColumn(), TextColumn("{task.fields[rows]} rows"),
                      TimeElapsedColumn(), disable=quiet or json, console=Console(stderr=True)) as bar:
            task = bar.add_task("export", total=1.0, rows=0)

            async def progress(share: float, rows: int, suppressed: int) -> None:
                bar.update(task, completed=share, rows=rows)

            with part.open("wb") as f:
                result = await write_export(engine=ctx.engine, req=req, organisation_id=org, out=f,
                                            now=ctx.clock.now(), progress=progress)
            bar.update(task, completed=1.0, rows=result.rows)
        return {"out": str(out), "kind": req.kind, "format": req.format, "places": result.places,
                "rows": result.rows, "suppressed": result.suppressed}

    try:
        summary = run_with_context(job)
        os.replace(part, out)
        emit({**summary, "bytes": out.stat().st_size}, as_json=json)
    finally:
        part.unlink(missing_ok=True)
