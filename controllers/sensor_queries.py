"""SQL for sensors, live occupancy and snapshots: bound parameters only (SQLAlchemy Core text, or plain asyncpg SQL
for the ingestion hot path and the sweep that shares its controller-events insert)."""

from __future__ import annotations

from sqlalchemy import text

# Ingestion and the staleness sweep run on the raw asyncpg pool (ADR 0007): plain SQL, parameters by position.

CLAIM_EVENT_IDS = """
INSERT INTO sensor_event_ids (lot_id, event_id, received_at)
SELECT $1, e, $2 FROM unnest($3::text[]) AS e
ON CONFLICT DO NOTHING
RETURNING event_id
"""

# The sensors already known, locked in id order; the joined unnest keeps the lookup one index probe per id.
# Only the sensors are locked, in a query of their own, and their spots joined after: a batch that waited for
# another one's locks re-checks each locked row (EvalPlanQual), which re-ran the join with spots for every
# row and doubled PostgreSQL's CPU per event when two batches of one lot overlapped.
LOCK_SENSORS = """
WITH locked AS MATERIALIZED (
    SELECT se.id, se.state, se.state_since, se.last_seen_at, se.confidence, se.spot_id
    FROM sensors se
    WHERE se.lot_id = $1 AND se.id IN (SELECT unnest($2::text[]))
    ORDER BY se.id
    FOR UPDATE
)
SELECT locked.*, sp.level_id, sp.type AS spot_type
FROM locked LEFT JOIN spots sp ON sp.lot_id = $1 AND sp.id = locked.spot_id
"""

# A sensor's first event registers it to the spot an operator mapped it to (sensor_mappings), else to the spot whose
# label or id equals the sensor id; a sensor matching no spot is not registered (its events are rejected).
REGISTER_SENSORS = """
INSERT INTO sensors (lot_id, id, spot_id)
SELECT $1, m.sid, m.spot_id FROM (SELECT sid, coalesce(
    (SELECT sm.spot_id FROM sensor_mappings sm WHERE sm.lot_id = $1 AND sm.sensor_id = sid),
    (SELECT sp.id FROM spots sp WHERE sp.lot_id = $1 AND sp.label = sid),
    (SELECT sp.id FROM spots sp WHERE sp.lot_id = $1
       AND sp.id = CASE WHEN sid ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN sid::uuid END))
    AS spot_id FROM unnest($2::text[]) AS sid) m
WHERE m.spot_id IS NOT NULL
ON CONFLICT DO NOTHING
RETURNING id
"""

# Readings of sensors that are not mapped to a spot are rejected: their event ids are given back, so the same
# event is accepted once the sensor is mapped.
UNCLAIM_EVENT_IDS = "DELETE FROM sensor_event_ids WHERE lot_id = $1 AND event_id = ANY($2::text[])"

# An operator's explicit sensor -> spot mapping (by spot id or label); answers the spot, or nothing when the lot
# has no such spot. A sensor already registered to another spot keeps it (the caller answers 409).
SPOT_BY_ID_OR_LABEL = text(
    "SELECT sp.id, sp.label, lv.name AS level FROM spots sp JOIN levels lv ON lv.lot_id = sp.lot_id"
    " AND lv.id = sp.level_id WHERE sp.lot_id = :lot_id AND (sp.id = CAST(:spot_id AS uuid) OR sp.label = :label)")
SENSOR_SPOT = text("SELECT spot_id FROM sensors WHERE lot_id = :lot_id AND id = :sensor_id")
UPSERT_SENSOR_MAPPING = text(
    "INSERT INTO sensor_mappings (lot_id, sensor_id, spot_id, created_at) VALUES (:lot_id, :sensor_id, :spot_id, :now)"
    " ON CONFLICT (lot_id, sensor_id) DO UPDATE SET spot_id = EXCLUDED.spot_id, created_at = EXCLUDED.created_at")

UPDATE_SENSORS = """
UPDATE sensors se SET state = u.state, state_since = u.state_since, last_seen_at = u.last_seen_at,
                      confidence = u.confidence
FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::real[])
     AS u(id, state, state_since, last_seen_at, confidence)
WHERE se.lot_id = $1 AND se.id = u.id
"""

