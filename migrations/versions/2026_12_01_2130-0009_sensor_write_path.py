"""Sensor write path: no per-row foreign-key checks on the two ledgers, a BRIN for pruning, HOT sensor updates.

Every sensor event inserts a sensor_event_ids claim and, when its bay changes state, a controller_events row.
Both referenced lots(id): a per-row RI trigger that locks the lot's row FOR KEY SHARE, so concurrent batches of
one lot share (MultiXact) locks on one row, and each check walks the lot row's dead versions (the spot-count
triggers update it). Measured with loadtests.profile_sensors --statements: 20-25 us of PostgreSQL CPU per event
for each of the two inserts, 7-9 us without the checks. The lot_id of these rows comes from a device key of that
lot (HTTP) or a lot looked up before ingesting (MQTT), and lots are never deleted (docs/adr/0012).

sensor_event_ids is pruned by received_at, which only grows with insertion order: a BRIN index serves the
hourly range delete at almost no cost per insert (a btree insert per event before).

sensors is updated on every accepted reading: sensors_last_seen_idx (unused: the staleness sweep compares
last_seen_at with a per-row interval, which no index serves) put last_seen_at and state in an index and so
made every update non-HOT. Without it, and with room left on each page (fillfactor 40: a batch rewrites most
rows of a page, and a HOT update needs room on the same page for the new version), updates stay HOT.

controller_events_device_seq_idx orders a device's gate events by sequence; sensor CDS events (most of the
table's rows) have no sequence, so the index is partial and they skip it.

Revision ID: 0009_sensor_write_path
Revises: 0008_unpaid_holds_by_driver
Create Date: 2026-12-01 21:30:00
"""

from alembic import op

revision = "0009_sensor_write_path"
down_revision = "0008_unpaid_holds_by_driver"
branch_labels = None
depends_on = None

UPGRADE = [
    "ALTER TABLE sensor_event_ids DROP CONSTRAINT IF EXISTS sensor_event_ids_lot_id_fkey",
    "ALTER TABLE controller_events DROP CONSTRAINT IF EXISTS controller_events_lot_id_fkey",
    "DROP INDEX IF EXISTS sensor_event_ids_received_idx",
    "CREATE INDEX sensor_event_ids_received_brin ON sensor_event_ids USING brin (received_at)",
    "DROP INDEX IF EXISTS sensors_last_seen_idx",
    "ALTER TABLE sensors SET (fillfactor = 40)",
    # gate and edge events carry a device sequence; sensor CDS events (most rows) do not
    "DROP INDEX IF EXISTS controller_events_device_seq_idx",
    """CREATE INDEX controller_events_device_seq_idx ON controller_events (lot_id, device_id, sequence)
        WHERE sequence IS NOT NULL""",
]

DOWNGRADE = [
    "DROP INDEX IF EXISTS controller_events_device_seq_idx",
    "CREATE INDEX controller_events_device_seq_idx ON controller_events (lot_id, device_id, sequence)",
    "ALTER TABLE sensors RESET (fillfactor)",
    "CREATE INDEX IF NOT EXISTS sensors_last_seen_idx ON sensors (last_seen_at) WHERE state <> 'unknown'",
    "DROP INDEX IF EXISTS sensor_event_ids_received_brin",
    "CREATE INDEX IF NOT EXISTS sensor_event_ids_received_idx ON sensor_event_ids (received_at)",
    """ALTER TABLE controller_events ADD CONSTRAINT controller_events_lot_id_fkey
        FOREIGN KEY (lot_id) REFERENCES lots(id) ON DELETE CASCADE""",
    """ALTER TABLE sensor_event_ids ADD CONSTRAINT sensor_event_ids_lot_id_fkey
        FOREIGN KEY (lot_id) REFERENCES lots(id) ON DELETE CASCADE""",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
