"""The `parkgrid` command line: the same PARKGRID_* settings as the server."""

from __future__ import annotations

import typer

from cli import accounts, analytics, booking, controllers, db, demo, lots, processes

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="ParkGrid: parking discovery and booking.")
app.add_typer(db.app, name="db", help="Database migrations.")
app.add_typer(demo.app, name="seed", help="Seed data.")
app.add_typer(accounts.users, name="users", help="Operators, planners and admins.")
app.add_typer(accounts.devices, name="devices", help="Lot controller devices.")
app.add_typer(accounts.partners, name="partners", help="Open data partners.")
app.add_typer(lots.app, name="lots", help="Lot registry: bulk import.")
processes.register(app)
booking.register(app)
controllers.register(app)
analytics.register(app)


def main() -> None:
    app()
