"""`parkgrid network import FILE.osm.pbf`: the pedestrian network (pgRouting tables) and named destinations."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from cli.common import emit, run_with_context
from core.context import AppContext
from core.errors import ValidationFailed
from geo.walknet import load_network, read_extract

app = typer.Typer(no_args_is_help=True)


@app.command("import")
def import_network(
    file: Path = typer.Argument(..., help="an OpenStreetMap extract: .osm.pbf (Geofabrik), .osm or .osm.bz2"),
    name: str = typer.Option("", help="the area's name (default: the file's name)"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Load the walkable ways of an extract, replacing (in one transaction) every area its bbox meets; lots join
    the network at their parking entrances or nearest node; named places become destinations."""
    with Progress(SpinnerColumn(), TextColumn("reading {task.fields[file]}: {task.completed:,} objects"),
                  TimeElapsedColumn(), transient=json_out, disable=json_out) as bar:
        task = bar.add_task("read", total=None, file=file.name)
        try:
            extract = read_extract(file, progress=lambda n: bar.advance(task, n))
        except ValidationFailed as exc:
            typer.echo(f"error: {exc.detail}", err=True)
            raise typer.Exit(2) from None

    async def job(ctx: AppContext) -> dict[str, object]:
        async with (await ctx.pg()).acquire() as pg:
            report = await load_network(pg, extract=extract, name=name or file.name, now=ctx.clock.now())
        return report.as_dict()

    result = run_with_context(job)
    if json_out:
        emit(result, as_json=True)
        return
    typer.echo(f"area {result['name']}: {result['nodes']:,} nodes, {result['edges']:,} edges, "
               f"{result['entrances']} parking entrances, {result['destinations']:,} destinations, "
               f"{result['lots_joined']} lots joined; replaced {result['replaced_areas']} earlier area(s)")
