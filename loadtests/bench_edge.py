"""Edge agent local decision latency with the cloud unreachable: p50/p99 (target p99 < 10 ms).

    python -m loadtests.bench_edge [--events 2000] [--reservations 2000]

Two figures: the domain path (outbox append with fsync + local decision, in process) and the same
through the edge's HTTP endpoint (real uvicorn, `parkgrid edge run` app) with a keep-alive client.
The cloud URL points at a closed port, so every event is decided locally and queued in the outbox.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn

from api.edge_app import create_edge_app
from controllers.edge.agent import EdgeAgent, EdgeConfig
from controllers.edge.snapshot import edge_plate_hash, edge_plate_key
from controllers.edge.store import EdgeStore
from core.clock import SystemClock
from loadtests.bench_search import free_port


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def seeded_store(path: Path, reservations: int) -> tuple[EdgeStore, list[str], str]:
    store = await EdgeStore.open(path)
    lot = uuid.uuid4()
    key = edge_plate_key(b"bench-secret", lot)
    now = datetime.now(UTC)
    gate = str(uuid.uuid4())
    plates = [f"R{i:05d}" for i in range(reservations)]
    await store.replace_snapshot({
        "lot_id": str(lot), "generated_at": now.isoformat(), "plate_key": key.hex(), "capacity": 100_000, "occupied": 0,
        "early_arrival_minutes": 15, "gates": [{"id": gate, "name": "Entry", "direction": "entry"}],
        "reservations": [{"id": str(uuid.uuid4()), "plate_hash": edge_plate_hash(key, p), "qr_digest": None,
                          "starts_at": (now - timedelta(minutes=5)).isoformat(),
                          "ends_at": (now + timedelta(hours=2)).isoformat(), "spot": f"S{i}", "status": "confirmed"}
                         for i, p in enumerate(plates)],
        "passes": []})
    return store, plates, gate


async def domain_phase(args: argparse.Namespace, tmp: Path) -> list[float]:
    store, plates, gate = await seeded_store(tmp / "domain.sqlite3", args.reservations)
    agent = EdgeAgent(config=EdgeConfig(lot_id="x", device_key="k", cloud_url=f"http://127.0.0.1:{free_port()}"),
                      store=store, clock=SystemClock())
    agent.meta = await store.meta()
    lat = []
    for i in range(args.events):
        plate = plates[i % len(plates)] if i % 2 else f"W{i:05d}"  # half reservations, half walk-ins
        body = {"event_id": f"d{i}", "sequence": i, "occurred_at": datetime.now(UTC).isoformat(), "plate": plate,
                "plate_confidence": 0.95}
        t0 = time.perf_counter()
        d = await agent.handle_gate_event(gate_id=gate, body=body)
        lat.append((time.perf_counter() - t0) * 1000)
        assert d["decision"] == "open"
    await agent.aclose()
    await store.close()
    return lat


async def http_phase(args: argparse.Namespace, tmp: Path) -> list[float]:
    store, plates, gate = await seeded_store(tmp / "http.sqlite3", args.reservations)
    agent = EdgeAgent(config=EdgeConfig(lot_id="x", device_key="k", cloud_url=f"http://127.0.0.1:{free_port()}",
                                        snapshot_every=3600), store=store, clock=SystemClock())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_edge_app(agent), host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    lat = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"X-Device-Key": "k"}) as http:
        for i in range(args.events):
            plate = plates[i % len(plates)] if i % 2 else f"W{i:05d}"
            body = {"event_id": f"h{i}", "sequence": i, "occurred_at": datetime.now(UTC).isoformat(), "plate": plate,
                    "plate_confidence": 0.95}
            t0 = time.perf_counter()
            r = await http.post(f"/api/v1/gates/{gate}/events", json=body)
            lat.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200 and r.json()["decision"] == "open", r.text
    server.should_exit = True
    await task
    await store.close()
    return lat


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=2000)
    p.add_argument("--reservations", type=int, default=2000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        dom = asyncio.run(domain_phase(args, Path(d)))
        web = asyncio.run(http_phase(args, Path(d)))
    for name, lat in (("domain (outbox fsync + decision)", dom), ("HTTP POST to the edge", web)):
        print(f"edge local decision, {name}: p50 {statistics.median(lat):.2f} ms, p99 {pct(lat, 0.99):.2f} ms, "
              f"max {max(lat):.2f} ms over {len(lat)} events (target p99 < 10 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
