"""Every SQL statement of the geo package, with bound parameters only.

Search comes in one complete statement per prefilter (the H3 ring at r9 or r7, ST_DWithin on the GiST
index, a bounding box): each one gets its own prepared plan instead of one plan juggling them all. The
statements are assembled once, at import, from the constant fragments below; no value is ever spliced.
"""

from __future__ import annotations

from sqlalchemy import TextClause, text

ACTIVE_STATUSES = "('held','confirmed','active')"

# --- availability -------------------------------------------------------------------------------

# Positional ($1 lot ids, $2 always usable types, $3 types usable where the lot allows EV overflow, $4-$5 the
# window) for the raw asyncpg pool: search counts its page on the hot path (docs/adr/0007-hot-paths-on-asyncpg.md).
AVAILABLE_COUNTS = f"""
WITH cap AS (
    SELECT c.lot_id, sum(c.in_service) AS n
    FROM lot_spot_counts c JOIN lots l ON l.id = c.lot_id
    WHERE c.lot_id = ANY($1::uuid[])
      AND (c.spot_type = ANY($2::text[]) OR (l.ev_overflow AND c.spot_type = ANY($3::text[])))
    GROUP BY c.lot_id
), busy AS (
    SELECT r.lot_id, count(DISTINCT r.spot_id) AS n
    FROM reservations r
    JOIN spots s ON s.lot_id = r.lot_id AND s.id = r.spot_id
    JOIN lots l ON l.id = r.lot_id
    WHERE r.lot_id = ANY($1::uuid[]) AND r.status IN {ACTIVE_STATUSES}
      AND r.period && tstzrange($4::timestamptz, $5::timestamptz, '[)')
      AND s.status = 'in_service'
      AND (s.type = ANY($2::text[]) OR (l.ev_overflow AND s.type = ANY($3::text[])))
    GROUP BY r.lot_id
)
SELECT cap.lot_id, greatest(cap.n - coalesce(busy.n, 0), 0) AS available
FROM cap LEFT JOIN busy ON busy.lot_id = cap.lot_id
"""

# Busy in-service spots per lot and spot type for one window ($1-$2), city-wide: one statement serves every
# search of that window for a while (geo.availability.BusyCache); lots without a booking are not listed.
BUSY_BY_LOT_AND_TYPE = f"""
SELECT r.lot_id, s.type, count(DISTINCT r.spot_id) AS busy
FROM reservations r JOIN spots s ON s.lot_id = r.lot_id AND s.id = r.spot_id
WHERE r.status IN {ACTIVE_STATUSES} AND s.status = 'in_service'
  AND r.period && tstzrange($1::timestamptz, $2::timestamptz, '[)')
GROUP BY r.lot_id, s.type
"""

AVAILABLE_BY_LEVEL = text(f"""
SELECT c.level_id, c.spot_type, c.in_service, greatest(c.in_service - coalesce(b.busy, 0), 0) AS available
FROM lot_spot_counts c
LEFT JOIN (
    SELECT s.level_id, s.type, count(DISTINCT r.spot_id) AS busy
    FROM reservations r JOIN spots s ON s.lot_id = r.lot_id AND s.id = r.spot_id
    WHERE r.lot_id = :lot_id AND r.status IN {ACTIVE_STATUSES} AND s.status = 'in_service'
      AND r.period && tstzrange(CAST(:starts_at AS timestamptz), CAST(:ends_at AS timestamptz), '[)')
    GROUP BY s.level_id, s.type
) b ON b.level_id = c.level_id AND b.type = c.spot_type
WHERE c.lot_id = :lot_id
ORDER BY c.level_id, c.spot_type
""")

# --- search -------------------------------------------------------------------------------------
# Order and keyset use `location <-> point` (sphere distance, which the GiST index can return in order:
# a KNN scan reads only the nearest rows), the reported distance is ST_Distance on the same sphere.
# Capacity comes from lots.spots_in_service (kept by triggers), so no per-candidate join is needed.

