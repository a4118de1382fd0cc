"""Idempotency keys with their effect: recovery points, a lock that times out, expiry by created_at.

A key row is in one of three recovery points (docs/adr/0015-idempotency-with-its-effect.md):
  started       claimed by a request that is running, or that died; `locked_at` says since when, and after
                the lock timeout the same client's retry takes the key over and runs the request again
  finished      `status_code` and `response` are the first answer, replayed as is
  hold_written  written by the same statement as the hold it protects; `response` is that hold's row and its
                payment's client secret, from which the first answer is rendered again

Rows left by the previous protocol without an answer become `started` rows locked since they were created, so
their clients can take them over. created_at is written from the application clock and indexed for the sweeper
that drops keys after 24 h.

Revision ID: 0010_idempotency_with_effect
Revises: 0018_walking_network
Create Date: 2026-12-04 18:00:00
"""

from alembic import op

revision = "0010_idempotency_with_effect"
down_revision = "0018_walking_network"
branch_labels = None
depends_on = None

UPGRADE = [
    "ALTER TABLE idempotency_keys ADD COLUMN recovery_point text NOT NULL DEFAULT 'finished'"
    " CHECK (recovery_point IN ('started', 'finished', 'hold_written'))",
    "ALTER TABLE idempotency_keys ADD COLUMN locked_at timestamptz",
    "UPDATE idempotency_keys SET recovery_point = 'started', locked_at = created_at WHERE status_code IS NULL",
    "ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_answered_or_locked CHECK"
    " ((recovery_point = 'started') = (locked_at IS NOT NULL)"
    " AND (recovery_point = 'started' OR (status_code IS NOT NULL AND response IS NOT NULL)))",
    "CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at)",
]

DOWNGRADE = [
    "DROP INDEX IF EXISTS idempotency_keys_created_idx",
    "ALTER TABLE idempotency_keys DROP CONSTRAINT IF EXISTS idempotency_keys_answered_or_locked",
    # the previous protocol replays `response` as is: a hold's stored row is not its answer
    "DELETE FROM idempotency_keys WHERE recovery_point = 'hold_written'",
    "ALTER TABLE idempotency_keys DROP COLUMN IF EXISTS locked_at",
    "ALTER TABLE idempotency_keys DROP COLUMN IF EXISTS recovery_point",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
