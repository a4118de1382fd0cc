"""Every SQL statement of the gate and session paths, with bound parameters only."""

from __future__ import annotations

from sqlalchemy import text

GATE = text(
    "SELECT g.lot_id, g.direction, l.timezone, l.status AS lot_status, l.early_arrival_minutes,"
    " l.walk_in_horizon_minutes, l.lost_ticket_fee_amount, l.organisation_id"
    " FROM gates g JOIN lots l ON l.id = g.lot_id WHERE g.id = :gate_id")

LOT = text(
    "SELECT id, timezone, early_arrival_minutes, walk_in_horizon_minutes, lost_ticket_fee_amount"
    " FROM lots WHERE id = :lot_id")

# The exactly-once ledger: the first transaction to insert an event_id decides; a concurrent
# duplicate waits on the primary key until that transaction ends, then reads its decision.
LEDGER_INSERT = text(
    "INSERT INTO controller_events (lot_id, event_id, device_id, sequence, source, cds_event_type, occurred_at,"
    " received_at, payload) VALUES (:lot_id, :event_id, :device_id, :sequence, :source, 'decision_only',"
    " :occurred_at, :now, CAST(:payload AS jsonb)) ON CONFLICT (lot_id, event_id) DO NOTHING RETURNING event_id")
LEDGER_DECISION = text("SELECT decision FROM controller_events WHERE lot_id = :lot_id AND event_id = :event_id")
LEDGER_SET_DECISION = text(
    "UPDATE controller_events SET decision = CAST(:decision AS jsonb), cds_event_type = :cds"
    " WHERE lot_id = :lot_id AND event_id = :event_id")

RESERVATION_AT_ENTRY = text(
    "SELECT id, status, starts_at, ends_at, spot_id FROM reservations"
    " WHERE lot_id = :lot_id AND plate_hash = :plate_hash AND kind = 'reservation'"
    " AND status IN ('confirmed','active') AND starts_at - make_interval(mins => :early) <= :now AND :now < ends_at"
    " ORDER BY starts_at LIMIT 1")
RESERVATION_FOR_GATE = text(
    "SELECT id, lot_id, kind, status, starts_at, ends_at, plate, plate_hash, spot_id, vehicle_type"
    " FROM reservations WHERE id = :id")
WALK_IN_BY_EVENT = text(
    "SELECT id FROM reservations WHERE lot_id = :lot_id AND kind = 'walk_in' AND idempotency_key = :key")

PASS_FOR_PLATE = text(
    "SELECT id, spot_type FROM monthly_passes WHERE lot_id = :lot_id AND plate_hash = :plate_hash"
    " AND month = :month AND status = 'active'")

SPOT_VIEW = text(
    "SELECT s.id, s.label, s.type, lv.name AS level FROM spots s"
    " JOIN levels lv ON lv.lot_id = s.lot_id AND lv.id = s.level_id WHERE s.lot_id = :lot_id AND s.id = :spot_id")

_SESSION_COLS = (
    "id, kind, reservation_id, spot_id, plate, plate_hash, status, entered_at, exited_at, pay_requested_at,"
    " fee_amount, paid_amount, currency, flags")
ACTIVE_SESSION_BY_PLATE = text(
    f"SELECT {_SESSION_COLS} FROM parking_sessions WHERE lot_id = :lot_id AND plate_hash = :plate_hash"
    " AND status = 'active' ORDER BY entered_at DESC LIMIT 1 FOR UPDATE")
SESSION_BY_RESERVATION = text(
    f"SELECT {_SESSION_COLS} FROM parking_sessions WHERE lot_id = :lot_id AND reservation_id = :reservation_id"
    " FOR UPDATE")

INSERT_SESSION = text(
    "INSERT INTO parking_sessions (lot_id, id, kind, reservation_id, spot_id, plate, plate_hash, status, entered_at,"
    " entry_gate_id, currency, flags, created_at) VALUES (:lot_id, :id, :kind, :reservation_id, :spot_id, :plate,"
    " :plate_hash, 'active', :entered_at, :gate_id, :currency, CAST(:flags AS text[]), :now)"
    " ON CONFLICT (lot_id, reservation_id) WHERE reservation_id IS NOT NULL DO NOTHING RETURNING id")
