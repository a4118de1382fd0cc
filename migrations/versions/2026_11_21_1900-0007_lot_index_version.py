"""Search: a change number for what the in-process lot index copies (lots and rate cards).

Each API worker keeps the open lots (place, H3 cell, capacity by type, filters, rate card) in memory for
search and polls this one row, at most about once a second, to know when to reload. Statement-level
triggers on lots and rate_cards write it, so COPY bulk loads and the spot-count triggers (which update
lots) are covered; a statement that changed no row leaves it alone. The row is written in the writer's
transaction, so a poller sees the new number only together with the rows that caused it. The value comes
from a sequence so it never repeats, even after the table is truncated.

Revision ID: 0007_lot_index_version
Revises: 0006_sensors
Create Date: 2026-11-21 19:00:00
"""

from alembic import op

revision = "0007_lot_index_version"
down_revision = "0006_sensors"
branch_labels = None
depends_on = None

TABLES = ("lots", "rate_cards")
TRANSITION = {"insert": "NEW TABLE AS changed", "update": "NEW TABLE AS changed", "delete": "OLD TABLE AS changed"}


def upgrade() -> None:
    op.execute("CREATE SEQUENCE lot_index_changes")
    op.execute("CREATE TABLE lot_index_version (one boolean PRIMARY KEY DEFAULT true CHECK (one), "
               "n bigint NOT NULL)")
    op.execute("INSERT INTO lot_index_version (n) VALUES (nextval('lot_index_changes'))")
    op.execute("""
CREATE FUNCTION lot_index_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM changed) THEN
        INSERT INTO lot_index_version (n) VALUES (nextval('lot_index_changes'))
        ON CONFLICT (one) DO UPDATE SET n = EXCLUDED.n;
    END IF;
    RETURN NULL;
END $$""")
    for table in TABLES:
        for event, transition in TRANSITION.items():
            op.execute(f"CREATE TRIGGER {table}_index_{event} AFTER {event.upper()} ON {table} "
                       f"REFERENCING {transition} FOR EACH STATEMENT EXECUTE FUNCTION lot_index_bump()")


def downgrade() -> None:
    for table in TABLES:
        for event in TRANSITION:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_index_{event} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS lot_index_bump()")
    op.execute("DROP TABLE IF EXISTS lot_index_version")
    op.execute("DROP SEQUENCE IF EXISTS lot_index_changes")
