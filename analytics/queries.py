"""SQL of the occupancy history and the stored forecasts (bound parameters only)."""

from __future__ import annotations

from sqlalchemy import text

#: lots of the run: all of them when :lots is NULL
_LOTS = "(CAST(:lots AS uuid[]) IS NULL OR {col} = ANY(CAST(:lots AS uuid[])))"

# Occupancy of every (lot, spot type, 15-minute bucket) in [:t0, :t1): the time-averaged number of occupied
# spots. A spot with a bay sensor that reported in the range (or the day before it) is occupied when its sensor
# says so; every other spot is occupied while a parking session holds it (sessions without a spot count for the
# spot type of their reservation, else regular). Sessions still open count until :now. Every (lot, type) with
# in-service spots gets a row per bucket, zero when nothing was parked. Idempotent: re-running a range rewrites
# the same rows.
UPSERT_15M = text(f"""
WITH buckets AS (
    SELECT b FROM generate_series(CAST(:t0 AS timestamptz), CAST(:t1 AS timestamptz) - interval '15 minutes',
                                  interval '15 minutes') AS b
),
caps AS (
    SELECT lot_id, spot_type, sum(in_service)::integer AS capacity
    FROM lot_spot_counts WHERE {_LOTS.format(col="lot_id")}
    GROUP BY lot_id, spot_type HAVING sum(in_service) > 0
),
sensor_spots AS (
    SELECT sn.lot_id, sn.id AS sensor_id, sn.spot_id, sp.type AS spot_type
    FROM sensors sn JOIN spots sp ON sp.lot_id = sn.lot_id AND sp.id = sn.spot_id
    WHERE sn.spot_id IS NOT NULL AND {_LOTS.format(col="sn.lot_id")}
      AND EXISTS (SELECT 1 FROM sensor_events e WHERE e.lot_id = sn.lot_id AND e.sensor_id = sn.id AND e.accepted
                  AND e.occurred_at >= CAST(:t0 AS timestamptz) - interval '1 day' AND e.occurred_at < :t1)
),
sensor_iv AS (
    SELECT lot_id, spot_type, a, z FROM (
        SELECT e.lot_id, ss.spot_type, e.state, e.occurred_at AS a,
               coalesce(lead(e.occurred_at) OVER (PARTITION BY e.lot_id, e.sensor_id ORDER BY e.occurred_at),
                        CAST(:now AS timestamptz)) AS z
        FROM sensor_events e JOIN sensor_spots ss ON ss.lot_id = e.lot_id AND ss.sensor_id = e.sensor_id
        WHERE e.accepted AND e.occurred_at >= CAST(:t0 AS timestamptz) - interval '1 day' AND e.occurred_at < :t1
    ) x WHERE state = 'occupied' AND z > a
),
session_iv AS (
    SELECT s.lot_id, coalesce(sp.type, r.vehicle_type, 'regular') AS spot_type, s.entered_at AS a,
           coalesce(s.exited_at, CAST(:now AS timestamptz)) AS z
    FROM parking_sessions s
    LEFT JOIN spots sp ON sp.lot_id = s.lot_id AND sp.id = s.spot_id
    LEFT JOIN reservations r ON r.lot_id = s.lot_id AND r.id = s.reservation_id
    WHERE {_LOTS.format(col="s.lot_id")} AND s.entered_at < :t1
      AND coalesce(s.exited_at, CAST(:now AS timestamptz)) > :t0
      AND NOT EXISTS (SELECT 1 FROM sensor_spots ss WHERE ss.lot_id = s.lot_id AND ss.spot_id = s.spot_id)
),
intervals AS (
    SELECT lot_id, spot_type, a, z, 'sessions' AS source FROM session_iv
    UNION ALL
    SELECT lot_id, spot_type, a, z, 'sensors' FROM sensor_iv
),
occupied AS (
    SELECT i.lot_id, b.b AS bucket, i.spot_type,
           sum(extract(epoch FROM least(i.z, b.b + interval '15 minutes') - greatest(i.a, b.b))) / 900.0 AS occ,
           bool_or(i.source = 'sensors') AS sensed
    FROM intervals i JOIN buckets b ON i.a < b.b + interval '15 minutes' AND i.z > b.b
    GROUP BY i.lot_id, b.b, i.spot_type
)
INSERT INTO occupancy_15m AS o (lot_id, bucket, spot_type, occupied, capacity, source, computed_at)
SELECT c.lot_id, b.b, c.spot_type, least(coalesce(x.occ, 0), c.capacity), c.capacity,
       CASE WHEN coalesce(x.sensed, false) THEN 'sensors' ELSE 'sessions' END, CAST(:now AS timestamptz)
FROM caps c CROSS JOIN buckets b
LEFT JOIN occupied x ON x.lot_id = c.lot_id AND x.bucket = b.b AND x.spot_type = c.spot_type
ON CONFLICT (lot_id, bucket, spot_type) DO UPDATE
    SET occupied = EXCLUDED.occupied, capacity = EXCLUDED.capacity, source = EXCLUDED.source,
        computed_at = EXCLUDED.computed_at
""")

