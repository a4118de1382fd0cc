"""Holds: a driver's unpaid holds counted from an index of their own.

Every hold counts the driver's unpaid holds (PARKGRID_MAX_HOLDS_PER_USER) inside its write. The only
indexes the planner had were the driver's whole history (reservations_user_idx) and every unpaid hold in
the city (reservations_held_expiry_idx); it ANDed both bitmaps, so each hold read every unpaid hold of the
city and a hold got slower as the city got busier. This partial index answers the count from the
driver's own unpaid holds.

Revision ID: 0008_unpaid_holds_by_driver
Revises: 0007_lot_index_version
Create Date: 2026-12-01 21:20:00
"""

from alembic import op

revision = "0008_unpaid_holds_by_driver"
down_revision = "0007_lot_index_version"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX reservations_unpaid_by_user_idx ON reservations (user_id, hold_expires_at)"
               " WHERE status = 'held'")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS reservations_unpaid_by_user_idx")
