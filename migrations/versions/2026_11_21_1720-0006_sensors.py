"""Sensors: an exactly-once key per sensor event, sensor lookups by spot, an inbox for MQTT gate events.

sensor_events is partitioned by occurred_at, so its primary key must include occurred_at and cannot
by itself make an event_id unique; sensor_event_ids is the exactly-once ledger (pruned by age).
mqtt_gate_inbox keeps gate events that arrived over MQTT while no gate decision function was
importable, so none is lost.

Revision ID: 0006_sensors
Revises: 0005_gates
Create Date: 2026-11-21 17:20:00
"""

from alembic import op

revision = "0006_sensors"
down_revision = "0005_gates"
branch_labels = None
depends_on = None

UPGRADE = [
    """CREATE TABLE sensor_event_ids (
        lot_id uuid NOT NULL REFERENCES lots(id) ON DELETE CASCADE,
        event_id text NOT NULL CHECK (length(event_id) BETWEEN 1 AND 100),
        received_at timestamptz NOT NULL,
        PRIMARY KEY (lot_id, event_id)
    )""",
    "CREATE INDEX sensor_event_ids_received_idx ON sensor_event_ids (received_at)",
    "CREATE INDEX sensors_spot_idx ON sensors (lot_id, spot_id) WHERE spot_id IS NOT NULL",
    "CREATE INDEX sensors_last_seen_idx ON sensors (last_seen_at) WHERE state <> 'unknown'",
    """CREATE TABLE mqtt_gate_inbox (
        lot_id uuid NOT NULL REFERENCES lots(id) ON DELETE CASCADE,
        event_id text NOT NULL CHECK (length(event_id) BETWEEN 1 AND 100),
        gate_id uuid NOT NULL,
        payload jsonb NOT NULL,
        received_at timestamptz NOT NULL,
        processed_at timestamptz,
        PRIMARY KEY (lot_id, event_id)
    )""",
]

DOWNGRADE = [
    "DROP TABLE IF EXISTS mqtt_gate_inbox",
    "DROP INDEX IF EXISTS sensors_last_seen_idx",
    "DROP INDEX IF EXISTS sensors_spot_idx",
    "DROP TABLE IF EXISTS sensor_event_ids",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
