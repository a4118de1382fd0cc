"""SQL of the open data feeds and the OpenStreetMap import: bound parameters only.

The feed snapshot reads the whole city in three statements on the raw asyncpg pool (positional parameters):
the published lots, the busy spots of the current slot, and the sensor readings of lots that have sensors.
"""

from __future__ import annotations

from sqlalchemy import text

from geo.queries import ACTIVE_STATUSES

# Advanced by statement triggers on lots, spots, reservations and sensors (migration 0012).
CHANGE_NUMBER = "SELECT last_value, is_called FROM open_data_changes"

# Every lot a partner may see: private or no-access car parks are not published.
FEED_LOTS = """
SELECT l.id, l.name, l.address, ST_Y(l.location::geometry) AS lat, ST_X(l.location::geometry) AS lng, l.timezone,
       l.kind, l.amenities, l.opening_hours, l.height_limit_cm, l.status, l.fee, l.external_ref, l.capacity,
       l.spots_in_service, l.park_ride, l.updated_at,
       CASE WHEN l.osm_geometry IS NULL THEN NULL ELSE ST_AsGeoJSON(l.osm_geometry, 7) END AS outline,
       EXISTS (SELECT 1 FROM gates g WHERE g.lot_id = l.id AND g.direction = 'entry') AS has_entry_gate
FROM lots l
WHERE l.access IS NULL OR l.access NOT IN ('private', 'no')
ORDER BY l.id
"""

# Busy in-service spots per lot and type now ($1-$2: the current 15-minute slot): bookings and walk-ins, which gate
# entries create.
BUSY_NOW = f"""
SELECT r.lot_id, s.type, count(DISTINCT r.spot_id) AS busy
FROM reservations r JOIN spots s ON s.lot_id = r.lot_id AND s.id = r.spot_id
WHERE r.status IN {ACTIVE_STATUSES} AND s.status = 'in_service'
  AND r.period && tstzrange($1::timestamptz, $2::timestamptz, '[)')
GROUP BY r.lot_id, s.type
"""

# Per lot with mapped sensors and spot type: in-service spots, their sensors by state, the newest reading. A sensor
# silent past its own heartbeat ($1 = now) counts as unknown even before the sweep marks it.
SENSOR_GROUPS = """
SELECT sp.lot_id, sp.type AS spot_type,
       count(*) AS capacity,
       count(se.id) AS sensors,
       count(se.id) FILTER (WHERE se.state = 'occupied'
                            AND se.last_seen_at >= $1::timestamptz - make_interval(secs => se.heartbeat_seconds))
           AS occupied,
       count(se.id) FILTER (WHERE se.state = 'unknown' OR se.last_seen_at IS NULL
                            OR se.last_seen_at < $1::timestamptz - make_interval(secs => se.heartbeat_seconds))
           AS unknown,
       max(se.last_seen_at) AS as_of
FROM spots sp LEFT JOIN sensors se ON se.lot_id = sp.lot_id AND se.spot_id = sp.id
WHERE sp.status = 'in_service'
  AND sp.lot_id IN (SELECT DISTINCT lot_id FROM sensors WHERE spot_id IS NOT NULL)
GROUP BY sp.lot_id, sp.type
"""

# --- OpenStreetMap import -------------------------------------------------------------------------

OSM_LOTS_BY_REF = text("""
SELECT l.id, l.external_ref, l.name, l.address, ST_Y(l.location::geometry) AS lat, ST_X(l.location::geometry) AS lng,
       l.kind, l.opening_hours, l.height_limit_cm, l.fee, l.access, l.park_ride, l.spots_in_service, l.amenities,
       CASE WHEN l.osm_geometry IS NULL THEN NULL ELSE ST_AsText(l.osm_geometry) END AS outline_wkt
FROM lots l WHERE l.external_ref = ANY(CAST(:refs AS text[]))
FOR UPDATE
""")

SET_OSM_FIELDS = text("""
UPDATE lots SET osm_geometry = CASE WHEN CAST(:wkt AS text) IS NULL THEN NULL
                                    ELSE ST_GeomFromText(CAST(:wkt AS text), 4326) END,
                access = :access, park_ride = :park_ride, updated_at = :now
WHERE id = :lot_id
""")

UPDATE_OSM_LOT = text("""
UPDATE lots SET name = :name, address = :address,
       location = ST_SetSRID(ST_MakePoint(CAST(:lng AS float8), CAST(:lat AS float8)), 4326)::geography,
       h3_r7 = :h3_r7, h3_r9 = :h3_r9, kind = :kind, amenities = CAST(:amenities AS text[]),
       opening_hours = :opening_hours, height_limit_cm = :height_limit_cm, fee = :fee, updated_at = :now
WHERE id = :lot_id
""")

