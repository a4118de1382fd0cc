"""Initial schema: identity, lots, spots, reservations with the exclusion guard, sessions, payments,
controller events (sensor events partitioned by time), occupancy, partners, idempotency, outbox.

Every lot-scoped table carries lot_id in its primary key so the schema can be distributed by
lot_id (Citus) without rework.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 15:00:00
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ACTIVE = "('held','confirmed','active')"

UPGRADE = f"""
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS btree_gist;
CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE TABLE organisations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text NOT NULL CHECK (email = lower(email) AND length(email) <= 320),
    password_hash text NOT NULL,
    role text NOT NULL DEFAULT 'driver' CHECK (role IN ('driver','operator','planner','admin')),
    organisation_id uuid REFERENCES organisations(id) ON DELETE RESTRICT,
    disabled boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (role <> 'operator' OR organisation_id IS NOT NULL)
);
CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE refresh_tokens (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    family_id uuid NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    revoked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);

CREATE TABLE lots (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id uuid NOT NULL REFERENCES organisations(id) ON DELETE RESTRICT,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    address text NOT NULL DEFAULT '' CHECK (length(address) <= 500),
    location geography(Point, 4326) NOT NULL,
    h3_r7 bigint NOT NULL,
    h3_r9 bigint NOT NULL,
    timezone text NOT NULL DEFAULT 'UTC',
    kind text NOT NULL DEFAULT 'surface' CHECK (kind IN ('surface','multi-storey','underground','street')),
    amenities text[] NOT NULL DEFAULT '{{}}',
    opening_hours text,
    height_limit_cm integer CHECK (height_limit_cm IS NULL OR height_limit_cm > 0),
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open','closed')),
    allocation_strategy text NOT NULL DEFAULT 'nearest_entrance'
        CHECK (allocation_strategy IN ('nearest_entrance','spread_levels','best_fit')),
    ev_overflow boolean NOT NULL DEFAULT false,
    walk_in_horizon_minutes integer NOT NULL DEFAULT 120 CHECK (walk_in_horizon_minutes BETWEEN 15 AND 1440),
    no_show_grace_minutes integer NOT NULL DEFAULT 30 CHECK (no_show_grace_minutes BETWEEN 0 AND 1440),
    early_arrival_minutes integer NOT NULL DEFAULT 15 CHECK (early_arrival_minutes BETWEEN 0 AND 1440),
    booking_horizon_days integer NOT NULL DEFAULT 30 CHECK (booking_horizon_days BETWEEN 1 AND 365),
    capacity integer NOT NULL DEFAULT 0 CHECK (capacity >= 0),
    external_ref text UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lots_location_gist ON lots USING gist (location);
CREATE INDEX lots_h3_r7_idx ON lots (h3_r7);
CREATE INDEX lots_h3_r9_idx ON lots (h3_r9);
CREATE INDEX lots_organisation_idx ON lots (organisation_id);

CREATE TABLE levels (
    lot_id uuid NOT NULL REFERENCES lots(id) ON DELETE CASCADE,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    ordinal integer NOT NULL,
    PRIMARY KEY (lot_id, id),
    UNIQUE (lot_id, ordinal)
);

CREATE TABLE zones (
    lot_id uuid NOT NULL,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    level_id uuid NOT NULL,
    name text NOT NULL,
    PRIMARY KEY (lot_id, id),
    FOREIGN KEY (lot_id, level_id) REFERENCES levels(lot_id, id) ON DELETE CASCADE
);

CREATE TABLE spots (
    lot_id uuid NOT NULL REFERENCES lots(id) ON DELETE CASCADE,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    idx integer NOT NULL CHECK (idx >= 0),
    level_id uuid NOT NULL,
    zone_id uuid,
    label text NOT NULL,
    type text NOT NULL CHECK (type IN ('motorcycle','compact','regular','large','ev','handicap')),
    features text[] NOT NULL DEFAULT '{{}}',
    status text NOT NULL DEFAULT 'in_service' CHECK (status IN ('in_service','out_of_service')),
    rank integer NOT NULL DEFAULT 0,
    PRIMARY KEY (lot_id, id),
    UNIQUE (lot_id, idx),
    UNIQUE (lot_id, label),
    FOREIGN KEY (lot_id, level_id) REFERENCES levels(lot_id, id) ON DELETE CASCADE,
    FOREIGN KEY (lot_id, zone_id) REFERENCES zones(lot_id, id) ON DELETE SET NULL (zone_id)
);

CREATE TABLE gates (
    lot_id uuid NOT NULL REFERENCES lots(id) ON DELETE CASCADE,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    name text NOT NULL,
    direction text NOT NULL CHECK (direction IN ('entry','exit')),
    PRIMARY KEY (lot_id, id)
);
CREATE UNIQUE INDEX gates_id_key ON gates (id);

CREATE TABLE devices (
    lot_id uuid NOT NULL REFERENCES lots(id) ON DELETE CASCADE,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    name text NOT NULL DEFAULT 'controller',
    key_hash text NOT NULL UNIQUE,
    key_prefix text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    PRIMARY KEY (lot_id, id)
);

CREATE TABLE partners (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    api_key_hash text NOT NULL UNIQUE,
    key_prefix text NOT NULL,
    quota text NOT NULL DEFAULT '600/minute',
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE TABLE vehicles (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    plate text NOT NULL,
    plate_hash bytea NOT NULL,
    vehicle_type text NOT NULL CHECK (vehicle_type IN ('motorcycle','compact','regular','large','ev','handicap')),
    handicap_permit boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, plate_hash)
);
CREATE INDEX vehicles_plate_hash_idx ON vehicles (plate_hash);

-- Holds, reservations and walk-in occupancy all live here, so one constraint guards them all.
CREATE TABLE reservations (
    lot_id uuid NOT NULL REFERENCES lots(id) ON DELETE RESTRICT,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    kind text NOT NULL DEFAULT 'reservation' CHECK (kind IN ('reservation','walk_in')),
    user_id uuid REFERENCES users(id) ON DELETE SET NULL,
    spot_id uuid NOT NULL,
    vehicle_type text NOT NULL CHECK (vehicle_type IN ('motorcycle','compact','regular','large','ev','handicap')),
    plate text,
    plate_hash bytea,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    period tstzrange NOT NULL,
    status text NOT NULL CHECK (status IN ('held','confirmed','active','completed','cancelled','expired','no_show')),
    hold_expires_at timestamptz,
    price_amount bigint NOT NULL DEFAULT 0 CHECK (price_amount >= 0),
    currency char(3) NOT NULL DEFAULT 'usd',
    quote jsonb,
    idempotency_key text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    confirmed_at timestamptz,
    entered_at timestamptz,
    exited_at timestamptz,
    cancelled_at timestamptz,
    PRIMARY KEY (lot_id, id),
    FOREIGN KEY (lot_id, spot_id) REFERENCES spots(lot_id, id) ON DELETE RESTRICT,
    CHECK (ends_at > starts_at),
    CHECK (NOT isempty(period) AND lower_inc(period) AND NOT upper_inc(period)
           AND NOT lower_inf(period) AND NOT upper_inf(period)),
    CHECK (status <> 'held' OR hold_expires_at IS NOT NULL),
    CONSTRAINT reservations_no_double_booking
        EXCLUDE USING gist (lot_id WITH =, spot_id WITH =, period WITH &&) WHERE (status IN {ACTIVE}),
    CONSTRAINT reservations_one_car_one_reservation
        EXCLUDE USING gist (plate_hash WITH =, period WITH &&) WHERE (status IN {ACTIVE} AND plate_hash IS NOT NULL)
);
CREATE UNIQUE INDEX reservations_id_key ON reservations (id);
CREATE INDEX reservations_user_idx ON reservations (user_id, created_at DESC);
CREATE INDEX reservations_held_expiry_idx ON reservations (hold_expires_at) WHERE status = 'held';
CREATE INDEX reservations_confirmed_start_idx ON reservations (starts_at) WHERE status = 'confirmed';
CREATE INDEX reservations_lot_period_idx ON reservations USING gist (lot_id, period) WHERE status IN {ACTIVE};

CREATE TABLE parking_sessions (
    lot_id uuid NOT NULL REFERENCES lots(id) ON DELETE RESTRICT,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    kind text NOT NULL CHECK (kind IN ('reservation','walk_in','pass')),
    reservation_id uuid,
    spot_id uuid,
    plate text,
    plate_hash bytea,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active','completed')),
    entered_at timestamptz NOT NULL,
    exited_at timestamptz,
    entry_gate_id uuid,
    exit_gate_id uuid,
    fee_amount bigint CHECK (fee_amount IS NULL OR fee_amount >= 0),
    currency char(3) NOT NULL DEFAULT 'usd',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lot_id, id),
    FOREIGN KEY (lot_id, reservation_id) REFERENCES reservations(lot_id, id) ON DELETE SET NULL (reservation_id),
    CHECK (exited_at IS NULL OR exited_at >= entered_at)
);
CREATE INDEX parking_sessions_plate_idx ON parking_sessions (lot_id, plate_hash) WHERE status = 'active';
CREATE INDEX parking_sessions_status_idx ON parking_sessions (lot_id, status, entered_at DESC);
CREATE INDEX parking_sessions_retention_idx ON parking_sessions (exited_at) WHERE plate IS NOT NULL;

