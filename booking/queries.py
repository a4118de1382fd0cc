"""Every SQL statement of the booking engine, with bound parameters only."""

from __future__ import annotations

from sqlalchemy import text

OCCUPYING_SQL = "('held','confirmed','active')"

LOT_FOR_BOOKING = text(
    "SELECT id, organisation_id, status, timezone, allocation_strategy, ev_overflow, booking_horizon_days,"
    " no_show_grace_minutes, early_arrival_minutes, walk_in_horizon_minutes FROM lots WHERE id = :lot_id")

LOT_SPOTS = text(
    "SELECT s.idx, s.type, l.ordinal AS level, s.rank, s.status FROM spots s"
    " JOIN levels l ON l.lot_id = s.lot_id AND l.id = s.level_id WHERE s.lot_id = :lot_id ORDER BY s.idx")


FREE_COUNT_SQL = text(
    "SELECT count(*) FROM spots s WHERE s.lot_id = :lot_id AND s.status = 'in_service' AND s.type = ANY(:types)"
    " AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.lot_id = s.lot_id AND r.spot_id = s.id"
    f"  AND r.status IN {OCCUPYING_SQL} AND r.period && tstzrange(:slot_start, :slot_end, '[)'))")

RESERVATION_COLUMNS = (
    "r.id, r.lot_id, r.kind, r.user_id, r.status, r.vehicle_type, r.plate, r.starts_at, r.ends_at,"
    " lower(r.period) AS slot_start, upper(r.period) AS slot_end, r.hold_expires_at, r.price_amount, r.currency,"
    " r.quote, r.created_at, r.confirmed_at, r.entered_at, r.exited_at, r.cancelled_at,"
    " s.id AS spot_id, s.idx AS spot_idx, s.label AS spot_label, lv.name AS level_name,"
    " p.provider AS payment_provider, p.intent_id, p.status AS payment_status, p.amount_captured,"
    " p.amount_refunded, p.amount_authorised")

_SPOT_JOINS = (" JOIN spots s ON s.lot_id = r.lot_id AND s.id = r.spot_id"
               " JOIN levels lv ON lv.lot_id = s.lot_id AND lv.id = s.level_id")
_FROM = (" FROM reservations r" + _SPOT_JOINS
         + " LEFT JOIN payments p ON p.lot_id = r.lot_id AND p.reservation_id = r.id AND p.purpose = 'reservation'")

RESERVATION_BY_ID = text(f"SELECT {RESERVATION_COLUMNS}{_FROM} WHERE r.id = :id")


# --- The hold's writes, on the raw asyncpg pool (ADR 0007): parameters by position --------------------------

# The hold in one statement: the reservation on spot $19 (if the lot is open and, when $20 is set, the driver
# has fewer than $20 unpaid holds) and its payment row when an intent was created ($21-$23), answered with
# the row as RESERVATION_BY_ID reads it. $24 and $25 are the row versions (xmin) of the lot and of its rate
# card (NULL: none) that the hold was decided and priced from: if either row changed since, nothing is written.
# No row back: the lot changed, is closed, or the driver has too many holds (HOLD_LOT tells which).
# With an Idempotency-Key ($26 its scope, $17 the key, $27 the request's hash), the key's row is written by the
# same statement, at recovery point 'hold_written', holding the answered row and the payment's client secret
# ($28): the key is recorded if and only if the hold is (docs/adr/0015). A key already used fails the
# statement on the key's primary key, and nothing is written.
_HOLD_INSERT = (
    "INSERT INTO reservations (lot_id, id, kind, user_id, spot_id, vehicle_type, plate, plate_hash, starts_at,"
    " ends_at, period, status, hold_expires_at, price_amount, currency, quote, idempotency_key, created_at,"
    " updated_at)")
# the written rows as RESERVATION_BY_ID reads them, from the CTEs r (reservations) and p (payments)
_HOLD_ANSWER = f" a AS (SELECT {RESERVATION_COLUMNS} FROM r{_SPOT_JOINS} LEFT JOIN p ON p.reservation_id = r.id)"
_KEY_INSERT = ("INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response, recovery_point,"
               " created_at)")
