"""Occupancy history (15-minute rows, hourly rollups) and stored forecasts.

occupancy_15m holds, per lot, spot type and 15-minute bucket, the time-averaged number of occupied spots
(derived from parking sessions, and from bay sensors for the spots that have them) and the in-service
capacity; it is kept 90 days. occupancy_hourly is its hourly rollup, kept for good. Both are written by an
idempotent upsert (analytics.history), so a bucket can be recomputed any number of times.

forecasts holds, per lot, the occupancy share 7 days ahead in 15-minute steps with an 80 % prediction
interval; forecast_models keeps the trained global model the 15-minute refresh predicts with.

Revision ID: 0013_occupancy_history
Revises: 0017_ev_chargers
Create Date: 2026-12-04 18:00:00
"""

from alembic import op

revision = "0013_occupancy_history"
down_revision = "0017_ev_chargers"
branch_labels = None
depends_on = None

UPGRADE = [
    """CREATE TABLE occupancy_15m (
        lot_id uuid NOT NULL,
        bucket timestamptz NOT NULL,
        spot_type text NOT NULL,
        occupied real NOT NULL CHECK (occupied >= 0),
        capacity integer NOT NULL CHECK (capacity >= 0),
        source text NOT NULL CHECK (source IN ('sessions', 'sensors')),
        computed_at timestamptz NOT NULL,
        PRIMARY KEY (lot_id, bucket, spot_type),
        CHECK (occupied <= capacity),
        CHECK (extract(epoch FROM bucket)::bigint % 900 = 0)
    )""",
    "CREATE INDEX occupancy_15m_bucket_brin ON occupancy_15m USING brin (bucket)",
    """CREATE TABLE occupancy_hourly (
        lot_id uuid NOT NULL,
        hour timestamptz NOT NULL,
        spot_type text NOT NULL,
        occupied_avg real NOT NULL CHECK (occupied_avg >= 0),
        occupied_max real NOT NULL CHECK (occupied_max >= 0),
        capacity integer NOT NULL CHECK (capacity >= 0),
        computed_at timestamptz NOT NULL,
        PRIMARY KEY (lot_id, hour, spot_type),
        CHECK (occupied_avg <= capacity AND occupied_max <= capacity),
        CHECK (extract(epoch FROM hour)::bigint % 3600 = 0)
    )""",
    """CREATE TABLE forecasts (
        lot_id uuid NOT NULL,
        vehicle_type text NOT NULL,
        at timestamptz NOT NULL,
        occupancy real NOT NULL CHECK (occupancy BETWEEN 0 AND 1),
        low real NOT NULL CHECK (low BETWEEN 0 AND 1),
        high real NOT NULL CHECK (high BETWEEN 0 AND 1),
        model text NOT NULL,
        trained_at timestamptz,
        generated_at timestamptz NOT NULL,
        PRIMARY KEY (lot_id, vehicle_type, at),
        CHECK (low <= occupancy AND occupancy <= high)
    )""",
    "CREATE INDEX forecasts_generated_idx ON forecasts (generated_at)",
    """CREATE TABLE forecast_models (
        name text PRIMARY KEY,
        trained_at timestamptz NOT NULL,
        body bytea NOT NULL,
        metrics jsonb NOT NULL DEFAULT '{}'
    )""",
]

DOWNGRADE = [
    "DROP TABLE IF EXISTS forecast_models",
    "DROP TABLE IF EXISTS forecasts",
    "DROP TABLE IF EXISTS occupancy_hourly",
    "DROP TABLE IF EXISTS occupancy_15m",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
