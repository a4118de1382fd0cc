"""Planner exports: row and suppressed counts, file expiry and purge, a heartbeat for stuck jobs.

The exports table came with the initial schema (id, user_id, params, status, progress, path, error, created_at,
finished_at). A job now reports how many rows it wrote and how many it suppressed (privacy threshold), when its
file expires and when the sweeper removed it, and `updated_at` moves with progress so that a job whose worker
died can be claimed again (docs/adr/0019).

Revision ID: 0014_planner_exports
Revises: 0010_idempotency_with_effect
Create Date: 2026-12-04 18:00:00
"""

from alembic import op

revision = "0014_planner_exports"
down_revision = "0010_idempotency_with_effect"
branch_labels = None
depends_on = None

UPGRADE = [
    """ALTER TABLE exports
        ADD COLUMN rows bigint NOT NULL DEFAULT 0 CHECK (rows >= 0),
        ADD COLUMN suppressed bigint NOT NULL DEFAULT 0 CHECK (suppressed >= 0),
        ADD COLUMN bytes bigint CHECK (bytes IS NULL OR bytes >= 0),
        ADD COLUMN started_at timestamptz,
        ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now(),
        ADD COLUMN expires_at timestamptz,
        ADD COLUMN purged_at timestamptz""",
    "ALTER TABLE exports ADD CONSTRAINT exports_progress_range CHECK (progress >= 0 AND progress <= 1)",
    "CREATE INDEX exports_user_idx ON exports (user_id, created_at DESC)",
    "CREATE INDEX exports_expiry_idx ON exports (expires_at) WHERE path IS NOT NULL",
]

DOWNGRADE = [
    "DROP INDEX IF EXISTS exports_expiry_idx",
    "DROP INDEX IF EXISTS exports_user_idx",
    "ALTER TABLE exports DROP CONSTRAINT IF EXISTS exports_progress_range",
    """ALTER TABLE exports DROP COLUMN IF EXISTS purged_at, DROP COLUMN IF EXISTS expires_at,
        DROP COLUMN IF EXISTS updated_at, DROP COLUMN IF EXISTS started_at, DROP COLUMN IF EXISTS bytes,
        DROP COLUMN IF EXISTS suppressed, DROP COLUMN IF EXISTS rows""",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