HOLD_WRITE = (
    f"WITH r AS ({_HOLD_INSERT}"
    " SELECT $1, $2, $3, $4, s.id, $5, $6, $7, $8, $9, tstzrange($10, $11, '[)'), $12, $13, $14, $15, $16::jsonb,"
    " $17, $18, $18 FROM spots s WHERE s.lot_id = $1 AND s.idx = $19"
    " AND (SELECT l.status = 'open' AND l.xmin::text = $24::text FROM lots l WHERE l.id = $1)"
    " AND (SELECT rc.xmin::text FROM rate_cards rc WHERE rc.lot_id = $1) IS NOT DISTINCT FROM $25::text"
    " AND ($20::int IS NULL OR (SELECT count(*) FROM reservations u WHERE u.user_id = $4"
    "  AND u.status = 'held' AND u.hold_expires_at > $18) < $20) RETURNING *),"
    " p AS (INSERT INTO payments (lot_id, reservation_id, provider, intent_id, purpose, status, amount, currency)"
    " SELECT r.lot_id, r.id, $21, $22, 'reservation', $23, r.price_amount, r.currency FROM r"
    " WHERE $22::text IS NOT NULL ON CONFLICT (intent_id) DO NOTHING RETURNING *)," + _HOLD_ANSWER + ","
    f" k AS ({_KEY_INSERT} SELECT $26::text, $17, $27::text, 201,"
    " jsonb_build_object('row', to_jsonb(a), 'client_secret', $28::text), 'hold_written', $18 FROM a"
    " WHERE $26::text IS NOT NULL)"
    " SELECT * FROM a")

# HOLD_WRITE for many holds in one statement (booking.holdwriter): the same parameters, each an array with one
# element per hold. A hold is written only under HOLD_WRITE's conditions; a driver's holds of one batch count
# against their limit in order. Any conflict (a spot or a plate already taken, even by another hold of the
# batch) skips that hold instead of failing the statement; the caller writes skipped holds one by one, which
# names the reason. A hold's key row is written with it, as by HOLD_WRITE; a key used twice (in the batch or
# before) fails the whole statement, whose holds are then written alone. Answers the written rows as HOLD_WRITE.
HOLD_WRITE_MANY = (
    "WITH req AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::text[],"
    " $7::bytea[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[], $12::text[],"
    " $13::timestamptz[], $14::bigint[], $15::text[], $16::text[], $17::text[], $18::timestamptz[], $19::int[],"
    " $20::int[], $21::text[], $22::text[], $23::text[], $24::text[], $25::text[], $26::text[], $27::text[],"
    " $28::text[]) AS t(lot_id, id, kind, user_id, vehicle_type, plate, plate_hash, starts_at, ends_at, slot_start,"
    " slot_end, status, hold_expires_at, price, currency, quote, idem, now, idx, max_unpaid, provider, intent_id,"
    " pay_status, lot_version, card_row_version, key_scope, request_hash, client_secret)),"
    " ranked AS (SELECT req.*, row_number() OVER (PARTITION BY req.user_id ORDER BY req.id) AS nth FROM req),"
    " ok AS (SELECT ranked.*, s.id AS spot_id FROM ranked JOIN spots s ON s.lot_id = ranked.lot_id"
    "  AND s.idx = ranked.idx"
    "  WHERE (SELECT l.status = 'open' AND l.xmin::text = ranked.lot_version FROM lots l WHERE l.id = ranked.lot_id)"
    "  AND (SELECT rc.xmin::text FROM rate_cards rc WHERE rc.lot_id = ranked.lot_id)"
    "   IS NOT DISTINCT FROM ranked.card_row_version"
    "  AND (ranked.max_unpaid IS NULL OR (SELECT count(*) FROM reservations u WHERE u.user_id = ranked.user_id"
    "   AND u.status = 'held' AND u.hold_expires_at > ranked.now) + ranked.nth <= ranked.max_unpaid)),"
    f" r AS ({_HOLD_INSERT} SELECT lot_id, id, kind, user_id, spot_id, vehicle_type, plate, plate_hash,"
    " starts_at, ends_at, tstzrange(slot_start, slot_end, '[)'), status, hold_expires_at, price, currency,"
    " quote::jsonb, idem, now, now FROM ok ORDER BY lot_id, idx ON CONFLICT DO NOTHING RETURNING *),"
    " p AS (INSERT INTO payments (lot_id, reservation_id, provider, intent_id, purpose, status, amount, currency)"
    " SELECT r.lot_id, r.id, ok.provider, ok.intent_id, 'reservation', ok.pay_status, r.price_amount, r.currency"
    " FROM r JOIN ok ON ok.id = r.id WHERE ok.intent_id IS NOT NULL ON CONFLICT (intent_id) DO NOTHING RETURNING *),"
    + _HOLD_ANSWER + ","
    f" k AS ({_KEY_INSERT} SELECT ok.key_scope, ok.idem, ok.request_hash, 201,"
    " jsonb_build_object('row', to_jsonb(a), 'client_secret', ok.client_secret), 'hold_written', ok.now"
    " FROM a JOIN ok ON ok.id = a.id WHERE ok.key_scope IS NOT NULL)"
    " SELECT * FROM a")

