"""The edge agent against a real cloud process: offline decisions, outbox, sync exactly once, kill -9.

The cloud is `tests/integration/edge_cloud.py`: the real app (gates, edge-snapshot) on the real
PostgreSQL and Redis, with added uplink latency when a test needs to catch the agent mid-sync.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import text

from core.context import AppContext
from core.security import normalise_plate, plate_hash
from core.settings import Settings
from tests.conftest import ROOT, TEST_SECRET
from tests.factories import device_key_for, insert_lot
from tests.procs import free_port, wait_port


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**os.environ, "PARKGRID_DATABASE_URL": settings.database_url, "PARKGRID_REDIS_URL": settings.redis_url,
            "PARKGRID_REDIS_PREFIX": settings.redis_prefix, "PARKGRID_BROKER_URL": settings.broker_url,
            "PARKGRID_SECRET_KEY": TEST_SECRET, "PARKGRID_RATE_LIMITS": "off", "PARKGRID_LOG_LEVEL": "warning", **extra}


def start_cloud(settings: Settings, port: int, delay_ms: int = 0) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.integration.edge_cloud", "--port", str(port)], cwd=ROOT,
                            env=_env(settings, EDGE_CLOUD_DELAY_MS=str(delay_ms)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_port(port, timeout=30)
    return proc


def start_edge(settings: Settings, *, lot: uuid.UUID, key: str, cloud_port: int, port: int,
               data_dir: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "cli", "edge", "run", "--lot", str(lot), "--device-key", key,
                             "--cloud", f"http://127.0.0.1:{cloud_port}", "--listen", f"127.0.0.1:{port}",
                             "--data-dir", str(data_dir), "--timeout", "0.5", "--snapshot-every", "2"],
                            cwd=ROOT, env=_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_port(port, timeout=30)
    return proc


def kill9(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            kill9(proc)


async def _wait(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)  # waiting on other processes, not on domain time
    raise AssertionError("condition not reached in time")


async def _count(ctx: AppContext, sql: str, **params: object) -> int:
    async with ctx.engine.connect() as conn:
        return int(await conn.scalar(text(sql), params) or 0)


async def test_edge_decides_offline_and_syncs_exactly_once_through_kill9(ctx: AppContext, settings: Settings,
                                                                          tmp_path: Path) -> None:
    real_now = datetime.now(UTC)  # both processes run on the wall clock
    async with ctx.engine.begin() as conn:
        lot = await insert_lot(conn, spots={"regular": 80})
        key = await device_key_for(conn, lot)
        gates = {r.direction: str(r.id) for r in await conn.execute(text("SELECT id, direction FROM gates WHERE lot_id = :l"),
                                                                    {"l": lot})}
        spot = (await conn.execute(text("SELECT id, label FROM spots WHERE lot_id = :l ORDER BY idx LIMIT 1"),
                                   {"l": lot})).first()
        start, end = real_now - timedelta(minutes=5), real_now + timedelta(hours=2)
        await conn.execute(text(
            "INSERT INTO reservations (lot_id, spot_id, vehicle_type, plate, plate_hash, starts_at, ends_at, period, status)"
            " VALUES (:l, :s, 'regular', 'RES 001', :h, :a, :b, tstzrange(:a, :b, '[)'), 'confirmed')"),
            {"l": lot, "s": spot.id, "h": plate_hash(TEST_SECRET.encode(), normalise_plate("RES 001")), "a": start, "b": end})
    cloud_port, edge_port = free_port(), free_port()
    cloud = start_cloud(settings, cloud_port)
    edge = start_edge(settings, lot=lot, key=key, cloud_port=cloud_port, port=edge_port, data_dir=tmp_path)
    procs = [cloud, edge]
    headers = {"X-Device-Key": key}
    seq = 0

    def event(plate: str, **extra: object) -> dict[str, object]:
        nonlocal seq
        seq += 1
        return {"event_id": f"ev-{seq:04d}", "sequence": seq, "occurred_at": datetime.now(UTC).isoformat(),
                "plate": plate, "plate_confidence": 0.97, **extra}

    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge_port}", timeout=10) as http:
            async def snapshot_loaded() -> bool:
                return (await http.get("/edge/status")).json()["snapshot_at"] is not None
            await _wait(snapshot_loaded)
            online = await http.post(f"/api/v1/gates/{gates['entry']}/events", json=event("ONLINE1"), headers=headers)
            assert online.status_code == 200, online.text
            assert online.json()["decision"] == "open" and not online.json().get("offline")  # the cloud decided
            assert (await http.post(f"/api/v1/gates/{gates['entry']}/events", json=event("X"),
                                    headers={"X-Device-Key": "wrong"})).status_code == 401
            seq -= 1

            kill9(cloud)  # the cloud goes away
            decisions = []
            t0 = time.perf_counter()
            sent: list[dict[str, object]] = [event("RES 001")]
            sent += [event(f"W{i:03d}") for i in range(1, 60)]
            sent += [event(f"W{i:03d}") for i in range(1, 41)]
            for i, ev in enumerate(sent):
                gate = gates["entry"] if i < 60 else gates["exit"]
                r = await http.post(f"/api/v1/gates/{gate}/events", json=ev, headers=headers)
                assert r.status_code == 200, r.text
                decisions.append(r.json())
            elapsed = time.perf_counter() - t0
            assert len(decisions) == 100 and all(d["offline"] for d in decisions)
            assert decisions[0]["decision"] == "open" and decisions[0]["spot"] == spot.label  # reservation, offline
            assert all(d["decision"] == "open" for d in decisions)  # walk-ins fit; exits never trap a car
            again = await http.post(f"/api/v1/gates/{gates['entry']}/events", json=sent[5], headers=headers)
            assert again.json() == decisions[5]  # a repeated event_id gets the first decision, offline too
            assert elapsed < 20
            assert (await http.get("/edge/status")).json()["pending"] == 100

            cloud = start_cloud(settings, cloud_port, delay_ms=40)  # slow, so the agent is caught mid-sync
            procs.append(cloud)

            async def some_synced() -> bool:
                return await _count(ctx, "SELECT count(*) FROM controller_events WHERE lot_id = :l", l=lot) >= 20
            await _wait(some_synced)
            kill9(edge)  # mid-sync
            mid = await _count(ctx, "SELECT count(*) FROM controller_events WHERE lot_id = :l", l=lot)
            assert 20 <= mid < 101
        edge = start_edge(settings, lot=lot, key=key, cloud_port=cloud_port, port=edge_port, data_dir=tmp_path)
        procs.append(edge)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge_port}", timeout=10) as http:
            async def drained() -> bool:
                return (await http.get("/edge/status")).json()["pending"] == 0
            await _wait(drained, timeout=90)
    finally:
        for p in procs:
            stop(p)

    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT event_id, sequence FROM controller_events WHERE lot_id = :l AND source = 'gate' ORDER BY received_at"),
            {"l": lot})).all()
        assert len(rows) == 101 and len({r.event_id for r in rows}) == 101  # every event applied exactly once
        assert [r.sequence for r in rows] == sorted(r.sequence for r in rows)  # in the device's sequence order
        sessions = (await conn.execute(text(
            "SELECT count(*) FILTER (WHERE status = 'active') AS active, count(*) AS total FROM parking_sessions"
            " WHERE lot_id = :l"), {"l": lot})).one()
        assert sessions.total == 61  # ONLINE1 + RES 001 + 59 walk-ins, each entered once
        assert sessions.active == 21  # 40 of them left
