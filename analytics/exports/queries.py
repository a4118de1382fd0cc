"""SQL of planner exports (bound parameters only): the export jobs, the lots in scope, the hourly aggregates and
the session rows read from parking_sessions."""

from __future__ import annotations

from sqlalchemy import text

# --- jobs ------------------------------------------------------------------------------------------------------

INSERT_EXPORT = text(
    "INSERT INTO exports (user_id, params, status, progress, created_at, updated_at)"
    " VALUES (:user_id, CAST(:params AS jsonb), 'queued', 0, :now, :now) RETURNING id")

GET_EXPORT = text(
    "SELECT id, user_id, params, status, progress, rows, suppressed, path, bytes, error, created_at, started_at,"
    " finished_at, expires_at, purged_at FROM exports WHERE id = :id")

LIST_EXPORTS = text(
    "SELECT id, user_id, params, status, progress, rows, suppressed, path, bytes, error, created_at, started_at,"
    " finished_at, expires_at, purged_at FROM exports WHERE user_id = :user_id"
    " ORDER BY created_at DESC, id DESC LIMIT :limit")

# A queued job, or a running one whose worker stopped reporting progress (it died: tasks are acked late and
# redelivered, docs/adr/0019). A job already done or failed is never claimed again.
CLAIM_EXPORT = text(
    "UPDATE exports SET status = 'running', started_at = :now, updated_at = :now, progress = 0, rows = 0,"
    " suppressed = 0 WHERE id = :id AND (status = 'queued' OR (status = 'running' AND updated_at < :stale_before))"
    " RETURNING user_id, params")

PROGRESS_EXPORT = text(
    "UPDATE exports SET progress = :progress, rows = :rows, suppressed = :suppressed, updated_at = :now"
    " WHERE id = :id AND status = 'running'")

FINISH_EXPORT = text(
    "UPDATE exports SET status = 'done', progress = 1, rows = :rows, suppressed = :suppressed, path = :path,"
    " bytes = :bytes, finished_at = :now, updated_at = :now, expires_at = :expires_at"
    " WHERE id = :id AND status = 'running'")

FAIL_EXPORT = text(
    "UPDATE exports SET status = 'failed', error = :error, finished_at = :now, updated_at = :now"
    " WHERE id = :id AND status IN ('queued', 'running')")

# Finished files past their retention, oldest first; the sweeper deletes each file, then forgets its path.
EXPIRED_EXPORTS = text(
    "SELECT id, path FROM exports WHERE path IS NOT NULL AND expires_at <= :now ORDER BY expires_at LIMIT :batch")

FORGET_FILE = text("UPDATE exports SET path = NULL, purged_at = :now WHERE id = :id AND path = :path")

# For the export's transaction only: longer statements than the API's 15 s, and room to aggregate in memory
EXPORT_SETTINGS = text("SELECT set_config('statement_timeout', '120s', true), set_config('work_mem', '64MB', true)")

# --- scope ------------------------------------------------------------------------------------------------------

# Lots an export covers: an organisation's (operators) or any (planners), optionally some ids and a bbox.
LOTS_IN_SCOPE = text(
    "SELECT id, organisation_id, timezone, capacity, ST_Y(location::geometry) AS lat, ST_X(location::geometry) AS lng"
    " FROM lots"
    " WHERE (CAST(:org AS uuid) IS NULL OR organisation_id = CAST(:org AS uuid))"
    "   AND (CAST(:lot_ids AS uuid[]) IS NULL OR id = ANY(CAST(:lot_ids AS uuid[])))"
    "   AND (CAST(:w AS float8) IS NULL OR location::geometry"
    "        && ST_MakeEnvelope(CAST(:w AS float8), CAST(:s AS float8), CAST(:e AS float8), CAST(:n AS float8), 4326))"
    " ORDER BY id")

LOT_ORGANISATIONS = text("SELECT id, organisation_id FROM lots WHERE id = ANY(CAST(:lot_ids AS uuid[]))")

# --- occupancy: per place and local hour ---------------------------------------------------------------------------

