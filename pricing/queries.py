"""Every SQL statement of the pricing package, with bound parameters only."""

from __future__ import annotations

from sqlalchemy import text

# A lot with its card (LEFT JOIN: a lot without a card is priced 0).
LOT_CARD = text(
    "SELECT l.id, l.timezone, rc.body::text AS body, rc.version FROM lots l LEFT JOIN rate_cards rc ON rc.lot_id = l.id"
    " WHERE l.id = :lot_id")

# One query per search page.
LOT_CARDS = text(
    "SELECT l.id, l.timezone, rc.body::text AS body, rc.version FROM lots l JOIN rate_cards rc ON rc.lot_id = l.id"
    " WHERE l.id = ANY(:lot_ids)")

CARD_OF_LOT = text("SELECT body, version, updated_at FROM rate_cards WHERE lot_id = :lot_id")

# Replacing a card bumps its version; reservations keep the price (and policy snapshot) they were sold at.
UPSERT_CARD = text(
    "INSERT INTO rate_cards (lot_id, currency, body, version, updated_at)"
    " VALUES (:lot_id, :currency, CAST(:body AS jsonb), 1, :now)"
    " ON CONFLICT (lot_id) DO UPDATE SET currency = EXCLUDED.currency, body = EXCLUDED.body,"
    " version = rate_cards.version + 1, updated_at = EXCLUDED.updated_at RETURNING version, updated_at")

# The spot types a lot has (a card must price each of them).
LOT_SPOT_TYPES = text("SELECT DISTINCT type FROM spots WHERE lot_id = :lot_id ORDER BY type")

# Booked occupancy of each lot for a window: in-service spots with an occupying reservation overlapping it.
BOOKED_OCCUPANCY = text(
    "SELECT s.lot_id, count(*) AS total,"
    " count(*) FILTER (WHERE EXISTS (SELECT 1 FROM reservations r WHERE r.lot_id = s.lot_id AND r.spot_id = s.id"
    "   AND r.status IN ('held','confirmed','active') AND r.period && tstzrange(:slot_start, :slot_end, '[)'))) AS busy"
    " FROM spots s WHERE s.lot_id = ANY(:lot_ids) AND s.status = 'in_service' GROUP BY s.lot_id")

# The policy a reservation was sold under (a snapshot in its quote), for refunds and fees.
RESERVATION_POLICY = text("SELECT quote -> 'policy' AS policy FROM reservations WHERE id = :id")

# Monthly passes: month is the first day of a calendar month in the lot's timezone.
INSERT_PASS = text(
    # an operator's sale is paid at the counter: recorded paid when sold
    "INSERT INTO monthly_passes (lot_id, user_id, plate_hash, spot_type, month, price_amount, currency, created_at,"
    " paid_at) VALUES (:lot_id, :user_id, :plate_hash, :spot_type, :month, :price, :currency, :now, :now)"
    " ON CONFLICT (lot_id, plate_hash, month) DO NOTHING"
    " RETURNING id, lot_id, spot_type, month, price_amount, currency, status, created_at")

PASS_BY_PLATE_MONTH = text(
    "SELECT id, lot_id, spot_type, month, price_amount, currency, status, created_at FROM monthly_passes"
    " WHERE lot_id = :lot_id AND plate_hash = :plate_hash AND month = :month")

PASSES_OF_LOT = text(
    "SELECT id, lot_id, spot_type, month, price_amount, currency, status, created_at FROM monthly_passes"
    " WHERE lot_id = :lot_id AND (CAST(:month AS date) IS NULL OR month = :month)"
    " AND (CAST(:after_id AS uuid) IS NULL OR id > :after_id) ORDER BY id LIMIT :limit")

ACTIVE_PASS = text(
    "SELECT p.id, p.lot_id, p.user_id, p.spot_type, p.month, p.price_amount, p.currency FROM monthly_passes p"
    " JOIN lots l ON l.id = p.lot_id WHERE p.lot_id = :lot_id AND p.plate_hash = :plate_hash"
    " AND p.status = 'active' AND p.paid_at IS NOT NULL"
    " AND p.month = CAST(date_trunc('month', CAST(:now AS timestamptz) AT TIME ZONE l.timezone) AS date)"
    " AND (CAST(:spot_type AS text) IS NULL OR p.spot_type IS NULL OR p.spot_type = :spot_type)")

CANCEL_PASS = text(
    "UPDATE monthly_passes SET status = 'cancelled' WHERE lot_id = :lot_id AND id = :id AND status = 'active'"
    " RETURNING id, lot_id, spot_type, month, price_amount, currency, status, created_at")

DISCOUNT_USES = text(
    "SELECT count(*) FROM reservations WHERE lot_id = :lot_id AND quote ->> 'discount_code' = :code"
    " AND status NOT IN ('expired','cancelled')")
