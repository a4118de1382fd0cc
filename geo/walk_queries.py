"""SQL of the walking network and destinations (asyncpg, bound parameters)."""

DELETE_OVERLAPPING_AREAS = """
WITH gone AS (
    DELETE FROM walk_areas WHERE bbox && ST_MakeEnvelope($1, $2, $3, $4, 4326) RETURNING 1)
SELECT count(*) FROM gone
"""

INSERT_AREA = """
INSERT INTO walk_areas (id, name, bbox, nodes, edges, imported_at)
VALUES ($1, $2, ST_MakeEnvelope($3, $4, $5, $6, 4326), $7, $8, $9)
"""

CREATE_STAGES = """
CREATE TEMP TABLE walk_node_stage (id bigint, entrance boolean, lng float8, lat float8) ON COMMIT DROP;
CREATE TEMP TABLE walk_edge_stage (source bigint, target bigint, cost float8, osm_way_id bigint, wkt text) ON COMMIT DROP;
CREATE TEMP TABLE destination_stage (name text, kind text, lng float8, lat float8, osm_ref text) ON COMMIT DROP;
"""

NODES_FROM_STAGE = """
INSERT INTO walk_nodes (id, area_id, entrance, geom)
SELECT id, $1, entrance, ST_SetSRID(ST_MakePoint(lng, lat), 4326) FROM walk_node_stage
"""

EDGES_FROM_STAGE = """
INSERT INTO walk_edges (area_id, source, target, cost, reverse_cost, osm_way_id, geom)
SELECT $1, source, target, cost, cost, nullif(osm_way_id, 0), ST_GeomFromText(wkt, 4326) FROM walk_edge_stage
"""

DESTINATIONS_FROM_STAGE = """
INSERT INTO destinations (name, kind, location, source, area_id, osm_ref)
SELECT name, kind, ST_SetSRID(ST_MakePoint(lng, lat), 4326)::geography, 'osm', $1, osm_ref FROM destination_stage
"""

# Where lots meet the network: for every lot within 300 m of the area's bbox (or the lots named by $3), an
# entrance node within $2 metres, else the nearest node of the area.
_JOIN = """
WITH joined AS (
    INSERT INTO lot_walk_nodes (lot_id, area_id, node_id, snap_m, via)
    SELECT l.id, j.area_id, j.id, j.snap_m, j.via
      FROM lots l
      CROSS JOIN LATERAL (
          SELECT c.* FROM (
              (SELECT n.id, n.area_id, ST_Distance(n.geom::geography, l.location) AS snap_m, 'entrance' AS via, 0 AS pref
                 FROM walk_nodes n WHERE n.entrance AND {node_filter}
                ORDER BY n.geom <-> l.location::geometry LIMIT 1)
              UNION ALL
              (SELECT n.id, n.area_id, ST_Distance(n.geom::geography, l.location), 'nearest', 1
                 FROM walk_nodes n WHERE {node_filter}
                ORDER BY n.geom <-> l.location::geometry LIMIT 1)
          ) c
          WHERE c.via = 'nearest' OR c.snap_m <= $2
          ORDER BY c.pref LIMIT 1) j
     WHERE {lot_filter}
    ON CONFLICT (lot_id) DO UPDATE
       SET area_id = excluded.area_id, node_id = excluded.node_id, snap_m = excluded.snap_m, via = excluded.via
    RETURNING 1)
SELECT count(*) FROM joined
"""

JOIN_LOTS = _JOIN.format(
    node_filter="n.area_id = $1",
    lot_filter="ST_DWithin(l.location, (SELECT bbox FROM walk_areas WHERE id = $1)::geography, 300)")

# Lots created after their area was imported join on first use: the nearest node of any area within 500 m.
JOIN_LOTS_BY_ID = _JOIN.format(
    node_filter="ST_DWithin(n.geom::geography, l.location, 500) AND $1::uuid IS NULL",
    lot_filter="l.id = ANY($3::uuid[]) AND NOT EXISTS (SELECT 1 FROM lot_walk_nodes w WHERE w.lot_id = l.id)")