COMPLETE_SESSION = text(
    "UPDATE parking_sessions SET status = 'completed', exited_at = greatest(:now, entered_at), exit_gate_id = :gate_id,"
    " fee_amount = :fee, paid_amount = paid_amount + :paid, currency = :currency,"
    " flags = flags || CAST(:flags AS text[])"
    " WHERE lot_id = :lot_id AND id = :id AND status = 'active'")
SESSION_PAY_REQUESTED = text(
    "UPDATE parking_sessions SET pay_requested_at = :now WHERE lot_id = :lot_id AND id = :id")

INSERT_DEBT = text(
    "INSERT INTO plate_debts (lot_id, plate_hash, session_id, amount, currency, reason, created_at)"
    " VALUES (:lot_id, :plate_hash, :session_id, :amount, :currency, :reason, :now)"
    " ON CONFLICT (lot_id, session_id) WHERE session_id IS NOT NULL DO NOTHING")

INSERT_EXIT_PAYMENT = text(
    "INSERT INTO payments (lot_id, session_id, provider, intent_id, purpose, status, amount, amount_authorised,"
    " amount_captured, currency) VALUES (:lot_id, :session_id, :provider, :intent_id, 'exit_fee', :status, :amount,"
    " :authorised, :captured, :currency) ON CONFLICT (intent_id) DO NOTHING")

RATE_CARD = text("SELECT body, version, updated_at FROM rate_cards WHERE lot_id = :lot_id")

# Operators' views.
SESSIONS_OF_LOT = text(
    "SELECT ps.id, ps.kind, ps.status, ps.plate, ps.reservation_id, ps.entered_at, ps.exited_at, ps.fee_amount,"
    " ps.paid_amount, ps.currency, ps.flags, ps.pay_requested_at, ps.lost_ticket_at, ps.overstay_risk_at,"
    " s.id AS spot_id, s.label AS spot_label, lv.name AS level_name"
    " FROM parking_sessions ps LEFT JOIN spots s ON s.lot_id = ps.lot_id AND s.id = ps.spot_id"
    " LEFT JOIN levels lv ON lv.lot_id = s.lot_id AND lv.id = s.level_id"
    " WHERE ps.lot_id = :lot_id AND (CAST(:status AS text) IS NULL OR ps.status = :status)"
    " AND (CAST(:after_entered AS timestamptz) IS NULL OR (ps.entered_at, ps.id) < (:after_entered, :after_id))"
    " ORDER BY ps.entered_at DESC, ps.id DESC LIMIT :limit")

OVERSTAYS = text(
    "SELECT ps.id, ps.kind, ps.plate, ps.reservation_id, ps.entered_at, ps.overstay_risk_at, r.ends_at,"
    " r.vehicle_type, s.id AS spot_id, s.label AS spot_label, s.type AS spot_type, lv.name AS level_name"
    " FROM parking_sessions ps JOIN reservations r ON r.lot_id = ps.lot_id AND r.id = ps.reservation_id"
    " LEFT JOIN spots s ON s.lot_id = ps.lot_id AND s.id = ps.spot_id"
    " LEFT JOIN levels lv ON lv.lot_id = s.lot_id AND lv.id = s.level_id"
    " WHERE ps.lot_id = :lot_id AND ps.status = 'active'"
    " AND ((ps.kind = 'reservation' AND r.ends_at < :now) OR (ps.kind = 'walk_in' AND ps.overstay_risk_at IS NOT NULL))"
    " ORDER BY r.ends_at, ps.id LIMIT :limit")

MARK_LOST_TICKET = text(
    "UPDATE parking_sessions SET lost_ticket_at = coalesce(lost_ticket_at, :now) WHERE lot_id = :lot_id AND id = :id")

# Walk-in extension sweeper.
WALK_INS_ENDING = text(
    "SELECT r.lot_id, r.id, r.spot_id, s.idx AS spot_idx, r.ends_at, lower(r.period) AS slot_start,"
    " upper(r.period) AS slot_end, l.walk_in_horizon_minutes FROM reservations r"
    " JOIN lots l ON l.id = r.lot_id JOIN spots s ON s.lot_id = r.lot_id AND s.id = r.spot_id"
    " WHERE r.status = 'active' AND r.kind = 'walk_in' AND r.ends_at <= :until ORDER BY r.ends_at LIMIT :limit")
