"""Discovery: per (lot, level, spot type) spot counts kept by triggers, a fee flag on lots.

Search and the H3 heatmap need the in-service capacity of many lots per spot type; counting
`spots` rows for every candidate lot would cost hundreds of rows per lot per request. The counts
(and their per-type sums on lots.spots_in_service) are maintained by statement-level triggers (so COPY bulk loads are covered too) that recompute the
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
    UPDATE lots l SET capacity = c.total, spots_in_service = c.by_type
        FROM (SELECT x.id,
                     coalesce((SELECT sum(total) FROM lot_spot_counts s WHERE s.lot_id = x.id), 0) AS total,
                     ARRAY(SELECT coalesce((SELECT sum(s.in_service) FROM lot_spot_counts s
                                            WHERE s.lot_id = x.id AND s.spot_type = t.name), 0)::integer
                           FROM unnest(ARRAY['motorcycle','compact','regular','large','ev','handicap'])
                                WITH ORDINALITY AS t(name, n) ORDER BY t.n) AS by_type
              FROM unnest(lot_ids) AS x(id)) c
        WHERE l.id = c.id AND (l.capacity, l.spots_in_service) IS DISTINCT FROM (c.total, c.by_type);
$$
"""

# In-service spots a vehicle may use: `counts` and `usable` are in SPOT_TYPES order (motorcycle, compact,
# regular, large, ev, handicap); ev spots also count where the lot allows overflow and `ev_if_overflow` is 1.
# A one-SELECT IMMUTABLE SQL function, so the planner inlines it into search.
CAPACITY_FUNCTION = """
CREATE FUNCTION lot_usable_capacity(counts integer[], usable integer[], ev_overflow boolean, ev_if_overflow integer)
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT counts[1] * usable[1] + counts[2] * usable[2] + counts[3] * usable[3] + counts[4] * usable[4]
         + counts[5] * CASE WHEN usable[5] = 1 OR (ev_overflow AND ev_if_overflow = 1) THEN 1 ELSE 0 END
         + counts[6] * usable[6]
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
    op.execute("ALTER TABLE lots ADD COLUMN spots_in_service integer[] NOT NULL DEFAULT '{0,0,0,0,0,0}' "
               "CHECK (cardinality(spots_in_service) = 6)")
    op.execute(CAPACITY_FUNCTION)
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
    op.execute("DROP FUNCTION IF EXISTS lot_usable_capacity(integer[], integer[], boolean, integer)")
    op.execute("ALTER TABLE lots DROP COLUMN IF EXISTS spots_in_service")
    op.execute("DROP INDEX IF EXISTS lots_open_location_gist")
    op.execute("ALTER TABLE lots DROP COLUMN IF EXISTS fee")
    op.execute("DROP TABLE IF EXISTS lot_spot_counts")