NEAREST_NODE = """
SELECT n.id, ST_Distance(n.geom::geography, ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography) AS snap_m
  FROM walk_nodes n
 ORDER BY n.geom <-> ST_SetSRID(ST_MakePoint($1, $2), 4326)
 LIMIT 1
"""

LOT_NODES = "SELECT lot_id, node_id, snap_m FROM lot_walk_nodes WHERE lot_id = ANY($1::uuid[])"

# One one-to-many shortest-path query per search. The graph is cut to the envelope of the maximum walk around
# the destination: a path no longer than that never leaves it. The envelope's numbers are floats bound as
# parameters and turned into text by PostgreSQL, never by Python.
WALK_COSTS = """
SELECT end_vid AS node_id, agg_cost AS meters
  FROM pgr_dijkstraCost(
        'SELECT id, source, target, cost, reverse_cost FROM walk_edges WHERE geom && ST_MakeEnvelope('
            || $3::float8::text || ',' || $4::float8::text || ',' || $5::float8::text || ','
            || $6::float8::text || ', 4326)',
        $1::bigint, $2::bigint[], directed => false)
"""

SEARCH_DESTINATIONS = """
SELECT id, name, kind, source, ST_Y(location::geometry) AS lat, ST_X(location::geometry) AS lng,
       CASE WHEN $2::float8 IS NULL THEN NULL
            ELSE ST_Distance(location, ST_SetSRID(ST_MakePoint($3, $2), 4326)::geography) END AS distance_m
  FROM destinations
 WHERE lower(name) LIKE $1 ESCAPE '\\' OR lower(name) % $4
 ORDER BY (lower(name) LIKE $5 ESCAPE '\\') DESC,
          CASE WHEN $2::float8 IS NULL THEN 0
               ELSE ST_Distance(location, ST_SetSRID(ST_MakePoint($3, $2), 4326)::geography) END,
          similarity(lower(name), $4) DESC, name, id
 LIMIT $6
"""

INSERT_VENUE = """
INSERT INTO destinations (name, kind, location, source, organisation_id)
VALUES ($1, $2, ST_SetSRID(ST_MakePoint($4, $3), 4326)::geography, 'operator', $5)
RETURNING id, name, kind, source, ST_Y(location::geometry) AS lat, ST_X(location::geometry) AS lng,
          NULL::float8 AS distance_m
"""

AREAS = "SELECT id, name, nodes, edges, imported_at FROM walk_areas ORDER BY imported_at"

NETWORK_VERSION = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM walk_network_version"

# Walks remembered for a destination: rows of the current network version computed at least as far as asked.
REMEMBERED_WALKS = """
SELECT lot_id, meters FROM destination_walks
 WHERE destination_id = $1 AND lot_id = ANY($2::uuid[]) AND network_version = $3 AND within_m >= $4
"""

REMEMBER_WALKS = """
INSERT INTO destination_walks (destination_id, lot_id, meters, within_m, network_version)
SELECT $1, w.lot_id, w.meters, $4, $5 FROM unnest($2::uuid[], $3::float8[]) AS w(lot_id, meters)
ON CONFLICT (destination_id, lot_id) DO UPDATE
   SET meters = excluded.meters, within_m = excluded.within_m, network_version = excluded.network_version
"""

# A destination and the walks remembered for it on the current network version (one row per walk; one row with
# NULL lot_id when none): the whole of a remembered walking search's SQL besides the search itself.
DESTINATION_AND_WALKS = """
SELECT d.id, d.name, d.kind, d.source, ST_Y(d.location::geometry) AS lat, ST_X(d.location::geometry) AS lng,
       NULL::float8 AS distance_m, v.version, w.lot_id, w.meters
  FROM destinations d
 CROSS JOIN (SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS version FROM walk_network_version) v
  LEFT JOIN destination_walks w ON w.destination_id = d.id AND w.network_version = v.version AND w.within_m >= $2
 WHERE d.id = $1
"""
