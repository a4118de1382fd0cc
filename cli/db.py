"""`parkgrid db ...`: migrations."""

from __future__ import annotations

import typer

from cli.common import settings_or_exit
from core import migrate

app = typer.Typer(no_args_is_help=True)


@app.command()
def upgrade(revision: str = typer.Argument("head")) -> None:
    """Migrate the database up to REVISION (default: head)."""
    migrate.upgrade(settings_or_exit().database_url, revision)
    typer.echo(f"database upgraded to {revision}")


@app.command()
def downgrade(revision: str = typer.Argument("base")) -> None:
    """Migrate the database down to REVISION (default: base, i.e. empty)."""
    migrate.downgrade(settings_or_exit().database_url, revision)
    typer.echo(f"database downgraded to {revision}")
