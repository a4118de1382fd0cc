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

Revision ID: 0012_open_data
Revises: 0009_sensor_write_path
Create Date: 2026-12-04 18:00:00
"""

from alembic import op

revision = "0012_open_data"
down_revision = "0009_sensor_write_path"
branch_labels = None
depends_on = None

TABLES = ("lots", "spots", "reservations", "sensors")
EVENTS = ("insert", "update", "delete")


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


def downgrade() -> None:
    for table in TABLES:
        for event in EVENTS:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_open_data_{event} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS open_data_bump()")
    op.execute("DROP SEQUENCE IF EXISTS open_data_changes")
    op.execute("ALTER TABLE lots DROP COLUMN IF EXISTS park_ride")
    op.execute("ALTER TABLE lots DROP COLUMN IF EXISTS access")
    op.execute("ALTER TABLE lots DROP COLUMN IF EXISTS osm_geometry")
