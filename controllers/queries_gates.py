"""Every SQL statement of the gate and session paths, with bound parameters only."""

from __future__ import annotations

from sqlalchemy import text

# -- the decision path, on the raw asyncpg pool (docs/adr/0007, 0010): positional parameters --------------

GATE = (
    "SELECT g.lot_id, g.direction, l.timezone, l.status AS lot_status, l.early_arrival_minutes,"
    " l.walk_in_horizon_minutes FROM gates g JOIN lots l ON l.id = g.lot_id WHERE g.lot_id = $1 AND g.id = $2")

# The exactly-once ledger: the first transaction to insert an event_id decides; a concurrent
# duplicate waits on the primary key until that transaction ends, then reads its decision.
LEDGER_INSERT = (
    "INSERT INTO controller_events (lot_id, event_id, device_id, sequence, source, cds_event_type, occurred_at,"
    " received_at, payload) VALUES ($1, $2, $3, $4, $5, 'decision_only', $6, $7, $8::jsonb)"
    " ON CONFLICT (lot_id, event_id) DO NOTHING RETURNING event_id")
LEDGER_DECISION = "SELECT decision FROM controller_events WHERE lot_id = $1 AND event_id = $2"
LEDGER_SET_DECISION = (
    "UPDATE controller_events SET decision = $3::jsonb, cds_event_type = $4 WHERE lot_id = $1 AND event_id = $2")

# The spot (and its level) of a row aliased {r} with lot_id and spot_id, as the gate shows it.
_SPOT_JOIN = (" LEFT JOIN spots {s} ON {s}.lot_id = {r}.lot_id AND {s}.id = {r}.spot_id"
              " LEFT JOIN levels {lv} ON {lv}.lot_id = {s}.lot_id AND {lv}.id = {s}.level_id")
_RESERVATION = (
    "r.id, r.lot_id, r.kind, r.status, r.starts_at, r.ends_at, r.plate, r.plate_hash, r.spot_id, s.label, lv.name AS level")

RESERVATION_FOR_GATE = (
    f"SELECT {_RESERVATION} FROM reservations r" + _SPOT_JOIN.format(s="s", r="r", lv="lv") + " WHERE r.id = $1")

# Everything an entry by plate needs in one round trip: the reservation in its window (with its spot), an active
# session (its exit was never seen), a pass this month, and a walk-in already booked by this very event (only an
# earlier attempt that crashed before its ledger commit can have booked one).
# $1 lot_id, $2 plate_hash, $3 early-arrival minutes, $4 at, $5 month, $6 the walk-in's idempotency key.
ENTRY_LOOKUP = (
    f"SELECT {_RESERVATION}, ps.id AS session_id, ps.spot_id AS session_spot_id, ss.label AS session_label,"
    " sl.name AS session_level,"
    " EXISTS (SELECT 1 FROM monthly_passes WHERE lot_id = $1 AND plate_hash = $2 AND month = $5"
    "  AND status = 'active' AND paid_at IS NOT NULL) AS has_pass,"  # only a paid pass opens the gate
    " (SELECT id FROM reservations WHERE lot_id = $1 AND kind = 'walk_in' AND idempotency_key = $6) AS walk_in_id"
    " FROM (SELECT 1) one"
    " LEFT JOIN LATERAL (SELECT lot_id, id, kind, status, starts_at, ends_at, plate, plate_hash, spot_id"
    "  FROM reservations WHERE lot_id = $1 AND plate_hash = $2 AND kind = 'reservation'"
    "  AND status IN ('confirmed','active') AND starts_at - make_interval(mins => $3) <= $4 AND $4 < ends_at"
    "  ORDER BY starts_at LIMIT 1) r ON true" + _SPOT_JOIN.format(s="s", r="r", lv="lv") +
    " LEFT JOIN LATERAL (SELECT lot_id, id, spot_id FROM parking_sessions WHERE lot_id = $1 AND plate_hash = $2"
    "  AND status = 'active' ORDER BY entered_at DESC LIMIT 1) ps ON true" + _SPOT_JOIN.format(s="ss", r="ps", lv="sl"))
WALK_IN_BY_EVENT = "SELECT id FROM reservations WHERE lot_id = $1 AND kind = 'walk_in' AND idempotency_key = $2"

INSERT_SESSION = (
    "INSERT INTO parking_sessions (lot_id, id, kind, reservation_id, spot_id, plate, plate_hash, status, entered_at,"
    " entry_gate_id, currency, flags, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $9, 'usd',"
    " $10::text[], $11)"
    " ON CONFLICT (lot_id, reservation_id) WHERE reservation_id IS NOT NULL DO NOTHING RETURNING id")