_POINT = "ST_SetSRID(ST_MakePoint(CAST(:lng AS float8), CAST(:lat AS float8)), 4326)::geography"
_ENVELOPE = ("ST_Segmentize(ST_MakeEnvelope(CAST(:{w} AS float8), CAST(:s AS float8), CAST(:{e} AS float8), "
             "CAST(:n AS float8), 4326), 0.05)::geography")
_CAPACITY = ("lot_usable_capacity(l.spots_in_service, CAST(:usable AS integer[]), l.ev_overflow, "
             "CAST(:ev_if_overflow AS integer))")
PREFILTERS = {
    "st_dwithin": f"ST_DWithin(l.location, {_POINT}, CAST(:radius AS float8), false)",
    "h3_r9": "l.h3_r9 = ANY(CAST(:cells AS bigint[]))",
    "h3_r7": "l.h3_r7 = ANY(CAST(:cells AS bigint[]))",
    "bbox": (f"(l.location && {_ENVELOPE.format(w='w1', e='e1')}"
             f" OR l.location && {_ENVELOPE.format(w='w2', e='e2')})"),
}
_REFINE_RADIUS = f"ST_Distance(l.location, {_POINT}, false) <= CAST(:radius AS float8)"
_LAT, _LNG = "ST_Y(l.location::geometry)", "ST_X(l.location::geometry)"
_REFINE_BBOX = (f"{_LAT} BETWEEN CAST(:s AS float8) AND CAST(:n AS float8) AND "
                f"({_LNG} BETWEEN CAST(:w1 AS float8) AND CAST(:e1 AS float8) "
                f"OR {_LNG} BETWEEN CAST(:w2 AS float8) AND CAST(:e2 AS float8))")

_SEARCH = """
SELECT p.id, p.name, p.sort_key, ST_Distance(p.location, {point}, false) AS distance_m, p.capacity,
       ST_Y(p.location::geometry) AS lat, ST_X(p.location::geometry) AS lng
FROM (
    SELECT l.id, l.name, l.location, l.location <-> {point} AS sort_key, {capacity} AS capacity
    FROM lots l
    WHERE l.status = 'open' AND {prefilter} AND {refine}
      AND l.amenities @> CAST(:amenities AS text[])
      AND l.booking_horizon_days >= CAST(:horizon_days AS integer)
      AND {capacity} > 0
      AND (l.location <-> {point}, l.id) > (CAST(:after_d AS float8), CAST(:after_id AS uuid))
    ORDER BY l.location <-> {point}, l.id
    LIMIT CAST(:limit AS integer)
) p
ORDER BY p.sort_key, p.id
"""

# KNN: the GiST index returns lots nearest first and the scan stops after `scan` rows, so a dense
# downtown costs the same as a sparse suburb. Only the index's own conditions (the partial index's
# status, the distance floor of the page) are in WHERE: any filter the planner can only guess at
# (amenities, usable capacity) would shrink its row estimate until a bitmap scan + sort of every lot in
# the radius looked cheaper. Those filters come back as `eligible`; radius, keyset ties and eligibility
# are applied by geo.search, which reads another chunk only when this one did not fill the page.
SEARCH_KNN = text(f"""
SELECT l.id, l.name, l.location <-> {_POINT} AS sort_key, ST_Distance(l.location, {_POINT}, false) AS distance_m,
       {_CAPACITY} AS capacity, ST_Y(l.location::geometry) AS lat, ST_X(l.location::geometry) AS lng,
       (l.amenities @> CAST(:amenities AS text[]) AND l.booking_horizon_days >= CAST(:horizon_days AS integer)
        AND {_CAPACITY} > 0) AS eligible
FROM lots l
WHERE l.status = 'open' AND l.location <-> {_POINT} >= CAST(:from_d AS float8)
ORDER BY l.location <-> {_POINT}
LIMIT CAST(:scan AS integer)
""")

