"""SQL of EV chargers (OCPP 1.6J lane, on the raw asyncpg pool) and of their read-side summaries (text(), so the
same reads serve a SQLAlchemy connection or core.db.RawReads)."""

from __future__ import annotations

from sqlalchemy import text

# -- registry -----------------------------------------------------------------------------------------------------

LOT_EXISTS = "SELECT 1 FROM lots WHERE id = $1"
SPOT_OF_LOT = "SELECT type FROM spots WHERE lot_id = $1 AND id = $2"
# $1 lot_id, $2 charge_point_id, $3 spot_id, $4 password_hash, $5 connectors
INSERT_CHARGER = (
    "INSERT INTO chargers (lot_id, charge_point_id, spot_id, password_hash, connectors) VALUES ($1, $2, $3, $4, $5)"
    " ON CONFLICT (charge_point_id) DO NOTHING RETURNING id")
INSERT_CONNECTORS = (
    "INSERT INTO charger_connectors (lot_id, charger_id, connector_id) SELECT $1, $2, n FROM generate_series(1, $3) n")
REVOKE = (
    "UPDATE chargers SET revoked_at = coalesce(revoked_at, $2) WHERE charge_point_id = $1 RETURNING lot_id, id")
# a charger's credentials and identity, at the handshake
CREDENTIALS = (
    "SELECT lot_id, id, charge_point_id, password_hash, connectors, heartbeat_interval_s FROM chargers"
    " WHERE charge_point_id = $1 AND revoked_at IS NULL")

LIVE_AMONG = "SELECT charge_point_id FROM chargers WHERE charge_point_id = ANY($1::text[]) AND revoked_at IS NULL"

# -- messages -----------------------------------------------------------------------------------------------------

# $1 lot_id, $2 id, $3 now, $4 vendor, $5 model, $6 serial, $7 firmware, $8 interval
BOOT = (
    "UPDATE chargers SET vendor = $4, model = $5, serial = $6, firmware = $7, heartbeat_interval_s = $8,"
    " booted_at = $3, last_seen_at = $3 WHERE lot_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING id")
# any message is a sign of life; none once revoked
TOUCH = "UPDATE chargers SET last_seen_at = $3 WHERE lot_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING id"
# connector 0: the charger as a whole. $1 lot_id, $2 id, $3 now, $4 status
CHARGER_STATUS = (
    "UPDATE chargers SET status = $4, last_seen_at = $3 WHERE lot_id = $1 AND id = $2 AND revoked_at IS NULL"
    " RETURNING id")
# $1 lot_id, $2 charger_id, $3 connector_id, $4 status, $5 error_code, $6 at
CONNECTOR_STATUS = (
    "INSERT INTO charger_connectors (lot_id, charger_id, connector_id, status, error_code, status_at)"
    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (lot_id, charger_id, connector_id) DO UPDATE"
    " SET status = excluded.status, error_code = excluded.error_code, status_at = excluded.status_at")
# Charging finished on the connector's open session (the EV stopped drawing, or the charger is finishing).
# $1 lot_id, $2 charger_id, $3 connector_id, $4 at
CHARGING_ENDED = (
    "UPDATE charging_sessions SET charging_ended_at = coalesce(charging_ended_at, $4)"
    " WHERE lot_id = $1 AND charger_id = $2 AND connector_id = $3 AND stopped_at IS NULL")
# Charging again (a suspended EV draws again): not idle after all.
CHARGING_AGAIN = (
    "UPDATE charging_sessions SET charging_ended_at = NULL"
    " WHERE lot_id = $1 AND charger_id = $2 AND connector_id = $3 AND stopped_at IS NULL")
# The connector is free again: the car of its last session was unplugged (idle time ends).
UNPLUGGED = (
    "UPDATE charging_sessions SET unplugged_at = $4 WHERE lot_id = $1 AND charger_id = $2 AND connector_id = $3"
    " AND stopped_at IS NOT NULL AND unplugged_at IS NULL")

# The reservations whose QR token may be presented at this lot's chargers now (confirmed or inside, until a day
# past their end for overstayers). $1 lot_id, $2 now
TAG_RESERVATIONS = (
    "SELECT id, lot_id, ends_at, plate_hash FROM reservations WHERE lot_id = $1 AND status IN ('confirmed','active')"
    " AND kind = 'reservation' AND starts_at <= $2::timestamptz + interval '1 hour'"
    " AND ends_at + interval '1 day' > $2::timestamptz")
REGISTERED_PLATE = "SELECT 1 FROM vehicles WHERE plate_hash = $1 LIMIT 1"

OPEN_SESSION = (
    "SELECT id, started_at, meter_start_wh FROM charging_sessions WHERE charger_id = $1 AND connector_id = $2"
    " AND stopped_at IS NULL FOR UPDATE")
# a charger that starts a new session on a connector whose previous one it never stopped (lost StopTransaction)
SUPERSEDE = (
    "UPDATE charging_sessions SET stopped_at = $3, stop_reason = 'Superseded', meter_stop_wh = meter_last_wh,"
    " charging_ended_at = coalesce(charging_ended_at, $3), unplugged_at = coalesce(unplugged_at, $3)"
    " WHERE lot_id = $1 AND id = $2")