SESSION_ID_BY_RESERVATION = "SELECT id FROM parking_sessions WHERE lot_id = $1 AND reservation_id = $2"

# Mark the walk-in entered, open its session and return the spot to show, in one statement.
# $1 reservation_id, $2 session id, $3 plate, $4 plate_hash, $5 entered_at, $6 gate_id, $7 flags, $8 now.
OPEN_WALK_IN_SESSION = (
    "WITH r AS (UPDATE reservations SET entered_at = coalesce(entered_at, $5) WHERE id = $1"
    "  RETURNING lot_id, id, spot_id)"
    " , ins AS (INSERT INTO parking_sessions (lot_id, id, kind, reservation_id, spot_id, plate, plate_hash, status,"
    "  entered_at, entry_gate_id, currency, flags, created_at) SELECT r.lot_id, $2, 'walk_in', r.id, r.spot_id, $3,"
    "  $4, 'active', $5, $6, 'usd', $7::text[], $8 FROM r"
    "  ON CONFLICT (lot_id, reservation_id) WHERE reservation_id IS NOT NULL DO NOTHING RETURNING id)"
    " SELECT (SELECT id FROM ins) AS session_id, s.id AS spot_id, s.label, lv.name AS level FROM r"
    " JOIN spots s ON s.lot_id = r.lot_id AND s.id = r.spot_id JOIN levels lv ON lv.lot_id = s.lot_id AND lv.id = s.level_id")

# A session at the exit, with what its fee needs (the reservation's end, the spot's type) and what the gate shows.
# Walk-ins let in by the edge without a booking are priced as regular walk-ins.
_EXIT_SESSION_COLUMNS = (
    "ps.id, ps.kind, ps.reservation_id, ps.spot_id, ps.plate_hash, ps.status, ps.entered_at, ps.pay_requested_at,"
    " ps.paid_amount, r.ends_at,"
    " CASE WHEN ps.reservation_id IS NULL THEN 'regular' ELSE coalesce(s.type, r.vehicle_type) END AS spot_type,"
    " s.label, lv.name AS level")
_EXIT_SESSION_FROM = (
    " FROM parking_sessions ps LEFT JOIN reservations r ON r.lot_id = ps.lot_id AND r.id = ps.reservation_id"
    + _SPOT_JOIN.format(s="s", r="ps", lv="lv"))
# The gate's exit also reads the lot's rate card version, and the body only when it is not the process's parsed
# copy ($3 version, $4 updated_at of that copy; NULL when there is none).
_WITH_CARD = (
    ", rc.version AS card_version, rc.updated_at AS card_updated_at, CASE WHEN (rc.version, rc.updated_at)"
    f" IS DISTINCT FROM ($3::int, $4::timestamptz) THEN rc.body END AS card_body{_EXIT_SESSION_FROM}"
    " LEFT JOIN rate_cards rc ON rc.lot_id = ps.lot_id")
EXIT_SESSION_BY_PLATE = (
    f"SELECT {_EXIT_SESSION_COLUMNS}{_WITH_CARD} WHERE ps.lot_id = $1 AND ps.plate_hash = $2"
    " AND ps.status = 'active' ORDER BY ps.entered_at DESC LIMIT 1 FOR UPDATE OF ps")
EXIT_SESSION_BY_RESERVATION = (
    f"SELECT {_EXIT_SESSION_COLUMNS}{_WITH_CARD} WHERE ps.lot_id = $1 AND ps.reservation_id = $2 FOR UPDATE OF ps")

# booking.queries.SET_ACTIVE (check-in), inside the gate's ledger transaction.
CHECK_IN = (
    "UPDATE reservations SET status = 'active', entered_at = $2, updated_at = $2 WHERE id = $1"
    " AND status = 'confirmed' RETURNING id")

# Close a session and complete its booking (booking.queries.SET_COMPLETED, unless a retried exit completed it
# already), returning what freeing the rest of the booking needs: its end and booked period's end (which the
# sweeper may have extended until this statement), and its spot.
# $1 lot_id, $2 id, $3 now, $4 gate_id, $5 fee, $6 paid, $7 currency, $8 flags.
COMPLETE_SESSION = (
    "WITH ps AS (UPDATE parking_sessions SET status = 'completed', exited_at = greatest($3, entered_at),"
    "  exit_gate_id = $4, fee_amount = $5, paid_amount = paid_amount + $6, currency = $7,"
    "  flags = flags || $8::text[] WHERE lot_id = $1 AND id = $2 AND status = 'active' RETURNING reservation_id)"
    " UPDATE reservations r SET status = 'completed', exited_at = $3, updated_at = $3 FROM ps"
    " WHERE r.lot_id = $1 AND r.id = ps.reservation_id AND r.status = 'active'"
    " RETURNING r.id, r.ends_at, upper(r.period) AS slot_end,"
    " (SELECT s.idx FROM spots s WHERE s.lot_id = r.lot_id AND s.id = r.spot_id) AS spot_idx")