SET_ACCESS = text("UPDATE lots SET access = :access, updated_at = :now WHERE id = :lot_id")

FIRST_LEVEL = text("SELECT id, name, ordinal FROM levels WHERE lot_id = :lot_id ORDER BY ordinal LIMIT 1")

# The last in-service spots of one type (highest numbers first), taken out of service when OSM lowers a capacity.
RETIRE_SPOTS = text("""
UPDATE spots SET status = 'out_of_service'
WHERE lot_id = :lot_id AND id IN (
    SELECT id FROM spots WHERE lot_id = :lot_id AND type = :type AND status = 'in_service'
    ORDER BY idx DESC LIMIT :n)
""")

# Spots of one type put back in service (lowest numbers first) before new ones are added.
RESTORE_SPOTS = text("""
UPDATE spots SET status = 'in_service'
WHERE lot_id = :lot_id AND id IN (
    SELECT id FROM spots WHERE lot_id = :lot_id AND type = :type AND status = 'out_of_service'
    ORDER BY idx LIMIT :n)
""")

# --- partner webhooks ----------------------------------------------------------------------------------

# Alert states: read all without a lock; the lots whose state differs are then locked (in id order), so a second
# worker looking at once waits and reads the state the first one wrote; the upsert changes only what differs.
ALERT_STATES = "SELECT lot_id, state FROM lot_alert_states"

LOCK_ALERT_STATES = """
SELECT lot_id, state FROM lot_alert_states WHERE lot_id = ANY($1::uuid[]) ORDER BY lot_id FOR UPDATE
"""

UPSERT_ALERT_STATES = """
INSERT INTO lot_alert_states (lot_id, state, changed_at)
SELECT lot_id, state, $3 FROM unnest($1::uuid[], $2::text[]) AS s(lot_id, state) ORDER BY lot_id
ON CONFLICT (lot_id) DO UPDATE SET state = EXCLUDED.state, changed_at = EXCLUDED.changed_at
WHERE lot_alert_states.state <> EXCLUDED.state
RETURNING lot_id, state
"""

ACTIVE_WEBHOOKS = """
SELECT w.id, w.events FROM partner_webhooks w JOIN partners p ON p.id = w.partner_id
WHERE w.disabled_at IS NULL AND p.revoked_at IS NULL
"""

INSERT_DELIVERIES = """
INSERT INTO webhook_deliveries (id, webhook_id, event, payload, next_attempt_at, created_at)
SELECT d.id, d.webhook_id, d.event, d.payload::jsonb, $5, $5
FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[]) AS d(id, webhook_id, event, payload)
"""

# Claim due deliveries ($1 now, $2 lease end, $3 how many): moved past the lease so a crashed sender's claim
# comes due again, and skipped by other senders meanwhile.
CLAIM_DELIVERIES = """
UPDATE webhook_deliveries d SET next_attempt_at = $2, attempts = d.attempts + 1
FROM partner_webhooks w
WHERE d.webhook_id = w.id AND d.id IN (
    SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1
    ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
RETURNING d.id, d.event, d.payload::text AS payload, d.attempts, d.created_at, w.url, w.secret, w.previous_secret,
          w.previous_secret_until
"""

DELIVERED = "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = $2, last_error = NULL WHERE id = $1"

RETRY_LATER = """
UPDATE webhook_deliveries SET next_attempt_at = $2, last_error = $3,
       status = CASE WHEN attempts >= $4 THEN 'failed' ELSE 'pending' END
WHERE id = $1
"""

INSERT_WEBHOOK = text("""
INSERT INTO partner_webhooks (partner_id, url, secret, events, created_at)
SELECT id, :url, :secret, CAST(:events AS text[]), :now FROM partners WHERE id = :partner_id AND revoked_at IS NULL
RETURNING id
""")

ROTATE_WEBHOOK_SECRET = text("""
UPDATE partner_webhooks SET previous_secret = secret, previous_secret_until = :until, secret = :secret
WHERE id = :webhook_id AND disabled_at IS NULL
RETURNING id
""")

LIST_WEBHOOKS = text("""
SELECT w.id, w.partner_id, w.url, w.events, w.created_at, w.disabled_at,
       count(d.id) FILTER (WHERE d.status = 'pending') AS pending,
       count(d.id) FILTER (WHERE d.status = 'failed') AS failed
FROM partner_webhooks w LEFT JOIN webhook_deliveries d ON d.webhook_id = w.id
WHERE CAST(:partner_id AS uuid) IS NULL OR w.partner_id = CAST(:partner_id AS uuid)
GROUP BY w.id ORDER BY w.created_at
""")