# $1 lot_id, $2 charger_id, $3 connector_id, $4 kind, $5 reservation_id, $6 plate_hash, $7 meter_start, $8 at
START_SESSION = (
    "INSERT INTO charging_sessions (lot_id, charger_id, connector_id, id_tag_kind, reservation_id, plate_hash,"
    " meter_start_wh, meter_last_wh, started_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8) RETURNING id")
# $1 lot_id, $2 charger_id, $3 transaction id, $4 meter_stop, $5 at, $6 reason. Stopped once: a repeat is a no-op.
# A transaction stopped because the cable was pulled out (EVDisconnected) is unplugged then.
STOP_SESSION = (
    "UPDATE charging_sessions SET stopped_at = $5, meter_stop_wh = $4, meter_last_wh = greatest(meter_last_wh, $4),"
    " stop_reason = $6, charging_ended_at = coalesce(charging_ended_at, $5),"
    " unplugged_at = CASE WHEN $6 = 'EVDisconnected' THEN coalesce(unplugged_at, $5) ELSE unplugged_at END"
    " WHERE lot_id = $1 AND charger_id = $2 AND id = $3 AND stopped_at IS NULL RETURNING id")
SESSION_OF_CHARGER = "SELECT id, stopped_at FROM charging_sessions WHERE lot_id = $1 AND charger_id = $2 AND id = $3"
# $1 lot_id, $2 charger_id, $3 transaction id, $4 meter reading (Wh)
METER = (
    "UPDATE charging_sessions SET meter_last_wh = greatest(meter_last_wh, $4)"
    " WHERE lot_id = $1 AND charger_id = $2 AND id = $3 AND stopped_at IS NULL")

# -- the exit gate ------------------------------------------------------------------------------------------------

# A parking session's charging sessions not billed yet: started after its entry, by its plate or its reservation.
# $1 lot_id, $2 plate_hash, $3 reservation_id, $4 entered_at
UNBILLED_FOR_EXIT = (
    "SELECT id, started_at, stopped_at, charging_ended_at, unplugged_at, meter_start_wh,"
    " coalesce(meter_stop_wh, meter_last_wh) AS meter_wh FROM charging_sessions"
    " WHERE lot_id = $1 AND billed_session_id IS NULL AND started_at >= $4"
    " AND ((plate_hash IS NOT NULL AND plate_hash = $2) OR (reservation_id IS NOT NULL AND reservation_id = $3))"
    " ORDER BY id FOR UPDATE")
# $1 lot_id, $2 id, $3 parking session id, $4 idle minutes, $5 fee, $6 currency
BILL = (
    "UPDATE charging_sessions SET billed_session_id = $3, idle_minutes = $4, idle_fee_amount = $5, currency = $6"
    " WHERE lot_id = $1 AND id = $2 AND billed_session_id IS NULL")

# -- reads (summary, alerts, the search board) -------------------------------------------------------------------

# one row per connector of a lot's chargers (revoked ones are gone), with what classifying it needs
LOT_CONNECTORS = text(
    "SELECT c.charge_point_id, c.spot_id, c.status AS charger_status, c.last_seen_at, c.heartbeat_interval_s,"
    " cc.connector_id, cc.status, cc.error_code, cc.status_at FROM chargers c"
    " JOIN charger_connectors cc ON cc.lot_id = c.lot_id AND cc.charger_id = c.id"
    " WHERE c.lot_id = :lot_id AND c.revoked_at IS NULL ORDER BY c.charge_point_id, cc.connector_id")
# Every lot's connectors counted by state, for the process's board (asyncpg): controllers.chargers.connector_state
# in SQL (one row per lot instead of one per connector: ADR 0022). Lot detail uses
# the Python rule; the tests compare both at each state, the offline boundary included. $1 now
_COUNTS = (
    "SELECT lot_id, count(*)::int AS total,"
    " count(*) FILTER (WHERE st = 'available')::int AS available,"
    " count(*) FILTER (WHERE st = 'charging')::int AS charging,"
    " count(*) FILTER (WHERE st = 'faulted')::int AS faulted,"
    " count(*) FILTER (WHERE st = 'offline')::int AS offline"
    " FROM (SELECT c.lot_id, CASE"
    "   WHEN c.last_seen_at IS NULL OR c.last_seen_at < $1::timestamptz - make_interval(secs => 2 * c.heartbeat_interval_s)"
    "     OR cc.status = 'Unknown' THEN 'offline'"
    "   WHEN c.status IN ('Faulted','Unavailable') OR cc.status IN ('Faulted','Unavailable') THEN 'faulted'"
    "   WHEN cc.status = 'Available' THEN 'available' ELSE 'charging' END AS st"
    "  FROM chargers c JOIN charger_connectors cc ON cc.lot_id = c.lot_id AND cc.charger_id = c.id"
    "  WHERE c.revoked_at IS NULL{lot}) s GROUP BY lot_id")
ALL_COUNTS = _COUNTS.format(lot="")
ONE_LOT_COUNTS = _COUNTS.format(lot=" AND c.lot_id = $2")