# What a hold needs of its lot (remembered per process: booking.lotinfo.LotInfo) with the row versions its
# write checks, and, when a HOLD_WRITE wrote nothing, why: the lot and (for a driver's hold, $2 not NULL)
# their unpaid holds.
HOLD_LOT = (
    "SELECT l.status, l.ev_overflow, l.booking_horizon_days, l.timezone, l.xmin::text AS lot_version,"
    " rc.body::text AS card_body, rc.version AS card_version, rc.xmin::text AS card_row_version,"
    " CASE WHEN $2::uuid IS NULL THEN 0 ELSE (SELECT count(*) FROM reservations WHERE user_id = $2"
    " AND status = 'held' AND hold_expires_at > $3) END AS unpaid"
    " FROM lots l LEFT JOIN rate_cards rc ON rc.lot_id = l.id WHERE l.id = $1")

# PostgreSQL-only path: the lot's advisory lock serialises candidate choice; the constraint still guards.
LOT_ADVISORY_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 0))"

FREE_SPOT_CANDIDATE = (
    "SELECT s.idx FROM spots s WHERE s.lot_id = $1 AND s.status = 'in_service' AND s.type = ANY($2::text[])"
    " AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.lot_id = s.lot_id AND r.spot_id = s.id"
    f"  AND r.status IN {OCCUPYING_SQL} AND r.period && tstzrange($3, $4, '[)'))"
    " ORDER BY array_position($2::text[], s.type), s.rank, s.idx LIMIT 1")
RESERVATION_FOR_UPDATE = text(
    "SELECT id, lot_id, user_id, status, starts_at, ends_at, hold_expires_at, price_amount, currency, plate_hash,"
    " spot_id, vehicle_type FROM reservations WHERE id = :id FOR UPDATE")
RESERVATIONS_OF_USER = text(
    f"SELECT {RESERVATION_COLUMNS}{_FROM} WHERE r.user_id = :user_id"
    " AND (CAST(:status AS text) IS NULL OR r.status = :status)"
    " AND (CAST(:after_created AS timestamptz) IS NULL OR (r.created_at, r.id) < (:after_created, :after_id))"
    " ORDER BY r.created_at DESC, r.id DESC LIMIT :limit")

SET_STATUS = text(
    "UPDATE reservations SET status = :status, updated_at = :now,"
    " confirmed_at = CASE WHEN :status = 'confirmed' THEN :now ELSE confirmed_at END,"
    " cancelled_at = CASE WHEN :status = 'cancelled' THEN :now ELSE cancelled_at END"
    " WHERE id = :id AND status = :expected RETURNING id")

