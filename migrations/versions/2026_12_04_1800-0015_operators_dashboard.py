"""Operators' dashboard: when money moved, who acknowledged an alert, what the reconciler repaired.

- payments.authorised_at, captured_at, refunded_at: "today's revenue" sums what moved in the lot's local day.
  A trigger stamps them from the row's updated_at (set from the injected clock by every payment write) the
  first time an amount leaves 0 (refunds: each time it grows), so no payment write path had to change.
  Existing rows are backfilled from updated_at.
- payments_session_idx: a session's exit payments (the session list sums what was paid).
- controller_events_gate_idx: a gate's newest event (gate "online" and "silent" alerts), gate and edge rows only.
- dashboard_alert_acks: an acknowledgement per (lot, alert id, the alert's `since`): who and when.
- redis_repairs: one row per lot whose Redis slot state the reconciler had to repair (an alert).

Revision ID: 0015_operators_dashboard
Revises: 0012_open_data
Create Date: 2026-12-04 18:00:00
"""

from alembic import op

revision = "0015_operators_dashboard"
down_revision = "0012_open_data"
branch_labels = None
depends_on = None

UPGRADE = [
    "ALTER TABLE payments ADD COLUMN authorised_at timestamptz",
    "ALTER TABLE payments ADD COLUMN captured_at timestamptz",
    "ALTER TABLE payments ADD COLUMN refunded_at timestamptz",
    "UPDATE payments SET authorised_at = CASE WHEN amount_authorised > 0 THEN updated_at END,"
    " captured_at = CASE WHEN amount_captured > 0 THEN updated_at END,"
    " refunded_at = CASE WHEN amount_refunded > 0 THEN updated_at END",
    """CREATE FUNCTION payments_stamp_money_times() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.amount_authorised > 0 AND (TG_OP = 'INSERT' OR OLD.amount_authorised = 0) THEN
    NEW.authorised_at := coalesce(NEW.authorised_at, NEW.updated_at);
  END IF;
  IF NEW.amount_captured > 0 AND (TG_OP = 'INSERT' OR OLD.amount_captured = 0) THEN
    NEW.captured_at := coalesce(NEW.captured_at, NEW.updated_at);
  END IF;
  IF NEW.amount_refunded > 0 AND (TG_OP = 'INSERT' OR NEW.amount_refunded > OLD.amount_refunded) THEN
    NEW.refunded_at := NEW.updated_at;
  END IF;
  RETURN NEW;
END $$""",
    "CREATE TRIGGER payments_money_times BEFORE INSERT OR UPDATE OF amount_authorised, amount_captured,"
    " amount_refunded ON payments FOR EACH ROW EXECUTE FUNCTION payments_stamp_money_times()",
    "CREATE INDEX payments_lot_moved_idx ON payments (lot_id, updated_at)",
    "CREATE INDEX payments_session_idx ON payments (lot_id, session_id) WHERE session_id IS NOT NULL",
    "CREATE INDEX controller_events_gate_idx ON controller_events (lot_id, (payload->>'gate_id'), received_at DESC)"
    " WHERE source IN ('gate', 'edge')",
    "CREATE INDEX plate_debts_lot_open_idx ON plate_debts (lot_id, created_at) WHERE settled_at IS NULL",
    """CREATE TABLE dashboard_alert_acks (
    lot_id uuid NOT NULL REFERENCES lots(id) ON DELETE CASCADE,
    alert_id text NOT NULL CHECK (length(alert_id) BETWEEN 1 AND 200),
    since timestamptz NOT NULL,
    acknowledged_by uuid REFERENCES users(id) ON DELETE SET NULL,
    acknowledged_by_email text NOT NULL,
    acknowledged_at timestamptz NOT NULL,
    PRIMARY KEY (lot_id, alert_id, since)
)""",
    """CREATE TABLE redis_repairs (
    lot_id uuid NOT NULL REFERENCES lots(id) ON DELETE CASCADE,
    id bigint GENERATED ALWAYS AS IDENTITY,
    repaired_at timestamptz NOT NULL,
    bits_set bigint NOT NULL DEFAULT 0,
    bits_cleared bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (lot_id, id)
)""",
    "CREATE INDEX redis_repairs_time_idx ON redis_repairs (lot_id, repaired_at DESC)",
]

DOWNGRADE = [
    "DROP TABLE IF EXISTS redis_repairs",
    "DROP TABLE IF EXISTS dashboard_alert_acks",
    "DROP INDEX IF EXISTS plate_debts_lot_open_idx",
    "DROP INDEX IF EXISTS controller_events_gate_idx",
    "DROP INDEX IF EXISTS payments_session_idx",
    "DROP INDEX IF EXISTS payments_lot_moved_idx",
    "DROP TRIGGER IF EXISTS payments_money_times ON payments",
    "DROP FUNCTION IF EXISTS payments_stamp_money_times()",
    "ALTER TABLE payments DROP COLUMN IF EXISTS refunded_at",
    "ALTER TABLE payments DROP COLUMN IF EXISTS captured_at",
    "ALTER TABLE payments DROP COLUMN IF EXISTS authorised_at",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