INSERT_SENSOR_EVENTS = """
INSERT INTO sensor_events (lot_id, event_id, sensor_id, state, confidence, occurred_at, received_at, accepted)
SELECT $1, e.event_id, e.sensor_id, e.state, e.confidence, e.occurred_at, $2, e.accepted
FROM unnest($3::text[], $4::text[], $5::text[], $6::real[], $7::timestamptz[], $8::boolean[])
     AS e(event_id, sensor_id, state, confidence, occurred_at, accepted)
ON CONFLICT DO NOTHING
"""

INSERT_CONTROLLER_EVENTS = """
INSERT INTO controller_events (lot_id, event_id, device_id, source, cds_event_type, occurred_at, received_at, payload)
SELECT $1, e.event_id, $3, 'sensor', e.cds, e.occurred_at, $2,
       jsonb_build_object('sensor_id', e.sensor_id, 'spot_id', e.spot_id)
FROM unnest($4::text[], $5::text[], $6::timestamptz[], $7::text[], $8::text[])
     AS e(event_id, cds, occurred_at, sensor_id, spot_id)
ON CONFLICT DO NOTHING
"""

# Sensors silent past their heartbeat become unknown (one statement: safe to run twice at once).
MARK_STALE = """
UPDATE sensors se SET state = 'unknown', state_since = $1::timestamptz
FROM sensors old LEFT JOIN spots sp ON sp.lot_id = old.lot_id AND sp.id = old.spot_id
WHERE se.lot_id = old.lot_id AND se.id = old.id
  AND se.state <> 'unknown'  -- rechecked on the locked row: a concurrent sweep changes nothing twice
  AND (se.last_seen_at IS NULL OR se.last_seen_at < $1::timestamptz - make_interval(secs => se.heartbeat_seconds))
  AND (old.last_seen_at IS NULL OR old.last_seen_at < $1::timestamptz - make_interval(secs => old.heartbeat_seconds))
  AND ($2::uuid IS NULL OR se.lot_id = $2::uuid)
RETURNING se.lot_id, se.id, old.state AS old_state, old.spot_id, sp.level_id, sp.type AS spot_type
"""

# Per level and spot type: in-service capacity, mapped sensors by state, and the newest reading.
OCCUPANCY_BY_GROUP = text("""
SELECT sp.level_id, sp.type AS spot_type,
       count(*) FILTER (WHERE sp.status = 'in_service') AS capacity,
       count(se.id) AS sensors,
       count(*) FILTER (WHERE se.state = 'occupied') AS occupied,
       count(*) FILTER (WHERE se.state = 'unknown') AS unknown,
       max(se.last_seen_at) AS as_of
FROM spots sp LEFT JOIN sensors se ON se.lot_id = sp.lot_id AND se.spot_id = sp.id
WHERE sp.lot_id = :lot_id
GROUP BY sp.level_id, sp.type
""")

LEVELS = text("SELECT id, name, ordinal FROM levels WHERE lot_id = :lot_id ORDER BY ordinal")

LOT_EXISTS = text("SELECT 1 FROM lots WHERE id = :lot_id")

LOTS_WITH_SENSORS = text("SELECT DISTINCT lot_id FROM sensors")

INSERT_SNAPSHOT = text("""
INSERT INTO occupancy_snapshots (lot_id, taken_at, spot_type, occupied, capacity, source, by_level)
VALUES (:lot_id, :taken_at, :spot_type, :occupied, :capacity, :source, CAST(:by_level AS jsonb))
ON CONFLICT (lot_id, taken_at, spot_type) DO NOTHING
""")

PRUNE_EVENT_IDS = text("DELETE FROM sensor_event_ids WHERE received_at < :before")

RECORD_MQTT_GATE_EVENT = text("""
INSERT INTO mqtt_gate_inbox (lot_id, event_id, gate_id, payload, received_at)
VALUES (:lot_id, :event_id, :gate_id, CAST(:payload AS jsonb), :now)
ON CONFLICT DO NOTHING
""")
