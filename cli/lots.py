"""`parkgrid lots import FILE`: OpenStreetMap car parks from a Geofabrik .osm.pbf extract, Overpass JSON or GeoJSON."""

from __future__ import annotations

import uuid
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from cli.common import emit, run_with_context
from core.accounts import ensure_organisation
from core.context import AppContext
from geo.osm_import import import_osm
from geo.osm_read import OsmFileError, read_osm
from geo.schemas import check_timezone

app = typer.Typer(no_args_is_help=True)
LARGE = 500  # car parks: from this many on, the write phase shows a progress bar


@app.command("import")
def import_file(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                help=".osm.pbf extract, Overpass JSON (out geom/center) or GeoJSON FeatureCollection"),
    organisation: str = typer.Option(..., "--org", help="owning organisation: its id, or a name (created if new)"),
    timezone: str = typer.Option("UTC", help="IANA time zone of the imported lots"),
    dry_run: bool = typer.Option(False, "--dry-run", help="report only; write nothing"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Import amenity=parking car parks as lots (re-importing updates them by OSM id); prints what was created,
    updated, left unchanged and skipped, and why. A damaged or non-OSM file is an error and writes nothing."""
    console = Console(stderr=True)
    try:
        check_timezone(timezone)
        with Progress(SpinnerColumn(), TextColumn("reading {task.fields[name]}"), TextColumn("{task.completed} car parks"),
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            task = bar.add_task("read", total=None, name=file.name)
            items = read_osm(file, progress=lambda _phase, done, _total: bar.update(task, completed=done))
    except (OsmFileError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    async def job(ctx: AppContext) -> dict[str, object]:
        async with ctx.engine.begin() as conn:
            try:
                org = uuid.UUID(organisation)
            except ValueError:
                org = await ensure_organisation(conn=conn, name=organisation)
            with Progress(TextColumn("importing car parks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=console, transient=True, disable=len(items) < LARGE) as bar:
                task = bar.add_task("write", total=len(items))
                report = await import_osm(conn, items=items, organisation_id=org, timezone=timezone, dry_run=dry_run,
                                          now=ctx.clock.now(),
                                          progress=lambda _phase, done, total: bar.update(task, completed=done,
                                                                                          total=total))
        return report.as_dict()

    try:
        result = run_with_context(job)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if json_out:
        emit(result, as_json=True)
        return
    typer.echo(f"created {result['created']} lot(s) ({result['listed_without_capacity']} listed without capacity), "
               f"updated {result['updated']}, unchanged {result['unchanged']}, skipped {result['skipped']}"
               + (" (dry run: nothing written)" if dry_run else ""))
    for change in result["changes"]:  # type: ignore[attr-defined]
        fields = ", ".join(f"{k}: {v['from']!r} -> {v['to']!r}" for k, v in change["changes"].items())
        typer.echo(f"  updated {change['ref']}: {fields}")
    for skip in result["skipped_features"]:  # type: ignore[attr-defined]
        typer.echo(f"  skipped #{skip['index']} {skip['ref'] or ''}: {skip['reason']}")
    for warning in result["warnings"]:  # type: ignore[attr-defined]
        typer.echo(f"  warning #{warning['index']} {warning['ref']}: {warning['warning']}")