SPOT_OCCUPANCY = text(
    "SELECT lower(r.period) AS s, upper(r.period) AS e FROM reservations r JOIN spots sp"
    " ON sp.lot_id = r.lot_id AND sp.id = r.spot_id WHERE r.lot_id = :lot_id AND sp.idx = :idx"
    f" AND r.status IN {OCCUPYING_SQL} AND r.period && tstzrange(:from_, :to_, '[)')")

# The rebuild's one big read: what occupies each spot in the horizon as ONE bytea of packed
# records in PostgreSQL's binary forms, which numpy reads with no Python work per row (a lot may
# have tens of thousands of rows; booking.reconcile decodes it). The bounds are never NULL (CHECK:
# finite, non-empty period).
LOT_OCCUPANCY_PACKED = text(
    "SELECT string_agg(int4send(sp.idx) || timestamptz_send(lower(r.period)) || timestamptz_send(upper(r.period)),"
    " ''::bytea) FROM reservations r JOIN spots sp ON sp.lot_id = r.lot_id AND sp.id = r.spot_id"
    f" WHERE r.lot_id = :lot_id AND r.status IN {OCCUPYING_SQL} AND r.period && tstzrange(:from_, :to_, '[)')")

INSERT_PAYMENT = text(
    "INSERT INTO payments (lot_id, reservation_id, provider, intent_id, purpose, status, amount, currency)"
    " VALUES (:lot_id, :reservation_id, :provider, :intent_id, 'reservation', :status, :amount, :currency)"
    " ON CONFLICT (intent_id) DO NOTHING")

PAYMENT_FOR_RESERVATION = text(
    "SELECT id, provider, intent_id, status, amount, amount_authorised, amount_captured, amount_refunded, currency"
    " FROM payments WHERE lot_id = :lot_id AND reservation_id = :reservation_id AND purpose = 'reservation'"
    " FOR UPDATE")

PAYMENT_AUTHORISED = text(
    "UPDATE payments SET status = 'requires_capture', amount_authorised = :amount, updated_at = :now"
    " WHERE lot_id = :lot_id AND id = :id AND amount_authorised = 0")

PAYMENT_STATUS = text("UPDATE payments SET status = :status, updated_at = :now WHERE lot_id = :lot_id AND id = :id")

PAYMENT_CAPTURED = text(
    "UPDATE payments SET status = 'succeeded', amount_captured = :amount, updated_at = :now"
    " WHERE lot_id = :lot_id AND id = :id AND amount_captured = 0 AND :amount <= amount_authorised")

# Each intent is refunded at most once by us: the first refund sticks, a retry changes nothing.
PAYMENT_REFUNDED = text(
    "UPDATE payments SET amount_refunded = :amount, updated_at = :now"
    " WHERE lot_id = :lot_id AND id = :id AND amount_refunded = 0 AND :amount <= amount_captured")

# Settlement (booking.settlement): the reservation and its payment locked together, with the policy snapshot.
PAYMENT_TO_SETTLE = text(
    "SELECT p.id, p.lot_id, p.provider, p.intent_id, p.status, p.amount, p.amount_authorised, p.amount_captured,"
    " p.amount_refunded, p.currency, r.id AS reservation_id, r.status AS reservation_status, r.starts_at,"
    " r.cancelled_at, COALESCE(r.quote -> 'policy' ->> 'capture', 'at_exit') AS capture_policy,"
    " COALESCE(CAST(r.quote -> 'policy' -> 'no_show_fee' ->> 'amount' AS bigint), 0) AS no_show_fee,"
    # what a full capture takes (booking.amendments.capture_basis): price + change fees, at most the authorisation
    " GREATEST(0, LEAST(p.amount_authorised, r.price_amount + (SELECT COALESCE(sum(c.fee), 0)"
    "  FROM reservation_changes c WHERE c.reservation_id = r.id))) AS capture_basis"
    " FROM reservations r JOIN payments p ON p.lot_id = r.lot_id AND p.reservation_id = r.id"
    " AND p.purpose = 'reservation' WHERE r.id = :reservation_id FOR UPDATE")

