"""1,000 simulated OCPP 1.6J chargers on one API process: memory, CPU, and the lag from a StatusNotification to
the lot's ev_chargers (lot detail, read from PostgreSQL; search, read from the process's charger board).

    python -m loadtests.bench_ocpp [--chargers 1000] [--per-lot 10] [--heartbeat 30] [--steady 60] [--samples 200]

Creates its own database (migrated), chargers/10 lots with 10 two-connector chargers each, and runs `parkgrid serve
--workers 1` as a real process. Every simulated charger is the `ocpp` library's own ChargePoint over the
`websockets` library (all in this one client process): it connects with HTTP Basic auth, boots, reports both
connectors Available, then sends a Heartbeat every --heartbeat seconds (the interval the server gives it), at
random phases. Printed: the server worker's memory (RSS) before and with every charger connected, its CPU over
the steady phase (heartbeats only), and, beside them, /healthz's rate on the same process (the baseline). Then
--samples StatusNotifications (at random moments) toggle a connector between Available and Charging while the
others keep beating; for each, the time from sending it to the first lot detail / search answer that shows the
new counts (polled every 10 ms) gives the lag, p50 and p99 (target: p99 <= 1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import ocpp.messages
from ocpp.v16 import ChargePoint as OcppChargePoint
from ocpp.v16 import call
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from controllers.chargers import EvBoard, register_charger
from core.context import build_context
from loadtests.bench_sensors import _create_db, _drop_db
from loadtests.common import free_port, process_cpu_seconds, start_server, stop_server
from loadtests.search_city import BENCH_SECRET, bench_settings, database_url
from tests.factories import insert_lot

LAT, LNG = 48.137, 11.575


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def worker_pids(parent: int) -> list[int]:
    """The processes serving requests: `parkgrid serve --workers 1` runs uvicorn in its own process, more workers
    are its children."""
    with open(f"/proc/{parent}/task/{parent}/children") as f:
        children = [int(c) for c in f.read().split()]
    workers = []
    for child in children:  # not multiprocessing's resource tracker
        with contextlib.suppress(OSError), open(f"/proc/{child}/cmdline", "rb") as f:
            if b"resource_tracker" not in f.read():
                workers.append(child)
    return workers or [parent]


def rss_total(pids: list[int]) -> float:
    return sum(rss_mb(p) for p in pids)


def cpu_total(pids: list[int]) -> float:
    return sum(process_cpu_seconds(p) for p in pids)


async def seed(dbname: str, chargers: int, per_lot: int) -> list[tuple[uuid.UUID, str, str]]:
    """(lot id, charge point id, password) of every charger."""
    ctx = build_context(bench_settings(dbname))
    made = []
    try:
        for n in range(max(1, chargers // per_lot)):
            async with ctx.engine.begin() as conn:
                lot = await insert_lot(conn, name=f"EV lot {n}", lat=LAT + (n % 10) * 0.002, lng=LNG + (n // 10) * 0.002,
                                       spots={"ev": per_lot * 2, "regular": 10})
            pool = await ctx.pg()
            async with pool.acquire() as conn:
                for i in range(per_lot):
                    c = await register_charger(conn=conn, lot_id=lot, connectors=2, charge_point_id=f"bench-{n}-{i}")
                    made.append((lot, c.charge_point_id, c.password))
    finally:
        await ctx.aclose()
    return made[:chargers]


class SimCharger:
    def __init__(self, lot: uuid.UUID, cp_id: str, password: str) -> None:
        self.lot, self.cp_id, self.password = lot, cp_id, password
        self.cp: OcppChargePoint | None = None
        self.tasks: list[asyncio.Task[Any]] = []
        self.heartbeats = 0
        self.lock = asyncio.Lock()  # the library allows one call at a time per connection

    async def run(self, port: int, connected: asyncio.Event, stop: asyncio.Event, heartbeat: float) -> None:
        auth = base64.b64encode(f"{self.cp_id}:{self.password}".encode()).decode()
        async with connect(f"ws://127.0.0.1:{port}/ocpp/{self.cp_id}", subprotocols=[Subprotocol("ocpp1.6")],
                           additional_headers={"Authorization": f"Basic {auth}"}, open_timeout=60,
                           ping_interval=None) as ws:
            self.cp = cp = OcppChargePoint(self.cp_id, ws, response_timeout=30)
            reader = asyncio.create_task(cp.start())
            try:
                await cp.call(call.BootNotification(charge_point_model="Sim", charge_point_vendor="Bench"))
                for connector in (1, 2):
                    await self.status(connector, "Available")
                connected.set()
                await asyncio.sleep(random.uniform(0, heartbeat))
                while not stop.is_set():
                    async with self.lock:
                        await cp.call(call.Heartbeat())
                    self.heartbeats += 1
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), heartbeat)
            finally:
                reader.cancel()

    async def status(self, connector: int, state: str) -> None:
        assert self.cp is not None
        async with self.lock:
            await self.cp.call(call.StatusNotification(connector_id=connector, error_code="NoError", status=state,
                                                       timestamp=datetime.now(UTC).isoformat()))


async def lag_phase(port: int, sims: list[SimCharger], samples: int) -> tuple[list[float], list[float], list[float]]:
    """(ack seconds, detail lag seconds, search lag seconds) of `samples` StatusNotifications."""
    acks, detail, search = [], [], []
    state: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        async def charging(lot: uuid.UUID, via: str) -> int:
            if via == "detail":
                body = (await http.get(f"/api/v1/lots/{lot}")).json()
                return int(body["ev_chargers"]["charging"])
            res = await http.get("/api/v1/lots/search", params={"lat": LAT, "lng": LNG, "radius_m": 5000,
                                                                 "limit": 100})
            for item in res.json()["items"]:
                if item["lot"]["id"] == str(lot):
                    return int(item["ev_chargers"]["charging"])
            raise SystemExit(f"lot {lot} not in the search page")

        async def first_showing(lot: uuid.UUID, via: str, want: int, sent: float) -> float:
            while True:
                if await charging(lot, via) == want:
                    return time.perf_counter() - sent
                await asyncio.sleep(0.01)

        for n in range(samples):
            # at a random moment of the board's refresh cycle (right after a detection it has just reloaded)
            await asyncio.sleep(random.uniform(0, 0.6))
            sim = random.choice(sims)
            before = await charging(sim.lot, "detail")
            now_state = "Available" if state.get(sim.cp_id) == "Charging" else "Charging"
            want = before + (1 if now_state == "Charging" else -1)
            sent = time.perf_counter()
            await sim.status(1, now_state)
            acks.append(time.perf_counter() - sent)
            state[sim.cp_id] = now_state
            d, s = await asyncio.gather(first_showing(sim.lot, "detail", want, sent),
                                        first_showing(sim.lot, "search", want, sent))
            detail.append(d)
            search.append(s)
            if n % 50 == 49:
                print(f"  {n + 1} samples", flush=True)
    return acks, detail, search


async def healthz_rate(port: int, seconds: float = 3.0) -> float:
    done = 0
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < end:
                await http.get("/healthz")
                done += 1

        await asyncio.gather(*(worker() for _ in range(8)))
    return done / seconds


async def board_read_ms(dbname: str, rounds: int = 30) -> tuple[float, float]:
    """(ms per full read of the charger board, ms per `SELECT 1` round trip: the baseline), in this process."""
    ctx = build_context(bench_settings(dbname))
    try:
        board = EvBoard(pool=ctx.pg, refresh=timedelta(0))
        pool = await ctx.pg()
        await board.counts(datetime.now(UTC))
        t0 = time.perf_counter()
        for _ in range(rounds):
            await board.counts(datetime.now(UTC))
        read = (time.perf_counter() - t0) / rounds * 1000
        t0 = time.perf_counter()
        for _ in range(rounds):
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        ping = (time.perf_counter() - t0) / rounds * 1000
    finally:
        await ctx.aclose()
    return read, ping


def pct(data: list[float], q: float) -> float:
    ordered = sorted(data)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run(args: argparse.Namespace, port: int, server_pid: int,
              chargers: list[tuple[uuid.UUID, str, str]], dbname: str) -> None:
    ocpp.messages.ASYNC_VALIDATION = False  # the client's schema checks inline, not on a thread each
    workers = worker_pids(server_pid)
    base_rps = await healthz_rate(port)
    rss0 = rss_total(workers)
    sims = [SimCharger(*c) for c in chargers]
    stop = asyncio.Event()
    events = [asyncio.Event() for _ in sims]
    t0 = time.perf_counter()
    tasks = []
    for i, (sim, ev) in enumerate(zip(sims, events, strict=True)):
        tasks.append(asyncio.create_task(sim.run(port, ev, stop, args.heartbeat)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)  # a ramp, not one thundering herd
    await asyncio.gather(*(e.wait() for e in events))
    connect_s = time.perf_counter() - t0
    rss1 = rss_total(workers)
    cpu0, beats0, w0 = cpu_total(workers), sum(s.heartbeats for s in sims), time.perf_counter()
    await asyncio.sleep(args.steady)
    cpu1, beats1, w1 = cpu_total(workers), sum(s.heartbeats for s in sims), time.perf_counter()
    acks, detail, search = await lag_phase(port, sims, args.samples)
    rss2 = rss_total(workers)
    during_rps = await healthz_rate(port)
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    read_ms, ping_ms = await board_read_ms(dbname)
    steady_cpu = (cpu1 - cpu0) / (w1 - w0) * 100
    print(f"baseline GET /healthz ({len(workers)} worker(s), 8 conns) before the chargers: {base_rps:,.0f} req/s; "
          f"with {len(sims)} chargers connected: {during_rps:,.0f} req/s")
    print(f"chargers connected, booted, both connectors reported: {len(sims)} in {connect_s:.1f} s")
    print(f"workers' RSS: {rss0:.0f} MB before, {rss1:.0f} MB with {len(sims)} chargers "
          f"({(rss1 - rss0) * 1024 / len(sims):.0f} KB per charger), {rss2:.0f} MB after the lag phase")
    print(f"steady phase {w1 - w0:.0f} s: {beats1 - beats0} heartbeats ({(beats1 - beats0) / (w1 - w0):.1f}/s), "
          f"workers' CPU {steady_cpu:.1f} % of one core")
    print(f"StatusNotification acknowledged: p50 {pct(acks, 0.5):.1f} ms, p99 {pct(acks, 0.99):.1f} ms")
    print(f"lag to lot detail ev_chargers (PostgreSQL): p50 {pct(detail, 0.5):.1f} ms, "
          f"p99 {pct(detail, 0.99):.1f} ms, max {max(detail) * 1000:.1f} ms")
    print(f"lag to search ev_chargers (board, refresh {args.refresh_ms} ms): p50 {pct(search, 0.5):.1f} ms, "
          f"p99 {pct(search, 0.99):.1f} ms, max {max(search) * 1000:.1f} ms (target p99 <= 1000 ms; "
          f"mean {statistics.mean(search) * 1000:.1f} ms)")
    print(f"one full read of the charger board ({len(sims) * 2} connectors, in the client process): {read_ms:.1f} ms; "
          f"baseline SELECT 1 round trip {ping_ms:.2f} ms")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--chargers", type=int, default=1000)
    p.add_argument("--per-lot", type=int, default=10)
    p.add_argument("--heartbeat", type=int, default=30)
    p.add_argument("--steady", type=float, default=60.0)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--refresh-ms", type=int, default=500, help="PARKGRID_EV_BOARD_REFRESH_MS of the server")
    p.add_argument("--workers", type=int, default=1,
                   help="API workers; with 2, a search is often answered by the worker not holding the charger")
    args = p.parse_args()
    dbname = f"bench_ocpp_{uuid.uuid4().hex[:6]}"
    _create_db(dbname)
    try:
        chargers = asyncio.run(seed(dbname, args.chargers, args.per_lot))
        port = free_port()
        server = start_server(database_url(dbname), port, args.workers, {
            "PARKGRID_SECRET_KEY": BENCH_SECRET, "PARKGRID_REDIS_PREFIX": f"bench-{dbname}",
            "PARKGRID_OCPP_HEARTBEAT_SECONDS": str(args.heartbeat), "PARKGRID_EV_BOARD_REFRESH_MS": str(args.refresh_ms)})
        try:
            asyncio.run(run(args, port, server.pid, chargers, dbname))
        finally:
            stop_server(server)
    finally:
        _drop_db(dbname)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
