"""`parkgrid lots import FILE`: OpenStreetMap parking lots from a GeoJSON FeatureCollection."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import typer

from cli.common import emit, run_with_context
from core.accounts import ensure_organisation
from core.context import AppContext
from geo.osm_import import import_osm
from geo.schemas import check_timezone

app = typer.Typer(no_args_is_help=True)


@app.command("import")
def import_file(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="GeoJSON FeatureCollection"),
    organisation: str = typer.Option(..., "--org", help="owning organisation: its id, or a name (created if new)"),
    timezone: str = typer.Option("UTC", help="IANA time zone of the imported lots"),
    dry_run: bool = typer.Option(False, "--dry-run", help="report only; write nothing"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Import amenity=parking features as lots; prints what was created and what was skipped and why."""
    try:
        check_timezone(timezone)
        collection = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    async def job(ctx: AppContext) -> dict[str, object]:
        async with ctx.engine.begin() as conn:
            try:
                org = uuid.UUID(organisation)
            except ValueError:
                org = await ensure_organisation(conn=conn, name=organisation)
            report = await import_osm(conn, collection=collection, organisation_id=org, timezone=timezone,
                                      dry_run=dry_run)
        return report.as_dict()

    try:
        result = run_with_context(job)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if json_out:
        emit(result, as_json=True)
        return
    typer.echo(f"created {result['created']} lot(s), skipped {result['skipped']} feature(s)")
    for skip in result["skipped_features"]:  # type: ignore[attr-defined]
        typer.echo(f"  skipped #{skip['index']} {skip['ref'] or ''}: {skip['reason']}")
    for warning in result["warnings"]:  # type: ignore[attr-defined]
        typer.echo(f"  warning #{warning['index']} {warning['ref']}: {warning['warning']}")
