"""Gates: what the gate decision path and the operators' session views need.

- lots.lost_ticket_fee_amount: the flat fee charged when a driver has lost the ticket and no
  entry can be found (the rate card's JSON is strict, so it lives on the lot).
- parking_sessions: pay_requested_at (the never-trap rule: `pay` is answered once per session,
  the next exit event opens and records a debt), overstay_risk_at (a walk-in whose occupancy
  could not be extended), lost_ticket_at, flags (e.g. an entry accepted from the edge agent
  with no free spot), paid_amount.
- One session per reservation, one debt per session (both make retries idempotent).
- The active-session lookup by QR goes through reservation_id.

Revision ID: 0005_gates
Revises: 0003_discovery
Create Date: 2026-11-21 17:10:00
"""

from alembic import op

revision = "0005_gates"
down_revision = "0003_discovery"
branch_labels = None
depends_on = None

UPGRADE = [
    "ALTER TABLE lots ADD COLUMN lost_ticket_fee_amount bigint CHECK (lost_ticket_fee_amount IS NULL"
    " OR lost_ticket_fee_amount >= 0)",
    "ALTER TABLE parking_sessions ADD COLUMN pay_requested_at timestamptz",
    "ALTER TABLE parking_sessions ADD COLUMN overstay_risk_at timestamptz",
    "ALTER TABLE parking_sessions ADD COLUMN lost_ticket_at timestamptz",
    "ALTER TABLE parking_sessions ADD COLUMN paid_amount bigint NOT NULL DEFAULT 0 CHECK (paid_amount >= 0)",
    "ALTER TABLE parking_sessions ADD COLUMN flags text[] NOT NULL DEFAULT '{}'",
    "CREATE UNIQUE INDEX parking_sessions_reservation_key ON parking_sessions (lot_id, reservation_id)"
    " WHERE reservation_id IS NOT NULL",
    "CREATE UNIQUE INDEX plate_debts_session_key ON plate_debts (lot_id, session_id) WHERE session_id IS NOT NULL",
    "CREATE INDEX reservations_walk_in_active_idx ON reservations (ends_at) WHERE status = 'active' AND kind = 'walk_in'",
    "CREATE INDEX reservations_walk_in_key_idx ON reservations (lot_id, idempotency_key) WHERE kind = 'walk_in'",
    "CREATE INDEX reservations_lot_plate_idx ON reservations (lot_id, plate_hash) WHERE status IN ('confirmed','active')",
]

DOWNGRADE = [
    "DROP INDEX IF EXISTS reservations_lot_plate_idx",
    "DROP INDEX IF EXISTS reservations_walk_in_key_idx",
    "DROP INDEX IF EXISTS reservations_walk_in_active_idx",
    "DROP INDEX IF EXISTS plate_debts_session_key",
    "DROP INDEX IF EXISTS parking_sessions_reservation_key",
    "ALTER TABLE parking_sessions DROP COLUMN IF EXISTS flags",
    "ALTER TABLE parking_sessions DROP COLUMN IF EXISTS paid_amount",
    "ALTER TABLE parking_sessions DROP COLUMN IF EXISTS lost_ticket_at",
    "ALTER TABLE parking_sessions DROP COLUMN IF EXISTS overstay_risk_at",
    "ALTER TABLE parking_sessions DROP COLUMN IF EXISTS pay_requested_at",
    "ALTER TABLE lots DROP COLUMN IF EXISTS lost_ticket_fee_amount",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