# :lot_ids, :ranks, :tzs, :steps and :phases are parallel arrays: each lot's place (its rank in the export's place
# list), the place's timezone, and how to cut time there: into :steps-minute pieces starting :phases minutes past
# a UTC hour. 60 and the zone's minutes (0; 30 in India) cut at local hours; a zone whose offset changes its
# minutes within the period gets 15 and 0 (every offset is a whole number of quarter hours, so a quarter lies in
# one local hour). Sessions still open count up to :now. Pieces within [:from, :to) are summed per session and
# local hour (a repeated DST hour is one bucket), then per place and local hour: the sessions present, those
# that started in the hour, the seconds they occupied, and their whole dwell times (to :now for open ones).
# Only hours with a session come back; the caller fills the others with zeros.
PLACE_HOURS = text("""
WITH place AS (
    SELECT * FROM unnest(CAST(:lot_ids AS uuid[]), CAST(:ranks AS int[]), CAST(:tzs AS text[]),
                         CAST(:steps AS int[]), CAST(:phases AS int[])) AS p(lot_id, rank, tz, step, phase)
), s AS (
    SELECT p.rank, p.tz, make_interval(mins => p.step) AS step,
           TIMESTAMPTZ '2000-01-01 00:00:00+00' + make_interval(mins => p.phase) AS origin,
           ps.entered_at AS a, least(coalesce(ps.exited_at, :now), :now) AS b
    FROM place p JOIN parking_sessions ps ON ps.lot_id = p.lot_id
    WHERE ps.entered_at < :to AND ps.entered_at < :now AND (ps.exited_at IS NULL OR ps.exited_at > :from)
), per_session AS (
    -- each session's local hours, grouped inside the lateral (a few rows each) rather than in one big sort
    SELECT s.rank, x.local_hour, x.occupied, x.started, extract(epoch FROM s.b - s.a) AS dwell
    FROM s CROSS JOIN LATERAL (
        SELECT date_trunc('hour', t AT TIME ZONE s.tz) AS local_hour,
               sum(extract(epoch FROM least(s.b, t + s.step, :to) - greatest(s.a, t, :from))) AS occupied,
               bool_or(s.a >= greatest(t, :from) AND s.a < t + s.step) AS started
        FROM generate_series(date_bin(s.step, greatest(s.a, :from), s.origin),
                             least(s.b, :to) - interval '1 microsecond', s.step) AS t
        GROUP BY 1) x
    WHERE s.b > s.a
)
SELECT rank, local_hour, count(*) AS sessions, count(*) FILTER (WHERE started) AS started,
       sum(occupied)::float8 AS occupied, sum(dwell)::float8 AS dwell
FROM per_session GROUP BY rank, local_hour ORDER BY rank, local_hour
""")

# --- sessions: one row per completed session -----------------------------------------------------------------------

_FROM = " FROM place p JOIN parking_sessions ps ON ps.lot_id = p.lot_id"
_COMPLETED_IN_WINDOW = """
    WHERE ps.status = 'completed' AND ps.exited_at IS NOT NULL AND ps.exited_at <= :now
      AND ps.entered_at >= :from AND ps.entered_at < :to
"""
_PLACE = "WITH place AS (SELECT * FROM unnest(CAST(:lot_ids AS uuid[]), CAST(:ranks AS int[])) AS p(lot_id, rank))"

SESSIONS_PER_PLACE = text(_PLACE + " SELECT p.rank, count(*) AS n" + _FROM + _COMPLETED_IN_WINDOW + " GROUP BY p.rank")

# Times leave the database already rounded to the nearest quarter hour; no id, plate, user or payment column is
# selected at all (ids are made fresh by the writer). Only places in :ranks_kept (not suppressed) are read.
SESSION_ROWS = text(_PLACE + """
SELECT p.rank, coalesce(r.vehicle_type, sp.type, 'unknown') AS vehicle_type,
       date_bin('15 minutes', ps.entered_at + interval '450 seconds', TIMESTAMPTZ '2000-01-01 00:00:00+00') AS start_r,
       date_bin('15 minutes', ps.exited_at + interval '450 seconds', TIMESTAMPTZ '2000-01-01 00:00:00+00') AS end_r
""" + _FROM + """
    LEFT JOIN reservations r ON r.lot_id = ps.lot_id AND r.id = ps.reservation_id
    LEFT JOIN spots sp ON sp.lot_id = ps.lot_id AND sp.id = ps.spot_id
""" + _COMPLETED_IN_WINDOW + """
      AND p.rank = ANY(CAST(:ranks_kept AS int[]))
ORDER BY p.rank, start_r, end_r, vehicle_type
""")