SEARCH: dict[str, TextClause] = {
    name: text(_SEARCH.format(point=_POINT, capacity=_CAPACITY, prefilter=clause,
                              # ST_DWithin on the sphere is already exact: no second distance test
                              refine={"bbox": _REFINE_BBOX, "st_dwithin": "true"}.get(name, _REFINE_RADIUS)))
    for name, clause in PREFILTERS.items()
}

# --- the in-process lot index (geo.lotindex), raw asyncpg ---------------------------------------------------------

INDEX_VERSION = "SELECT n FROM lot_index_version"

INDEX_LOTS = """
SELECT l.id, l.name, ST_Y(l.location::geometry) AS lat, ST_X(l.location::geometry) AS lng, l.amenities,
       l.booking_horizon_days, l.ev_overflow, l.spots_in_service
FROM lots l WHERE l.status = 'open'
"""

# One row per distinct card body (a city's lots mostly share a few), so each body crosses the wire once.
INDEX_CARDS = """
SELECT rc.body::text AS body, array_agg(rc.lot_id) AS lot_ids, array_agg(rc.version) AS versions,
       array_agg(l.timezone) AS zones
FROM rate_cards rc JOIN lots l ON l.id = rc.lot_id AND l.status = 'open'
GROUP BY rc.body::text
"""

# --- zones (H3 heatmap) -------------------------------------------------------------------------

ZONE_LOTS = text(f"""
SELECT l.id, l.h3_r7, l.h3_r9, {_CAPACITY} AS capacity
FROM lots l
WHERE l.status = 'open' AND {PREFILTERS['bbox']}
  AND ST_Y(l.location::geometry) BETWEEN CAST(:s AS float8) AND CAST(:n AS float8)
  AND (ST_X(l.location::geometry) BETWEEN CAST(:w1 AS float8) AND CAST(:e1 AS float8)
       OR ST_X(l.location::geometry) BETWEEN CAST(:w2 AS float8) AND CAST(:e2 AS float8))
LIMIT CAST(:max_lots AS integer)
""")

# --- registry -----------------------------------------------------------------------------------

INSERT_LOT = text("""
INSERT INTO lots (organisation_id, name, address, location, h3_r7, h3_r9, timezone, kind, amenities, opening_hours,
                  height_limit_cm, ev_overflow, booking_horizon_days, allocation_strategy, fee, external_ref)
VALUES (:organisation_id, :name, :address,
        ST_SetSRID(ST_MakePoint(CAST(:lng AS float8), CAST(:lat AS float8)), 4326)::geography,
        :h3_r7, :h3_r9, :timezone, :kind, CAST(:amenities AS text[]), :opening_hours, :height_limit_cm,
        :ev_overflow, :booking_horizon_days, :allocation_strategy, :fee, :external_ref)
RETURNING id
""")

INSERT_LEVEL = text("INSERT INTO levels (lot_id, name, ordinal) VALUES (:lot_id, :name, :ordinal) RETURNING id")

INSERT_SPOTS = text("""
INSERT INTO spots (lot_id, idx, level_id, label, type, rank)
SELECT :lot_id, u.idx, u.level_id, u.label, u.type, u.rank
FROM unnest(CAST(:idx AS integer[]), CAST(:level_ids AS uuid[]), CAST(:labels AS text[]), CAST(:types AS text[]),
            CAST(:ranks AS integer[])) AS u(idx, level_id, label, type, rank)
""")

INSERT_GATE = text("INSERT INTO gates (lot_id, name, direction) VALUES (:lot_id, :name, :direction)")

LOT_ORG_FOR_UPDATE = text("SELECT organisation_id FROM lots WHERE id = :lot_id FOR UPDATE")
LOT_ORG = text("SELECT organisation_id FROM lots WHERE id = :lot_id")