CREATE TABLE rate_cards (
    lot_id uuid PRIMARY KEY REFERENCES lots(id) ON DELETE CASCADE,
    currency char(3) NOT NULL DEFAULT 'usd',
    body jsonb NOT NULL,
    version integer NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE monthly_passes (
    lot_id uuid NOT NULL REFERENCES lots(id) ON DELETE CASCADE,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id uuid REFERENCES users(id) ON DELETE SET NULL,
    plate_hash bytea NOT NULL,
    spot_type text,
    month date NOT NULL CHECK (extract(day FROM month) = 1),
    price_amount bigint NOT NULL CHECK (price_amount >= 0),
    currency char(3) NOT NULL DEFAULT 'usd',
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active','cancelled')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lot_id, id),
    UNIQUE (lot_id, plate_hash, month)
);

CREATE TABLE payments (
    lot_id uuid NOT NULL REFERENCES lots(id) ON DELETE RESTRICT,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    reservation_id uuid,
    session_id uuid,
    provider text NOT NULL CHECK (provider IN ('local','stripe')),
    intent_id text UNIQUE,
    purpose text NOT NULL DEFAULT 'reservation',
    status text NOT NULL,
    amount bigint NOT NULL CHECK (amount >= 0),
    amount_authorised bigint NOT NULL DEFAULT 0 CHECK (amount_authorised >= 0),
    amount_captured bigint NOT NULL DEFAULT 0 CHECK (amount_captured >= 0),
    amount_refunded bigint NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    currency char(3) NOT NULL DEFAULT 'usd',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lot_id, id),
    CHECK (amount_captured <= amount_authorised),
    CHECK (amount_refunded <= amount_captured)
);
CREATE INDEX payments_reservation_idx ON payments (reservation_id);

