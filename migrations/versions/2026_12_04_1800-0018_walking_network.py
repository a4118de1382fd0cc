"""Walking network (pgRouting) and destinations.

walk_areas: one row per imported extract (its bbox); a re-import replaces every area its bbox meets, in one
transaction (rows below cascade). walk_nodes / walk_edges: the pedestrian graph in pgRouting's shape (bigint
ids, source, target, cost and reverse_cost in metres), split at junctions; a node's id is its OSM node id, so
two adjacent extracts join where they share a node. lot_walk_nodes: where each lot joins
the network (an amenity=parking_entrance node when the extract has one near the lot, else the nearest node).
destinations: named places from the extract and venues defined by operators, searched by name (pg_trgm).
destination_walks: walks from a destination to nearby lots, remembered for the network version they were
computed on (a re-import bumps walk_network_version, so older rows are recomputed on their next use).

Revision ID: 0018_walking_network
Revises: 0009_sensor_write_path
Create Date: 2026-12-04 18:00:00
"""

from alembic import op

revision = "0018_walking_network"
down_revision = "0009_sensor_write_path"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pgrouting")
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute("CREATE SEQUENCE walk_network_version")
    op.execute("""
        CREATE TABLE walk_areas (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            name text NOT NULL,
            bbox geometry(Polygon, 4326) NOT NULL,
            nodes integer NOT NULL DEFAULT 0,
            edges integer NOT NULL DEFAULT 0,
            imported_at timestamptz NOT NULL,
            version bigint NOT NULL DEFAULT nextval('walk_network_version')
        )""")
    op.execute("CREATE INDEX walk_areas_bbox_gist ON walk_areas USING gist (bbox)")
    op.execute("""
        CREATE TABLE walk_nodes (
            id bigint NOT NULL,
            area_id uuid NOT NULL REFERENCES walk_areas (id) ON DELETE CASCADE,
            entrance boolean NOT NULL DEFAULT false,
            geom geometry(Point, 4326) NOT NULL,
            PRIMARY KEY (area_id, id)
        )""")
    op.execute("CREATE INDEX walk_nodes_geom_gist ON walk_nodes USING gist (geom)")
    op.execute("CREATE INDEX walk_nodes_entrance_gist ON walk_nodes USING gist (geom) WHERE entrance")
    op.execute("""
        CREATE TABLE walk_edges (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            area_id uuid NOT NULL REFERENCES walk_areas (id) ON DELETE CASCADE,
            source bigint NOT NULL,
            target bigint NOT NULL,
            cost double precision NOT NULL CHECK (cost >= 0),
            reverse_cost double precision NOT NULL,
            osm_way_id bigint,
            geom geometry(LineString, 4326) NOT NULL
        )""")
    op.execute("CREATE INDEX walk_edges_geom_gist ON walk_edges USING gist (geom)")
    op.execute("CREATE INDEX walk_edges_area_idx ON walk_edges (area_id)")
    op.execute("""
        CREATE TABLE lot_walk_nodes (
            lot_id uuid PRIMARY KEY REFERENCES lots (id) ON DELETE CASCADE,
            area_id uuid NOT NULL REFERENCES walk_areas (id) ON DELETE CASCADE,
            node_id bigint NOT NULL,
            snap_m double precision NOT NULL CHECK (snap_m >= 0),
            via text NOT NULL CHECK (via IN ('entrance', 'nearest'))
        )""")
    op.execute("CREATE INDEX lot_walk_nodes_area_idx ON lot_walk_nodes (area_id)")
    op.execute("""
        CREATE TABLE destinations (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
            kind text NOT NULL,
            location geography(Point, 4326) NOT NULL,
            source text NOT NULL CHECK (source IN ('osm', 'operator')),
            area_id uuid REFERENCES walk_areas (id) ON DELETE CASCADE,
            osm_ref text,
            organisation_id uuid REFERENCES organisations (id),
            created_at timestamptz NOT NULL DEFAULT now(),
            CHECK ((source = 'osm') = (area_id IS NOT NULL))
        )""")
    op.execute("CREATE INDEX destinations_name_trgm ON destinations USING gin (lower(name) gin_trgm_ops)")
    op.execute("CREATE INDEX destinations_location_gist ON destinations USING gist (location)")
    op.execute("""
        CREATE TABLE destination_walks (
            destination_id uuid NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
            lot_id uuid NOT NULL REFERENCES lots (id) ON DELETE CASCADE,
            meters double precision CHECK (meters >= 0),
            within_m double precision NOT NULL,
            network_version bigint NOT NULL,
            PRIMARY KEY (destination_id, lot_id)
        )""")


def downgrade() -> None:
    for table in ("destination_walks", "destinations", "lot_walk_nodes", "walk_edges", "walk_nodes", "walk_areas"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("DROP SEQUENCE IF EXISTS walk_network_version")
    op.execute("DROP EXTENSION IF EXISTS pgrouting")
