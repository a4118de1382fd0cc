"""Every SQL statement of the operators' dashboard, with bound parameters only."""

from __future__ import annotations

from sqlalchemy import text

LOT = text(
    "SELECT l.id, l.name, l.timezone, l.capacity, l.status, l.created_at, coalesce(rc.currency, 'usd') AS currency"
    " FROM lots l LEFT JOIN rate_cards rc ON rc.lot_id = l.id WHERE l.id = :lot_id")

# Each gate with its newest event (controller_events_gate_idx) and the newest decision it answered.
GATES = text(
    "SELECT g.id, g.name, g.direction, e.event_id, e.occurred_at, e.received_at, e.cds_event_type, e.source,"
    " d.decision, d.received_at AS decided_at"
    " FROM gates g"
    " LEFT JOIN LATERAL (SELECT event_id, occurred_at, received_at, cds_event_type, source FROM controller_events"
    "  WHERE lot_id = g.lot_id AND source IN ('gate', 'edge') AND payload->>'gate_id' = g.id::text"
    "  ORDER BY received_at DESC LIMIT 1) e ON true"
    " LEFT JOIN LATERAL (SELECT decision, received_at FROM controller_events"
    "  WHERE lot_id = g.lot_id AND source IN ('gate', 'edge') AND payload->>'gate_id' = g.id::text"
    "  AND decision IS NOT NULL ORDER BY received_at DESC LIMIT 1) d ON true"
    " WHERE g.lot_id = :lot_id ORDER BY g.direction, g.name, g.id")

# Sensors that stopped reporting (last reading older than their heartbeat) or never reported.
SENSOR_HEALTH = text(
    "SELECT count(*) FILTER (WHERE last_seen_at IS NOT NULL"
    "  AND last_seen_at < CAST(:now AS timestamptz) - make_interval(secs => heartbeat_seconds)) AS stale,"
    " count(*) FILTER (WHERE last_seen_at IS NULL) AS silent, count(*) AS total,"
    " min(last_seen_at + make_interval(secs => heartbeat_seconds)) FILTER (WHERE last_seen_at IS NOT NULL"
    "  AND last_seen_at < CAST(:now AS timestamptz) - make_interval(secs => heartbeat_seconds)) AS stale_since"
    " FROM sensors WHERE lot_id = :lot_id")

# Plate debts of the last day, still open: one alert each.
RECENT_OPEN_DEBTS = text(
    "SELECT pd.id, pd.amount, pd.currency, pd.reason, pd.created_at, s.label AS spot_label"
    " FROM plate_debts pd LEFT JOIN parking_sessions ps ON ps.lot_id = pd.lot_id AND ps.id = pd.session_id"
    " LEFT JOIN spots s ON s.lot_id = ps.lot_id AND s.id = ps.spot_id"
    " WHERE pd.lot_id = :lot_id AND pd.settled_at IS NULL AND pd.created_at >= :since"
    " ORDER BY pd.created_at DESC LIMIT :limit")

# A reservation that ended (completed or no-show) more than :grace ago with its authorisation still not captured,
# or a capture the provider refused: the settlement sweeper has not managed to take the money.
FAILED_CAPTURES = text(
    "SELECT p.id, p.amount_authorised, p.currency, p.status, r.id AS reservation_id, r.status AS reservation_status,"
    " r.updated_at FROM payments p JOIN reservations r ON r.lot_id = p.lot_id AND r.id = p.reservation_id"
    " WHERE p.lot_id = :lot_id AND p.purpose = 'reservation' AND r.status IN ('completed', 'no_show')"
    " AND p.amount_authorised > 0 AND p.amount_captured = 0 AND p.status <> 'canceled'"
    " AND r.updated_at < CAST(:now AS timestamptz) - CAST(:grace AS interval) AND r.updated_at >= :since"
    " ORDER BY r.updated_at LIMIT :limit")

RECENT_REPAIRS = text(
    "SELECT id, repaired_at, bits_set, bits_cleared FROM redis_repairs WHERE lot_id = :lot_id"
    " AND repaired_at >= :since ORDER BY repaired_at DESC LIMIT :limit")

ACKS = text(
    "SELECT alert_id, since, acknowledged_by_email, acknowledged_at FROM dashboard_alert_acks"
    " WHERE lot_id = :lot_id AND acknowledged_at >= :since")

INSERT_ACK = text(
    "INSERT INTO dashboard_alert_acks (lot_id, alert_id, since, acknowledged_by, acknowledged_by_email,"
    " acknowledged_at) SELECT :lot_id, :alert_id, :since, u.id, u.email, :now FROM users u WHERE u.id = :user_id"
    " ON CONFLICT (lot_id, alert_id, since) DO NOTHING")

# Money that moved in [from, to) (the lot's local day), per currency: payments are stamped when an amount first
# left 0 (migration 0015); refunds when they last grew.
REVENUE = text(
    "SELECT currency,"
    " coalesce(sum(amount_captured) FILTER (WHERE captured_at >= :from AND captured_at < :to), 0) AS captured,"
    " coalesce(sum(amount_authorised) FILTER (WHERE authorised_at >= :from AND authorised_at < :to), 0)"
    "  AS authorised,"
    " coalesce(sum(amount_refunded) FILTER (WHERE refunded_at >= :from AND refunded_at < :to), 0) AS refunded"
    " FROM payments WHERE lot_id = :lot_id AND updated_at >= :from GROUP BY currency")
DEBTS = text(
    "SELECT currency, coalesce(sum(amount), 0) AS outstanding,"
    " coalesce(sum(amount) FILTER (WHERE created_at >= :from AND created_at < :to), 0) AS today, count(*) AS n"
    " FROM plate_debts WHERE lot_id = :lot_id AND settled_at IS NULL GROUP BY currency")

# Cars inside (gate sessions) at each step of the day so far.
OCCUPANCY_SERIES = text(
    "SELECT t.at, count(ps.id) AS inside"
    " FROM generate_series(CAST(:from AS timestamptz), CAST(:now AS timestamptz), make_interval(mins => :step)) AS t(at)"
    " LEFT JOIN parking_sessions ps ON ps.lot_id = :lot_id AND ps.entered_at <= t.at"
    "  AND (ps.exited_at IS NULL OR ps.exited_at > t.at) AND ps.entered_at >= CAST(:from AS timestamptz) - interval '7 days'"
    " GROUP BY t.at ORDER BY t.at")

