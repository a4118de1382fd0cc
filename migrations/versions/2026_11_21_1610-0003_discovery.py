"""Discovery: per (lot, level, spot type) spot counts kept by triggers, a fee flag on lots.

Search and the H3 heatmap need the in-service capacity of many lots per spot type; counting
`spots` rows for every candidate lot would cost hundreds of rows per lot per request. The counts
are maintained by statement-level triggers (so COPY bulk loads are covered too) that recompute the
touched lots, and lots.capacity follows the number of spots.

Revision ID: 0003_discovery
Revises: 0001
Create Date: 2026-11-21 16:10:00
"""

from alembic import op

revision = "0003_discovery"
down_revision = "0001"
branch_labels = None
depends_on = None

REFRESH_FUNCTION = """
CREATE FUNCTION lot_spot_counts_refresh(lot_ids uuid[]) RETURNS void LANGUAGE sql AS $$
    DELETE FROM lot_spot_counts WHERE lot_id = ANY(lot_ids);
    INSERT INTO lot_spot_counts (lot_id, level_id, spot_type, in_service, total)
        SELECT lot_id, level_id, type, count(*) FILTER (WHERE status = 'in_service'), count(*)
        FROM spots WHERE lot_id = ANY(lot_ids) GROUP BY lot_id, level_id, type;
    UPDATE lots l SET capacity = c.total, updated_at = now()
        FROM (SELECT x.id, coalesce((SELECT sum(total) FROM lot_spot_counts s WHERE s.lot_id = x.id), 0) AS total
              FROM unnest(lot_ids) AS x(id)) c
        WHERE l.id = c.id AND l.capacity IS DISTINCT FROM c.total;
$$
"""

TRIGGER_FUNCTIONS = {
    "insert": "SELECT array_agg(DISTINCT lot_id) FROM new_spots",
    "delete": "SELECT array_agg(DISTINCT lot_id) FROM old_spots",
    "update": "SELECT array_agg(DISTINCT lot_id) FROM (SELECT lot_id FROM new_spots UNION SELECT lot_id FROM old_spots) u",
}


def _trigger_function(event: str) -> str:
    return f"""
CREATE FUNCTION lot_spot_counts_on_{event}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE ids uuid[];
BEGIN
    {TRIGGER_FUNCTIONS[event]} INTO ids;
    IF ids IS NOT NULL THEN PERFORM lot_spot_counts_refresh(ids); END IF;
    RETURN NULL;
END $$
"""


def _trigger(event: str) -> str:
    tables = {"insert": "NEW TABLE AS new_spots", "delete": "OLD TABLE AS old_spots",
              "update": "NEW TABLE AS new_spots OLD TABLE AS old_spots"}[event]
    return (f"CREATE TRIGGER spots_counts_{event} AFTER {event.upper()} ON spots REFERENCING {tables} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION lot_spot_counts_on_{event}()")


def upgrade() -> None:
    op.execute("""
CREATE TABLE lot_spot_counts (
    lot_id uuid NOT NULL REFERENCES lots(id) ON DELETE CASCADE,
    level_id uuid NOT NULL,
    spot_type text NOT NULL,
    in_service integer NOT NULL CHECK (in_service >= 0),
    total integer NOT NULL CHECK (total >= in_service),
    PRIMARY KEY (lot_id, level_id, spot_type)
)""")
    op.execute("ALTER TABLE lots ADD COLUMN fee boolean")
    op.execute("CREATE INDEX lots_open_location_gist ON lots USING gist (location) WHERE status = 'open'")
    op.execute(REFRESH_FUNCTION)
    for event in ("insert", "delete", "update"):
        op.execute(_trigger_function(event))
        op.execute(_trigger(event))
    op.execute("SELECT lot_spot_counts_refresh(array_agg(id)) FROM lots HAVING count(*) > 0")


def downgrade() -> None:
    for event in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER IF EXISTS spots_counts_{event} ON spots")
        op.execute(f"DROP FUNCTION IF EXISTS lot_spot_counts_on_{event}()")
    op.execute("DROP FUNCTION IF EXISTS lot_spot_counts_refresh(uuid[])")
    op.execute("DROP INDEX IF EXISTS lots_open_location_gist")
    op.execute("ALTER TABLE lots DROP COLUMN IF EXISTS fee")
    op.execute("DROP TABLE IF EXISTS lot_spot_counts")