# Reservations whose money is not where their status says it should be (the settlement sweeper's work list).
PAYMENTS_TO_SETTLE = text(
    "SELECT r.id FROM reservations r JOIN payments p ON p.lot_id = r.lot_id AND p.reservation_id = r.id"
    " AND p.purpose = 'reservation' WHERE p.status <> 'canceled' AND ("
    "  (r.status IN ('expired','cancelled') AND p.amount_captured = 0)"
    "  OR (r.status IN ('no_show','completed') AND p.amount_captured = 0)"
    "  OR (r.status = 'cancelled' AND p.amount_refunded = 0 AND p.amount_captured > 0)"
    "  OR (r.status = 'no_show' AND p.amount_refunded = 0 AND p.amount_captured >"
    "      COALESCE(CAST(r.quote -> 'policy' -> 'no_show_fee' ->> 'amount' AS bigint), 0))"
    "  OR (r.status IN ('confirmed','active') AND (r.status = 'active' OR r.starts_at <= :now) AND p.amount_authorised > 0"
    "      AND p.amount_captured = 0 AND r.quote -> 'policy' ->> 'capture' = 'at_start'))"
    " ORDER BY r.id LIMIT :limit")

# Provider truth (API replies and webhooks) applied monotonically: each amount is set once, never lowered.
INTENT_AUTHORISED = text(
    "UPDATE payments SET status = 'requires_capture', amount_authorised = :amount, updated_at = :now"
    " WHERE intent_id = :intent_id AND amount_authorised = 0 AND :amount > 0"
    " AND status NOT IN ('canceled','succeeded') RETURNING id")
INTENT_CAPTURED = text(
    "UPDATE payments SET status = 'succeeded', amount_authorised = GREATEST(amount_authorised, :amount),"
    " amount_captured = :amount, updated_at = :now"
    " WHERE intent_id = :intent_id AND amount_captured = 0 AND :amount > 0 AND status <> 'canceled' RETURNING id")
INTENT_CANCELED = text(
    "UPDATE payments SET status = 'canceled', updated_at = :now"
    " WHERE intent_id = :intent_id AND amount_captured = 0 AND status <> 'canceled' RETURNING id")
INTENT_FAILED = text(
    "UPDATE payments SET status = :status, updated_at = :now WHERE intent_id = :intent_id AND amount_authorised = 0"
    " AND status NOT IN ('canceled','succeeded','requires_capture') AND status <> :status RETURNING id")
INTENT_REFUNDED = text(
    "UPDATE payments SET amount_refunded = :amount, updated_at = :now"
    " WHERE intent_id = :intent_id AND amount_refunded < :amount AND :amount <= amount_captured RETURNING id")
PAYMENT_BY_INTENT = text("SELECT id, lot_id, status, amount_captured FROM payments WHERE intent_id = :intent_id")

# Webhook ledger: one row per provider event id; the first delivery applies, repeats are acknowledged.
INSERT_PAYMENT_EVENT = text(
    "INSERT INTO payment_events (provider, event_id, type, intent_id, received_at, outcome)"
    " VALUES (:provider, :event_id, :type, :intent_id, :now, 'pending') ON CONFLICT DO NOTHING RETURNING event_id")
SET_PAYMENT_EVENT_OUTCOME = text(
    "UPDATE payment_events SET outcome = :outcome WHERE provider = :provider AND event_id = :event_id")

# Sweepers: idempotent transitions; RETURNING tells the caller which slots to free in Redis.
EXPIRE_HOLDS = text(
    "UPDATE reservations SET status = 'expired', updated_at = :now WHERE status = 'held'"
    " AND hold_expires_at <= :now RETURNING lot_id, id")

MARK_NO_SHOWS = text(
    "UPDATE reservations r SET status = 'no_show', updated_at = :now FROM lots l"
    " WHERE l.id = r.lot_id AND r.status = 'confirmed' AND r.kind = 'reservation'"
    " AND r.starts_at + make_interval(mins => l.no_show_grace_minutes) <= :now RETURNING r.lot_id, r.id")