SESSION_PAY_REQUESTED = "UPDATE parking_sessions SET pay_requested_at = $3 WHERE lot_id = $1 AND id = $2"

INSERT_DEBT = (
    "INSERT INTO plate_debts (lot_id, plate_hash, session_id, amount, currency, reason, created_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7)"
    " ON CONFLICT (lot_id, session_id) WHERE session_id IS NOT NULL DO NOTHING")

INSERT_EXIT_PAYMENT = (
    "INSERT INTO payments (lot_id, session_id, provider, intent_id, purpose, status, amount, amount_authorised,"
    " amount_captured, currency, created_at, updated_at) VALUES ($1, $2, $3, $4, 'exit_fee', $5, $6, $7, $7, $8,"
    " $9, $9)"
    " ON CONFLICT (intent_id) DO NOTHING")

# -- operators' views and sweepers, on SQLAlchemy ---------------------------------------------------------------

LOT = text(
    "SELECT id, timezone, early_arrival_minutes, walk_in_horizon_minutes, lost_ticket_fee_amount"
    " FROM lots WHERE id = :lot_id")

ACTIVE_SESSION_BY_PLATE = text(
    f"SELECT {_EXIT_SESSION_COLUMNS}{_EXIT_SESSION_FROM} WHERE ps.lot_id = :lot_id AND ps.plate_hash = :plate_hash"
    " AND ps.status = 'active' ORDER BY ps.entered_at DESC LIMIT 1 FOR UPDATE OF ps")

RATE_CARD = text("SELECT body, version, updated_at FROM rate_cards WHERE lot_id = :lot_id")

# Operators' views.
# What a session cost and what was paid for it: a reservation's price was paid ahead (its payment's captured
# amount, net of refunds, once captured), the exit fee at the gate (exit payments); open plate debts are unpaid.
SESSIONS_OF_LOT = text(
    "SELECT ps.id, ps.kind, ps.status, ps.plate, ps.reservation_id, ps.entered_at, ps.exited_at, ps.fee_amount,"
    " ps.paid_amount, ps.currency, ps.flags, ps.pay_requested_at, ps.lost_ticket_at, ps.overstay_risk_at,"
    " s.id AS spot_id, s.label AS spot_label, lv.name AS level_name,"
    " CASE WHEN ps.kind = 'reservation' THEN r.price_amount END AS prepaid_amount,"
    " coalesce(rp.net, 0) AS prepaid_captured, coalesce(rp.authorised, 0) AS prepaid_authorised,"
    " d.unpaid_amount"
    " FROM parking_sessions ps LEFT JOIN spots s ON s.lot_id = ps.lot_id AND s.id = ps.spot_id"
    " LEFT JOIN levels lv ON lv.lot_id = s.lot_id AND lv.id = s.level_id"
    " LEFT JOIN reservations r ON r.lot_id = ps.lot_id AND r.id = ps.reservation_id"
    " LEFT JOIN LATERAL (SELECT sum(p.amount_captured - p.amount_refunded) AS net,"
    "  sum(p.amount_authorised) AS authorised FROM payments p WHERE ps.kind = 'reservation'"
    "  AND p.reservation_id = ps.reservation_id AND p.lot_id = ps.lot_id AND p.purpose = 'reservation') rp ON true"
    " LEFT JOIN LATERAL (SELECT sum(pd.amount) AS unpaid_amount FROM plate_debts pd WHERE pd.lot_id = ps.lot_id"
    "  AND pd.session_id = ps.id AND pd.settled_at IS NULL) d ON true"
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

# A lot's plate debts (open ones by default), newest first, with the plate of the session that left them.
DEBTS_OF_LOT = text(
    "SELECT pd.id, pd.session_id, pd.amount, pd.currency, pd.reason, pd.created_at, pd.settled_at, ps.plate"
    " FROM plate_debts pd LEFT JOIN parking_sessions ps ON ps.lot_id = pd.lot_id AND ps.id = pd.session_id"
    " WHERE pd.lot_id = :lot_id AND (CAST(:open_only AS boolean) IS FALSE OR pd.settled_at IS NULL)"
    " ORDER BY pd.created_at DESC, pd.id DESC LIMIT :limit")
OPEN_DEBT_TOTALS = text(
    "SELECT currency, sum(amount) AS amount, count(*) AS n FROM plate_debts WHERE lot_id = :lot_id"
    " AND settled_at IS NULL GROUP BY currency ORDER BY currency")