# Hourly rollups of the hours touched by [:t0, :t1) (whole hours, from the 15-minute rows).
UPSERT_HOURLY = text(f"""
INSERT INTO occupancy_hourly AS h (lot_id, hour, spot_type, occupied_avg, occupied_max, capacity, computed_at)
SELECT lot_id, date_trunc('hour', bucket), spot_type, avg(occupied), max(occupied), max(capacity),
       CAST(:now AS timestamptz)
FROM occupancy_15m
WHERE bucket >= date_trunc('hour', CAST(:t0 AS timestamptz))
  AND bucket < date_trunc('hour', CAST(:t1 AS timestamptz) - interval '1 microsecond') + interval '1 hour'
  AND {_LOTS.format(col="lot_id")}
GROUP BY lot_id, date_trunc('hour', bucket), spot_type
ON CONFLICT (lot_id, hour, spot_type) DO UPDATE
    SET occupied_avg = EXCLUDED.occupied_avg, occupied_max = EXCLUDED.occupied_max, capacity = EXCLUDED.capacity,
        computed_at = EXCLUDED.computed_at
""")

PRUNE_15M = text("DELETE FROM occupancy_15m WHERE bucket < :cutoff")
PRUNE_SENSOR_EVENTS = text("DELETE FROM sensor_events WHERE occurred_at < :cutoff")

# One series per lot (all spot types together), as the forecasts use it.
LOT_SERIES = text(f"""
SELECT lot_id, bucket, sum(occupied)::float8 AS occupied, sum(capacity)::integer AS capacity
FROM occupancy_15m
WHERE bucket >= :t0 AND bucket < :t1 AND {_LOTS.format(col="lot_id")}
GROUP BY lot_id, bucket
ORDER BY lot_id, bucket
""")

LOT_CAPACITIES = text(f"""
SELECT id AS lot_id, capacity FROM lots WHERE status = 'open' AND capacity > 0 AND {_LOTS.format(col="id")}
""")

LATEST_BUCKET = text("SELECT max(bucket) FROM occupancy_15m")

SAVE_MODEL = text("""
INSERT INTO forecast_models (name, trained_at, body, metrics) VALUES (:name, :trained_at, :body, CAST(:metrics AS jsonb))
ON CONFLICT (name) DO UPDATE SET trained_at = EXCLUDED.trained_at, body = EXCLUDED.body, metrics = EXCLUDED.metrics
""")
LOAD_MODEL = text("SELECT trained_at, body, metrics FROM forecast_models WHERE name = :name")

# asyncpg (the refresh writes with COPY on the raw connection): $1 until, $2 lots or NULL for all
REPLACE_FORECASTS_BEFORE = ("DELETE FROM forecasts WHERE vehicle_type = 'all' AND at < $1"
                            " AND ($2::uuid[] IS NULL OR lot_id = ANY($2::uuid[]))")
FORECAST_COLUMNS = ["lot_id", "vehicle_type", "at", "occupancy", "low", "high", "model", "trained_at", "generated_at"]

FORECASTS_VERSION = text("SELECT max(generated_at) FROM forecasts")

READ_FORECAST = text("""
SELECT at, occupancy, low, high, model, trained_at FROM forecasts
WHERE lot_id = :lot_id AND vehicle_type = 'all' AND at >= :t0 AND at < :t1 ORDER BY at
""")

ALL_FORECASTS = text("""
SELECT lot_id, at, occupancy FROM forecasts
WHERE vehicle_type = 'all' AND at >= :t0 AND at < :t1 ORDER BY lot_id, at
""")

LOT_EXISTS = text("SELECT 1 FROM lots WHERE id = :lot_id")