EXTEND_WALK_IN = text(
    "UPDATE reservations SET ends_at = :ends_at, period = tstzrange(lower(period), :slot_end, '[)'), updated_at = :now"
    " WHERE id = :id AND status = 'active' AND kind = 'walk_in' AND ends_at < :ends_at RETURNING id")
FLAG_OVERSTAY_RISK = text(
    "UPDATE parking_sessions SET overstay_risk_at = :now WHERE lot_id = :lot_id AND reservation_id = :reservation_id"
    " AND status = 'active' AND overstay_risk_at IS NULL RETURNING id")

# The hot entry path in one round trip each: what the plate has here (reservation in its window, an active
# session, a pass this month, a walk-in already booked by this very event before a crash).
ENTRY_LOOKUP = text(
    "SELECT (SELECT id FROM reservations WHERE lot_id = :lot_id AND plate_hash = :plate_hash AND kind = 'reservation'"
    "  AND status IN ('confirmed','active') AND starts_at - make_interval(mins => :early) <= :now AND :now < ends_at"
    "  ORDER BY starts_at LIMIT 1) AS reservation_id,"
    " (SELECT id FROM parking_sessions WHERE lot_id = :lot_id AND plate_hash = :plate_hash AND status = 'active'"
    "  ORDER BY entered_at DESC LIMIT 1) AS session_id,"
    " (SELECT spot_id FROM parking_sessions WHERE lot_id = :lot_id AND plate_hash = :plate_hash AND status = 'active'"
    "  ORDER BY entered_at DESC LIMIT 1) AS session_spot_id,"
    " EXISTS (SELECT 1 FROM monthly_passes WHERE lot_id = :lot_id AND plate_hash = :plate_hash AND month = :month"
    "  AND status = 'active') AS has_pass")

# Mark the walk-in entered, open its session and return the spot to show, in one statement.
OPEN_WALK_IN_SESSION = text(
    "WITH r AS (UPDATE reservations SET entered_at = coalesce(entered_at, :entered_at) WHERE id = :reservation_id"
    "  RETURNING lot_id, id, spot_id)"
    " , ins AS (INSERT INTO parking_sessions (lot_id, id, kind, reservation_id, spot_id, plate, plate_hash, status,"
    "  entered_at, entry_gate_id, currency, flags, created_at) SELECT r.lot_id, :id, 'walk_in', r.id, r.spot_id, :plate,"
    "  :plate_hash, 'active', :entered_at, :gate_id, 'usd', CAST(:flags AS text[]), :now FROM r"
    "  ON CONFLICT (lot_id, reservation_id) WHERE reservation_id IS NOT NULL DO NOTHING RETURNING id)"
    " SELECT (SELECT id FROM ins) AS session_id, s.id AS spot_id, s.label, lv.name AS level FROM r"
    " JOIN spots s ON s.lot_id = r.lot_id AND s.id = r.spot_id JOIN levels lv ON lv.lot_id = s.lot_id AND lv.id = s.level_id")

# Bays a fresh sensor reports occupied with no active occupancy (reservation or walk-in) covering now.
# Accessible and EV bays are "wrong spot type" (a car not entitled to them); other bays "occupied without session".
UNBOOKED_OCCUPIED_BAYS = text(
    "SELECT se.id AS sensor_id, se.state_since, s.id AS spot_id, s.label AS spot_label, s.type AS spot_type,"
    " lv.name AS level_name FROM sensors se JOIN spots s ON s.lot_id = se.lot_id AND s.id = se.spot_id"
    " JOIN levels lv ON lv.lot_id = s.lot_id AND lv.id = s.level_id"
    " WHERE se.lot_id = :lot_id AND se.state = 'occupied'"
    " AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.lot_id = se.lot_id AND r.spot_id = se.spot_id"
    "   AND r.status = 'active' AND r.period @> CAST(:now AS timestamptz))"
    " ORDER BY se.state_since NULLS LAST, s.label LIMIT :limit")
