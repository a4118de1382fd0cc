"""The schema is ready to be distributed by lot_id (Citus, docs/adr/0024-past-one-machine.md).

Lint: every table is classified (distributed by lot_id, or a reference/global table with a stated reason);
a lot-scoped table carries lot_id in its primary, unique and exclusion keys, and its foreign keys to other
lot-scoped tables go through lot_id. Plans: every hot query's scans of lot-scoped tables filter on lot_id.
A table or a query that breaks the rule fails here until it is fixed or listed with its plan.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import asyncpg

from booking import queries as bq
from controllers import queries_gates as gq
from controllers import sensor_queries as sq
from core.context import AppContext

#: tables sharded by lot_id (lots by its id): the colocation group
DISTRIBUTED = {
    "lots", "levels", "zones", "spots", "gates", "devices", "reservations", "parking_sessions", "rate_cards",
    "monthly_passes", "payments", "plate_debts", "sensors", "controller_events", "sensor_events",
    "sensor_events_default", "occupancy_snapshots", "lot_spot_counts", "sensor_event_ids", "mqtt_gate_inbox",
    "lot_walk_nodes", "destination_walks", "lot_alert_states", "reservation_changes", "sensor_mappings",
    "pass_subscriptions", "dashboard_alert_acks", "redis_repairs", "chargers", "charger_connectors",
    "charging_sessions", "occupancy_15m", "occupancy_hourly", "forecasts",
}
#: not lot-scoped: reference tables (small, read everywhere, replicated to every node), or tables of another
#: owner (a user, a partner) that Citus would distribute by that owner's id
REFERENCE = {"organisations", "users", "partners", "refresh_tokens", "vehicles", "payment_events", "exports",
             "idempotency_keys", "outbox", "lot_index_version", "walk_areas", "walk_nodes", "walk_edges",
             "destinations", "alembic_version", "spatial_ref_sys", "partner_webhooks", "webhook_deliveries",
             "forecast_models"}
#: keys of distributed tables that do not include lot_id today, each with its plan in ADR 0024
KNOWN_GLOBAL_KEYS = {
    ("lots", "lots_external_ref_key"): "OSM ids are unique across lots: a reference table external_ref -> lot_id",
    ("devices", "devices_key_hash_key"): "a device key is looked up before its lot is known: reference key table",
    ("payments", "payments_intent_id_key"): "webhooks name the intent only: reference table intent_id -> lot_id",
    ("reservations", "reservations_id_key"):
        "reservation ids are looked up alone (QR tokens, /reservations/{id}): a lot-prefixed public id routes them",
    ("chargers", "chargers_charge_point_id_key"):
        "a charger connects by its id before its lot is known: reference table charge_point_id -> lot_id",
    ("charging_sessions", "charging_sessions_id_key"):
        "OCPP transaction ids are integers the charger echoes without its lot: ids drawn per lot range, or a "
        "reference table transaction id -> lot_id",
    ("reservations", "reservations_one_car_one_reservation"):
        "one car, one reservation across lots: a plate_claims table distributed by plate_hash, written in the "
        "same (2PC) transaction",
}


async def lint(pg: asyncpg.Connection) -> list[str]:
    """What keeps the schema from being distributed by lot_id (empty: nothing)."""
    problems = []
    tables = {r["relname"] for r in await pg.fetch(
        "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')")}
    for table in sorted(tables - DISTRIBUTED - REFERENCE):
        problems.append(f"{table}: not classified as distributed by lot_id or reference")
    rows = await pg.fetch(
        "SELECT c.conrelid::regclass::text AS tbl, c.conname, c.contype::text AS contype,"
        " ARRAY(SELECT a.attname FROM unnest(c.conkey) k JOIN pg_attribute a ON a.attrelid = c.conrelid"
        "       AND a.attnum = k)::text[] AS cols,"
        " c.confrelid::regclass::text AS ref,"
        " ARRAY(SELECT a.attname FROM unnest(c.confkey) k JOIN pg_attribute a ON a.attrelid = c.confrelid"
        "       AND a.attnum = k)::text[] AS ref_cols"
        " FROM pg_constraint c WHERE c.connamespace = 'public'::regnamespace AND c.contype IN ('p', 'u', 'x', 'f')")
    # unique indexes that back no constraint are keys too
    rows = [*rows, *await pg.fetch(
        "SELECT t.relname AS tbl, i.relname AS conname, 'u' AS contype,"
        " ARRAY(SELECT a.attname FROM unnest(x.indkey) k JOIN pg_attribute a ON a.attrelid = x.indrelid"
        "       AND a.attnum = k)::text[] AS cols, NULL AS ref, NULL::text[] AS ref_cols"
        " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid"
        " WHERE x.indisunique AND t.relnamespace = 'public'::regnamespace"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)")]
    for r in rows:
        table = r["tbl"]
        if table not in DISTRIBUTED or (table, r["conname"]) in KNOWN_GLOBAL_KEYS:
            continue
        key = "id" if table == "lots" else "lot_id"
        if r["contype"] in ("p", "u", "x") and key not in r["cols"]:
            problems.append(f"{table}.{r['conname']}: {r['contype']} key {r['cols']} lacks {key}")
        if (r["contype"] == "f" and r["ref"] in DISTRIBUTED and r["ref"] != "lots"
                and ("lot_id" not in r["cols"] or "lot_id" not in r["ref_cols"])):
            problems.append(f"{table}.{r['conname']}: foreign key {r['cols']} -> {r['ref']}{r['ref_cols']} "
                            "crosses lots")
    return problems


async def test_every_table_is_classified_and_lot_scoped_keys_carry_lot_id(ctx: AppContext) -> None:
    async with (await ctx.pg()).acquire() as pg:
        assert await lint(pg) == []


async def test_negative_control_the_lint_catches_a_global_key(ctx: AppContext) -> None:
    async with (await ctx.pg()).acquire() as pg:
        tr = pg.transaction()
        await tr.start()
        DISTRIBUTED.add("lot_notes")
        try:
            await pg.execute("CREATE TABLE lot_notes (lot_id uuid NOT NULL, id uuid PRIMARY KEY, note text UNIQUE)")
            await pg.execute("CREATE TABLE scratch_pad (id int)")
            problems = await lint(pg)
        finally:
            DISTRIBUTED.discard("lot_notes")
            await tr.rollback()
    assert any(p.startswith("lot_notes.lot_notes_pkey") for p in problems), problems
    assert any(p.startswith("lot_notes.lot_notes_note_key") for p in problems)
    assert "scratch_pad: not classified as distributed by lot_id or reference" in problems


#: the hot paths' statements (asyncpg, positional parameters): holds, the PostgreSQL-only path, gates, sensors
HOT = {
    "hold write": bq.HOLD_WRITE, "hold lot": bq.HOLD_LOT, "free spot candidate": bq.FREE_SPOT_CANDIDATE,
    "gate": gq.GATE, "gate ledger insert": gq.LEDGER_INSERT, "gate ledger decision": gq.LEDGER_DECISION,
    "entry lookup": gq.ENTRY_LOOKUP, "walk-in by event": gq.WALK_IN_BY_EVENT,
    "session by reservation": gq.SESSION_ID_BY_RESERVATION, "claim sensor events": sq.CLAIM_EVENT_IDS,
    "lock sensors": sq.LOCK_SENSORS,
}
#: scans that do not filter on lot_id, and why they may stay (ADR 0024)
KNOWN_CROSS_LOT_SCANS = {
    ("hold write", "u"): "a driver's unpaid holds across lots: a per-driver counter (reference) under Citus",
    ("hold lot", "reservations"): "the same count, read when a hold was refused",
}
_DUMMY: dict[str, Any] = {
    "uuid": uuid.UUID(int=1), "text": "x", "varchar": "x", "bpchar": "x", "int4": 1, "int8": 1, "int2": 1, "bool": False,
    "float8": 1.0, "numeric": 1, "bytea": b"x", "jsonb": "{}", "json": "{}",
    "timestamptz": dt.datetime(2030, 1, 1, tzinfo=dt.UTC), "date": dt.date(2030, 1, 1),
}


def _value(name: str) -> Any:
    """A value of the PostgreSQL type `name` (arrays `_name` hold one element)."""
    if name.endswith("[]"):
        return [_value(name[:-2])]
    return [_value(name[1:])] if name.startswith("_") else _DUMMY[name]


def _scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    out = [node] if "Relation Name" in node else []
    for child in node.get("Plans", []):
        out += _scans(child)
    return out


async def cross_lot_scans(pg: asyncpg.Connection, name: str, sql: str) -> tuple[list[str], set[tuple[str, str]]]:
    """Scans of lot-scoped tables in `sql`'s plan that do not filter on lot_id, and the allowlist entries
    that excused others."""
    stmt = await pg.prepare(sql)
    args = [_value(t.name) for t in stmt.get_parameters()]
    plan = json.loads(await pg.fetchval("EXPLAIN (FORMAT JSON, VERBOSE) " + sql, *args))[0]["Plan"]
    bad, excused = [], set()
    for scan in _scans(plan):
        table, alias = scan["Relation Name"], scan.get("Alias", "")
        if table not in DISTRIBUTED or scan["Node Type"] == "ModifyTable":  # an insert's row carries its lot_id
            continue
        known = {(name, alias), (name, table)} & set(KNOWN_CROSS_LOT_SCANS)
        key = "id" if table == "lots" else "lot_id"
        conditions = " ".join(str(scan.get(k, "")) for k in ("Index Cond", "Filter", "Recheck Cond", "Join Filter"))
        if f"{key} = " in conditions or f".{key} =" in conditions:
            continue
        if known:
            excused |= known
            continue
        bad.append(f"{table} {alias}: {scan['Node Type']} [{conditions.strip()}]")
    return bad, excused


async def test_hot_queries_scan_lot_scoped_tables_by_lot_id(ctx: AppContext) -> None:
    used: set[tuple[str, str]] = set()
    async with (await ctx.pg()).acquire() as pg:
        for name, sql in HOT.items():
            bad, excused = await cross_lot_scans(pg, name, sql)
            assert bad == [], f"{name} scans lot-scoped tables without lot_id: {bad}"
            used |= excused
        # a negative control: a lookup by reservation id alone reads every lot's rows
        bad, _ = await cross_lot_scans(pg, "control", "SELECT status FROM reservations WHERE id = $1")
        assert bad and bad[0].startswith("reservations reservations")
    assert used == set(KNOWN_CROSS_LOT_SCANS), "an allowlisted cross-lot scan is gone: drop it from the list"