EARLY_DEPARTURES = text(
    "SELECT r.lot_id, r.id, r.exited_at FROM reservations r WHERE r.status = 'completed'"
    " AND r.exited_at IS NOT NULL AND upper(r.period) > r.exited_at AND r.exited_at > :since")

LOTS_WITH_SPOTS = text("SELECT id FROM lots WHERE capacity > 0 ORDER BY id")

SET_ACTIVE = text("UPDATE reservations SET status = 'active', entered_at = :now, updated_at = :now"
                  " WHERE id = :id AND status = 'confirmed'")
SET_COMPLETED = text("UPDATE reservations SET status = 'completed', exited_at = :now, updated_at = :now"
                     " WHERE id = :id AND status = 'active'")

RESERVATION_SLOTS = text(
    "SELECT s.idx, lower(r.period) AS slot_start, upper(r.period) AS slot_end FROM reservations r"
    " JOIN spots s ON s.lot_id = r.lot_id AND s.id = r.spot_id WHERE r.id = :id")

CHANGE_WINDOW = text(
    "UPDATE reservations SET starts_at = :starts_at, ends_at = :ends_at, period = tstzrange(:slot_start, :slot_end, '[)'),"
    " price_amount = :price, quote = CAST(:quote AS jsonb), updated_at = :now WHERE id = :id AND status = :status"
    " RETURNING id")

CODE_LOCK = text("SELECT pg_advisory_lock(hashtextextended(:k, 0))")
CODE_UNLOCK = text("SELECT pg_advisory_unlock(hashtextextended(:k, 0))")

# One row per lot whose Redis slot state a reconcile run had to repair (an alert on the operators' dashboard).
INSERT_REDIS_REPAIRS = text(
    "INSERT INTO redis_repairs (lot_id, repaired_at, bits_set, bits_cleared)"
    " SELECT l, :now, s, c FROM unnest(CAST(:lot_ids AS uuid[]), CAST(:bits_set AS bigint[]),"
    " CAST(:bits_cleared AS bigint[])) AS t(l, s, c)")
# Idempotency-Keys past their time (docs/adr/0015), oldest first, in bounded batches (created_at is indexed).
EXPIRE_IDEMPOTENCY_KEYS = text(
    "DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(SELECT ctid FROM idempotency_keys"
    " WHERE created_at < :before ORDER BY created_at LIMIT :batch))")

# --- Window changes and their money (booking.amendments) -------------------------------------------------------

# A held reservation's intent, not yet authorised, follows its price.
PAYMENT_AMOUNT = text(
    "UPDATE payments SET amount = :amount, updated_at = :now"
    " WHERE lot_id = :lot_id AND id = :id AND amount_authorised = 0 AND amount_captured = 0 RETURNING id")
# An incremental authorisation recorded once: only from the authorisation it was computed from.
PAYMENT_INCREMENTED = text(
    "UPDATE payments SET amount = :amount, amount_authorised = :amount, status = 'requires_capture',"
    " updated_at = :now WHERE lot_id = :lot_id AND id = :id AND amount_authorised = :previous"
    " AND amount_captured = 0 AND :amount > :previous RETURNING id")
INSERT_CHANGE = text(
    "INSERT INTO reservation_changes (lot_id, reservation_id, created_at, previous_starts_at, previous_ends_at,"
    " starts_at, ends_at, previous_price, price, fee, authorised_added, currency) VALUES (:lot_id, :reservation_id,"
    " :now, :previous_starts_at, :previous_ends_at, :starts_at, :ends_at, :previous_price, :price, :fee,"
    " :authorised_added, :currency) RETURNING id")
# Fees kept for time removed by earlier changes: the amount to capture is the price plus these.
CHANGE_FEES = text("SELECT COALESCE(sum(fee), 0) FROM reservation_changes WHERE reservation_id = :id")

# --- Monthly passes drivers buy (booking.pass_subscriptions) ----------------------------------------------------

