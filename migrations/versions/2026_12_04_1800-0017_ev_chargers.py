"""EV chargers (OCPP 1.6J): chargers with hashed passwords, their connectors' last status, charging sessions.

A charger belongs to one lot (optionally one spot) and is known to OCPP by its charge point id. Its connectors'
last StatusNotification is kept per connector (ev_chargers counts connectors); connector 0 (the charger as a
whole) is kept on the charger. A charging session is one OCPP transaction: its bigint id is the transactionId
the charger is given. Plates are kept as keyed hashes only. At most one open session per connector.

Revision ID: 0017_ev_chargers
Revises: 0016_reservation_changes
Create Date: 2026-12-04 18:00:00
"""

from alembic import op

revision = "0017_ev_chargers"
down_revision = "0016_reservation_changes"
branch_labels = None
depends_on = None

STATUSES = ("'Unknown','Available','Preparing','Charging','SuspendedEVSE','SuspendedEV','Finishing','Reserved',"
            "'Unavailable','Faulted'")

UPGRADE = [
    f"""CREATE TABLE chargers (
        lot_id uuid NOT NULL REFERENCES lots(id) ON DELETE CASCADE,
        id uuid NOT NULL DEFAULT gen_random_uuid(),
        charge_point_id text NOT NULL CHECK (charge_point_id ~ '^[A-Za-z0-9._-]{{1,48}}$'),
        spot_id uuid,
        password_hash text NOT NULL,
        connectors integer NOT NULL CHECK (connectors BETWEEN 1 AND 16),
        heartbeat_interval_s integer NOT NULL DEFAULT 300 CHECK (heartbeat_interval_s > 0),
        status text NOT NULL DEFAULT 'Unknown' CHECK (status IN ({STATUSES})),
        vendor text, model text, serial text, firmware text,
        booted_at timestamptz,
        last_seen_at timestamptz,
        revoked_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (lot_id, id),
        FOREIGN KEY (lot_id, spot_id) REFERENCES spots(lot_id, id) ON DELETE SET NULL (spot_id)
    )""",
    "CREATE UNIQUE INDEX chargers_charge_point_id_key ON chargers (charge_point_id)",
    f"""CREATE TABLE charger_connectors (
        lot_id uuid NOT NULL,
        charger_id uuid NOT NULL,
        connector_id integer NOT NULL CHECK (connector_id >= 1),
        status text NOT NULL DEFAULT 'Unknown' CHECK (status IN ({STATUSES})),
        error_code text NOT NULL DEFAULT 'NoError',
        status_at timestamptz,
        PRIMARY KEY (lot_id, charger_id, connector_id),
        FOREIGN KEY (lot_id, charger_id) REFERENCES chargers(lot_id, id) ON DELETE CASCADE
    )""",
    """CREATE TABLE charging_sessions (
        lot_id uuid NOT NULL,
        id bigint GENERATED ALWAYS AS IDENTITY,
        charger_id uuid NOT NULL,
        connector_id integer NOT NULL CHECK (connector_id >= 1),
        id_tag_kind text NOT NULL CHECK (id_tag_kind IN ('reservation','plate','invalid')),
        reservation_id uuid,
        plate_hash bytea,
        meter_start_wh bigint NOT NULL CHECK (meter_start_wh >= 0),
        meter_last_wh bigint NOT NULL,
        meter_stop_wh bigint,
        started_at timestamptz NOT NULL,
        stopped_at timestamptz,
        stop_reason text,
        charging_ended_at timestamptz,
        unplugged_at timestamptz,
        billed_session_id uuid,
        idle_minutes integer,
        idle_fee_amount bigint CHECK (idle_fee_amount IS NULL OR idle_fee_amount >= 0),
        currency char(3),
        PRIMARY KEY (lot_id, id),
        FOREIGN KEY (lot_id, charger_id) REFERENCES chargers(lot_id, id) ON DELETE RESTRICT
    )""",
    "CREATE UNIQUE INDEX charging_sessions_id_key ON charging_sessions (id)",
    """CREATE UNIQUE INDEX charging_sessions_open_connector ON charging_sessions (lot_id, charger_id, connector_id)
        WHERE stopped_at IS NULL""",
    """CREATE INDEX charging_sessions_unbilled_idx ON charging_sessions (lot_id, plate_hash)
        WHERE billed_session_id IS NULL""",
    """CREATE INDEX charging_sessions_unbilled_reservation_idx ON charging_sessions (lot_id, reservation_id)
        WHERE billed_session_id IS NULL AND reservation_id IS NOT NULL""",
]

DOWNGRADE = [
    "DROP TABLE IF EXISTS charging_sessions",
    "DROP TABLE IF EXISTS charger_connectors",
    "DROP TABLE IF EXISTS chargers",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
