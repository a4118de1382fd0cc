"""Gates are looked up within their lot only: the global unique index on gates.id goes.

Every gate lookup names its lot (the device's lot over HTTP, the topic's lot over MQTT, the edge agent's lot),
so the primary key (lot_id, id) serves it and no key of a lot-scoped table spans lots (docs/adr/0024).

Revision ID: 0019_gates_by_lot
Revises: 0013_occupancy_history
Create Date: 2026-12-05 07:00:00
"""

from alembic import op

revision = "0019_gates_by_lot"
down_revision = "0013_occupancy_history"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX gates_id_key")


def downgrade() -> None:
    op.execute("CREATE UNIQUE INDEX gates_id_key ON gates (id)")