CREATE TABLE payment_events (
    provider text NOT NULL,
    event_id text NOT NULL,
    type text NOT NULL,
    intent_id text,
    received_at timestamptz NOT NULL DEFAULT now(),
    outcome text NOT NULL DEFAULT 'applied',
    PRIMARY KEY (provider, event_id)
);

CREATE TABLE plate_debts (
    lot_id uuid NOT NULL REFERENCES lots(id) ON DELETE RESTRICT,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    plate_hash bytea NOT NULL,
    session_id uuid,
    amount bigint NOT NULL CHECK (amount > 0),
    currency char(3) NOT NULL DEFAULT 'usd',
    reason text NOT NULL,
    settled_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lot_id, id)
);
CREATE INDEX plate_debts_plate_idx ON plate_debts (plate_hash) WHERE settled_at IS NULL;

CREATE TABLE sensors (
    lot_id uuid NOT NULL REFERENCES lots(id) ON DELETE CASCADE,
    id text NOT NULL CHECK (length(id) BETWEEN 1 AND 100),
    spot_id uuid,
    state text NOT NULL DEFAULT 'unknown' CHECK (state IN ('occupied','vacant','unknown')),
    confidence real,
    state_since timestamptz,
    last_seen_at timestamptz,
    heartbeat_seconds integer NOT NULL DEFAULT 600 CHECK (heartbeat_seconds > 0),
    PRIMARY KEY (lot_id, id),
    FOREIGN KEY (lot_id, spot_id) REFERENCES spots(lot_id, id) ON DELETE SET NULL (spot_id)
);