SELECT_LOT = text("""
SELECT id, organisation_id, name, address, ST_Y(location::geometry) AS lat, ST_X(location::geometry) AS lng,
       timezone, kind, amenities, opening_hours, height_limit_cm, status, ev_overflow, booking_horizon_days,
       allocation_strategy, fee, external_ref, capacity, h3_r7, h3_r9, created_at, updated_at
FROM lots WHERE id = :lot_id
""")

SELECT_LEVELS = text("""
SELECT v.id, v.name, v.ordinal, coalesce(sum(c.total), 0)::integer AS capacity,
       coalesce(sum(c.in_service), 0)::integer AS in_service,
       coalesce(jsonb_object_agg(c.spot_type, c.in_service) FILTER (WHERE c.spot_type IS NOT NULL), '{}') AS by_type
FROM levels v LEFT JOIN lot_spot_counts c ON c.lot_id = v.lot_id AND c.level_id = v.id
WHERE v.lot_id = :lot_id
GROUP BY v.id, v.name, v.ordinal ORDER BY v.ordinal
""")

SELECT_GATES = text("SELECT id, name, direction FROM gates WHERE lot_id = :lot_id ORDER BY direction, name, id")

UPDATE_LOT = text("""
UPDATE lots SET
    name = coalesce(:name, name),
    address = coalesce(:address, address),
    location = CASE WHEN CAST(:lat AS float8) IS NULL THEN location
               ELSE ST_SetSRID(ST_MakePoint(CAST(:lng AS float8), CAST(:lat AS float8)), 4326)::geography END,
    h3_r7 = coalesce(:h3_r7, h3_r7),
    h3_r9 = coalesce(:h3_r9, h3_r9),
    timezone = coalesce(:timezone, timezone),
    kind = coalesce(:kind, kind),
    amenities = coalesce(CAST(:amenities AS text[]), amenities),
    opening_hours = CASE WHEN :set_opening_hours THEN :opening_hours ELSE opening_hours END,
    height_limit_cm = CASE WHEN :set_height_limit_cm THEN :height_limit_cm ELSE height_limit_cm END,
    fee = CASE WHEN :set_fee THEN :fee ELSE fee END,
    ev_overflow = coalesce(:ev_overflow, ev_overflow),
    booking_horizon_days = coalesce(:booking_horizon_days, booking_horizon_days),
    allocation_strategy = coalesce(:allocation_strategy, allocation_strategy),
    status = coalesce(:status, status),
    updated_at = :now
WHERE id = :lot_id
""")

NEXT_SPOT_IDX = text("SELECT coalesce(max(idx) + 1, 0) FROM spots WHERE lot_id = :lot_id")
LEVEL_OF_LOT = text("SELECT name, ordinal FROM levels WHERE lot_id = :lot_id AND id = :level_id")

SET_SPOT_STATUS = text("""
UPDATE spots SET status = :status
WHERE lot_id = :lot_id AND id = ANY(CAST(:spot_ids AS uuid[])) AND status <> :status
""")
COUNT_SPOTS = text("SELECT count(*) FROM spots WHERE lot_id = :lot_id AND id = ANY(CAST(:spot_ids AS uuid[]))")

LIST_SPOTS = text("""
SELECT id, idx, label, level_id, type, status, features FROM spots
WHERE lot_id = :lot_id AND idx > :after_idx
  AND (CAST(:status AS text) IS NULL OR status = :status)
  AND (CAST(:level_id AS uuid) IS NULL OR level_id = :level_id)
ORDER BY idx LIMIT :limit
""")

LIST_LOTS = text("""
SELECT id FROM lots
WHERE (CAST(:organisation_id AS uuid) IS NULL OR organisation_id = :organisation_id) AND id > :after_id
ORDER BY id LIMIT :limit
""")

EXTERNAL_REFS_TAKEN = text("SELECT external_ref FROM lots WHERE external_ref = ANY(CAST(:refs AS text[]))")