LOT_FOR_PASS = text(
    "SELECT l.timezone, rc.body AS card FROM lots l LEFT JOIN rate_cards rc ON rc.lot_id = l.id WHERE l.id = :lot_id")
SUBSCRIPTION_COLUMNS = (
    "id, lot_id, user_id, spot_type, price_amount, currency, status, cancel_at_period_end, current_month, notice,"
    " created_at, updated_at")
INSERT_SUBSCRIPTION = text(
    "INSERT INTO pass_subscriptions (lot_id, user_id, plate_hash, spot_type, price_amount, currency, payment_method,"
    " status, current_month, created_at, updated_at) VALUES (:lot_id, :user_id, :plate_hash, :spot_type, :price,"
    f" :currency, :payment_method, 'active', :month, :now, :now) RETURNING {SUBSCRIPTION_COLUMNS}")
# A month's pass is written unpaid and marked paid once its charge is captured (the gate honours only paid ones).
INSERT_UNPAID_PASS = text(
    "INSERT INTO monthly_passes (lot_id, user_id, plate_hash, spot_type, month, price_amount, currency, created_at,"
    " subscription_id) VALUES (:lot_id, :user_id, :plate_hash, :spot_type, :month, :price, :currency, :now, :sub)"
    " ON CONFLICT (lot_id, plate_hash, month) DO NOTHING RETURNING id")
MARK_PASS_PAID = text(
    "UPDATE monthly_passes SET paid_at = :now WHERE lot_id = :lot_id AND id = :id AND paid_at IS NULL RETURNING paid_at")
INSERT_PASS_PAYMENT = text(
    "INSERT INTO payments (lot_id, provider, intent_id, purpose, status, amount, currency)"
    " VALUES (:lot_id, :provider, :intent_id, 'pass', :status, :amount, :currency) ON CONFLICT (intent_id) DO NOTHING")
PASS_PAYMENT_CAPTURED = text(
    "UPDATE payments SET status = 'succeeded', amount_authorised = :amount, amount_captured = :amount,"
    " updated_at = :now WHERE intent_id = :intent_id AND amount_captured = 0")
# Active subscriptions whose paid month is behind the lot's current month; concurrent sweeps skip each other's.
SUBSCRIPTIONS_DUE = text(
    "SELECT s.id, s.lot_id, s.user_id, s.plate_hash, s.spot_type, s.price_amount, s.currency, s.payment_method,"
    " s.cancel_at_period_end, s.current_month, l.timezone FROM pass_subscriptions s JOIN lots l ON l.id = s.lot_id"
    " WHERE s.status = 'active' AND s.current_month"
    "  < CAST(date_trunc('month', CAST(:now AS timestamptz) AT TIME ZONE l.timezone) AS date)"
    " ORDER BY s.current_month, s.id LIMIT :limit FOR UPDATE OF s SKIP LOCKED")
SUBSCRIPTION_RENEWED = text(
    "UPDATE pass_subscriptions SET current_month = :month, notice = NULL, updated_at = :now"
    " WHERE lot_id = :lot_id AND id = :id AND current_month = :previous AND status = 'active'")
SUBSCRIPTION_ENDS = text(
    "UPDATE pass_subscriptions SET status = :status, notice = :notice, updated_at = :now"
    " WHERE lot_id = :lot_id AND id = :id AND status = 'active'")
SUBSCRIPTION_CANCEL_AT_END = text(
    "UPDATE pass_subscriptions SET cancel_at_period_end = true, updated_at = :now"
    f" WHERE id = :id AND user_id = :user_id AND status = 'active' RETURNING {SUBSCRIPTION_COLUMNS}")
SUBSCRIPTION_OF_USER = text(f"SELECT {SUBSCRIPTION_COLUMNS} FROM pass_subscriptions WHERE id = :id AND user_id = :user_id")
SUBSCRIPTIONS_OF_USER = text(
    f"SELECT {SUBSCRIPTION_COLUMNS} FROM pass_subscriptions WHERE user_id = :user_id ORDER BY created_at DESC, id"
    " LIMIT 200")