-- Gate and device events: the exactly-once ledger (one row per event_id, first decision kept).
CREATE TABLE controller_events (
    lot_id uuid NOT NULL REFERENCES lots(id) ON DELETE CASCADE,
    event_id text NOT NULL CHECK (length(event_id) BETWEEN 1 AND 100),
    device_id uuid,
    sequence bigint,
    source text NOT NULL CHECK (source IN ('gate','sensor','edge')),
    cds_event_type text NOT NULL
        CHECK (cds_event_type IN ('enter_area','exit_area','park_start','park_end','comms_lost','comms_restored','decision_only')),
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    payload jsonb NOT NULL DEFAULT '{{}}',
    decision jsonb,
    PRIMARY KEY (lot_id, event_id)
);
CREATE INDEX controller_events_device_seq_idx ON controller_events (lot_id, device_id, sequence);

-- Raw sensor readings, partitioned by month of occurrence; old partitions are dropped, not deleted.
CREATE TABLE sensor_events (
    lot_id uuid NOT NULL,
    event_id text NOT NULL,
    sensor_id text NOT NULL,
    state text NOT NULL CHECK (state IN ('occupied','vacant')),
    confidence real NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    accepted boolean NOT NULL DEFAULT true,
    PRIMARY KEY (lot_id, event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE TABLE sensor_events_default PARTITION OF sensor_events DEFAULT;

CREATE TABLE occupancy_snapshots (
    lot_id uuid NOT NULL REFERENCES lots(id) ON DELETE CASCADE,
    taken_at timestamptz NOT NULL,
    spot_type text NOT NULL,
    occupied integer NOT NULL CHECK (occupied >= 0),
    capacity integer NOT NULL CHECK (capacity >= 0),
    source text NOT NULL,
    by_level jsonb NOT NULL DEFAULT '{{}}',
    PRIMARY KEY (lot_id, taken_at, spot_type),
    CHECK (occupied <= capacity)
);

CREATE TABLE idempotency_keys (
    scope text NOT NULL,
    key text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    request_hash text NOT NULL,
    status_code integer,
    response jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

CREATE TABLE outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;

CREATE TABLE exports (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    params jsonb NOT NULL,
    status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued','running','done','failed')),
    progress real NOT NULL DEFAULT 0,
    path text,
    error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
"""

DOWNGRADE = """
DROP TABLE IF EXISTS exports, outbox, idempotency_keys, occupancy_snapshots, sensor_events,
    controller_events, sensors, plate_debts, payment_events, payments, monthly_passes, rate_cards,
    parking_sessions, reservations, vehicles, partners, devices, gates, spots, zones, levels, lots,
    refresh_tokens, users, organisations CASCADE;
"""


def _statements(sql: str) -> list[str]:
    # asyncpg prepares each statement, so a script is sent one statement at a time.
    return [s.strip() for s in sql.split(";\n") if s.strip()]


def upgrade() -> None:
    for statement in _statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in _statements(DOWNGRADE):
        op.execute(statement)
