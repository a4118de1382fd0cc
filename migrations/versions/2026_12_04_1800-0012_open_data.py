"""Open data: what OpenStreetMap says about a car park, and a change number for the partner feeds.

- lots.osm_geometry: the car park's outline from OSM (a way or a multipolygon), kept as it was mapped; the lot's
  location stays a point inside it.
- lots.access (OSM `access`, NULL for operators' own lots) and lots.park_ride (OSM `park_ride`): the feeds leave
  out lots whose access is private or no, and publish park-and-ride.
- open_data_changes: a sequence that statement-level triggers advance when anything a feed shows may have changed
  (lots, spots, reservations and walk-ins, sensors). Each API worker reads its value (one cheap statement, at
  most about once a second) to know when to rebuild its feed snapshot. A sequence, not a row: advancing it takes
  no lock, so the booking and sensor write paths never queue behind one another on it. nextval is visible
  before the writer commits, so a reader that rebuilt too early rebuilds once more a moment later
  (geo/feed_snapshot.py).
- partner_webhooks, lot_alert_states, webhook_deliveries: partners' signed webhooks (Standard Webhooks) when a
  lot turns full, nearly full, closes or reopens. lot_alert_states holds each lot's last notified state, so a
  transition is detected once however many workers look (a conditional upsert); a delivery row is the outbox
  entry, its id the `webhook-id` a receiver deduplicates on, retried with backoff until delivered or given up.

Revision ID: 0012_open_data
Revises: 0014_planner_exports
Create Date: 2026-12-04 18:00:00
"""

from alembic import op

revision = "0012_open_data"
down_revision = "0014_planner_exports"
branch_labels = None
depends_on = None

TABLES = ("lots", "spots", "reservations", "sensors")
EVENTS = ("insert", "update", "delete")


WEBHOOKS = [
    """CREATE TABLE partner_webhooks (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        partner_id uuid NOT NULL REFERENCES partners(id) ON DELETE CASCADE,
        url text NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2000),
        secret text NOT NULL,
        previous_secret text,
        previous_secret_until timestamptz,
        events text[] NOT NULL,
        created_at timestamptz NOT NULL,
        disabled_at timestamptz
    )""",
    "CREATE INDEX partner_webhooks_partner_idx ON partner_webhooks (partner_id)",
    """CREATE TABLE lot_alert_states (
        lot_id uuid PRIMARY KEY REFERENCES lots(id) ON DELETE CASCADE,
        state text NOT NULL CHECK (state IN ('open','nearly_full','full','closed','unknown')),
        changed_at timestamptz NOT NULL
    )""",
    """CREATE TABLE webhook_deliveries (
        id text PRIMARY KEY,
        webhook_id uuid NOT NULL REFERENCES partner_webhooks(id) ON DELETE CASCADE,
        event text NOT NULL,
        payload jsonb NOT NULL,
        status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending','delivered','failed')),
        attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        next_attempt_at timestamptz NOT NULL,
        last_error text,
        created_at timestamptz NOT NULL,
        delivered_at timestamptz
    )""",
    "CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending'",
]


def upgrade() -> None:
    op.execute("ALTER TABLE lots ADD COLUMN osm_geometry geometry(Geometry, 4326)")
    op.execute("ALTER TABLE lots ADD COLUMN access text CHECK (access IS NULL OR length(access) <= 50)")
    op.execute("ALTER TABLE lots ADD COLUMN park_ride boolean")
    op.execute("CREATE SEQUENCE open_data_changes")
    op.execute("""
CREATE FUNCTION open_data_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('open_data_changes');
    RETURN NULL;
END $$""")
    for table in TABLES:
        for event in EVENTS:
            op.execute(f"CREATE TRIGGER {table}_open_data_{event} AFTER {event.upper()} ON {table} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION open_data_bump()")
    for statement in WEBHOOKS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS webhook_deliveries, lot_alert_states, partner_webhooks")
    for table in TABLES:
        for event in EVENTS:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_open_data_{event} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS open_data_bump()")
    op.execute("DROP SEQUENCE IF EXISTS open_data_changes")
    op.execute("ALTER TABLE lots DROP COLUMN IF EXISTS park_ride")
    op.execute("ALTER TABLE lots DROP COLUMN IF EXISTS access")
    op.execute("ALTER TABLE lots DROP COLUMN IF EXISTS osm_geometry")
