"""The `parkgrid` command line: the same PARKGRID_* settings as the server."""

from __future__ import annotations

import typer

from cli import (
    accounts,
    analytics,
    booking,
    chargers,
    controllers,
    db,
    demo,
    exports,
    lots,
    mqtt,
    network,
    processes,
    webhooks,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="ParkGrid: parking discovery and booking.")
app.add_typer(db.app, name="db", help="Database migrations.")
app.add_typer(demo.app, name="seed", help="Seed data.")
app.add_typer(accounts.users, name="users", help="Operators, planners and admins.")
app.add_typer(accounts.devices, name="devices", help="Lot controller devices.")
app.add_typer(accounts.partners, name="partners", help="Open data partners.")
accounts.partners.add_typer(webhooks.app, name="webhooks", help="Signed webhooks on lot events.")
app.add_typer(lots.app, name="lots", help="Lot registry: bulk import.")
app.add_typer(network.app, name="network", help="Pedestrian network for walking times.")
app.add_typer(mqtt.app, name="mqtt", help="The project's own MQTT broker (device identity).")
app.add_typer(chargers.app, name="chargers", help="EV chargers (OCPP 1.6J).")
processes.register(app)
booking.register(app)
controllers.register(app)
app.add_typer(exports.app, name="exports", help="Occupancy and session exports for planners.")
analytics.register(app)


def main() -> None:
    app()
