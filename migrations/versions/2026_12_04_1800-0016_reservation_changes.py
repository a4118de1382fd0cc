"""Reservation changes (a ledger of window changes and the money each one moved) and sensor mappings.

A reservation's price is always the price of its current window (booking.amendments). Each change records the
window before and after, the two prices, the fee the lot's policy keeps for removed time, and what the change
did to the authorisation, so the amount to capture is price + fees and every answer can show where money is.

sensor_mappings names, per lot, the spot an operator assigned to a sensor id (PUT /lots/{id}/sensors/{sensor_id});
a sensor's first event registers it to that spot, else to the spot whose label or id equals the sensor id, else the
event is rejected as from an unknown sensor (controllers.sensors).

pass_subscriptions are the monthly passes drivers buy (booking.pass_subscriptions): charged at purchase and at
each renewal. A pass (monthly_passes row) is honoured at the gate only once paid: `paid_at` (operator sales, paid
at the counter, are recorded paid when sold; existing rows are taken as paid when created).

Revision ID: 0016_reservation_changes
Revises: 0015_operators_dashboard
Create Date: 2026-12-04 18:00:00
"""

from alembic import op

revision = "0016_reservation_changes"
down_revision = "0015_operators_dashboard"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
CREATE TABLE reservation_changes (
    lot_id uuid NOT NULL,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    reservation_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    previous_starts_at timestamptz NOT NULL,
    previous_ends_at timestamptz NOT NULL,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    previous_price bigint NOT NULL CHECK (previous_price >= 0),
    price bigint NOT NULL CHECK (price >= 0),
    fee bigint NOT NULL DEFAULT 0 CHECK (fee >= 0),
    authorised_added bigint NOT NULL DEFAULT 0 CHECK (authorised_added >= 0),
    currency char(3) NOT NULL,
    PRIMARY KEY (lot_id, id)
)
""")
    op.execute("""CREATE INDEX reservation_changes_reservation_idx ON reservation_changes (reservation_id, created_at);
""")


    op.execute("""
CREATE TABLE sensor_mappings (
    lot_id uuid NOT NULL REFERENCES lots(id) ON DELETE CASCADE,
    sensor_id text NOT NULL CHECK (length(sensor_id) BETWEEN 1 AND 100),
    spot_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (lot_id, sensor_id),
    FOREIGN KEY (lot_id, spot_id) REFERENCES spots(lot_id, id) ON DELETE CASCADE
)
""")
    op.execute("""
CREATE TABLE pass_subscriptions (
    lot_id uuid NOT NULL REFERENCES lots(id) ON DELETE CASCADE,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    plate_hash bytea NOT NULL,
    spot_type text,
    price_amount bigint NOT NULL CHECK (price_amount >= 0),
    currency char(3) NOT NULL,
    payment_method text NOT NULL,
    status text NOT NULL CHECK (status IN ('active', 'cancelled', 'lapsed')),
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    current_month date NOT NULL CHECK (extract(day FROM current_month) = 1),
    notice text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (lot_id, id)
)
""")
    op.execute("CREATE INDEX pass_subscriptions_user_idx ON pass_subscriptions (user_id)")
    op.execute("CREATE INDEX pass_subscriptions_due_idx ON pass_subscriptions (current_month) WHERE status = 'active'")
    op.execute("ALTER TABLE monthly_passes ADD COLUMN paid_at timestamptz, ADD COLUMN subscription_id uuid")
    op.execute("UPDATE monthly_passes SET paid_at = created_at")


def downgrade() -> None:
    op.execute("ALTER TABLE monthly_passes DROP COLUMN IF EXISTS paid_at, DROP COLUMN IF EXISTS subscription_id")
    op.execute("DROP TABLE IF EXISTS pass_subscriptions")
    op.execute("DROP TABLE IF EXISTS sensor_mappings")
    op.execute("DROP TABLE IF EXISTS reservation_changes")
