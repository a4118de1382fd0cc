"""What every HTTP benchmark shares: closed-loop drivers, latency summaries, a server subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HEADER = f"{'phase':<34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'n':>8} {'errors':>6}"

#: one call of a client: True when the answer is a success (or an expected refusal), False for an error
Call = Callable[[random.Random], Awaitable[bool]]


@dataclass
class Result:
    name: str
    latencies: list[float] = field(default_factory=list)
    #: when each recorded call started, in seconds after the warm-up (same order as latencies)
    started: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000

    def timeline(self, step: float = 1.0) -> str:
        """p50/p99 and calls per `step` seconds of the run: a slow tail spread evenly, or a few stalls."""
        buckets: dict[int, list[float]] = {}
        for t, lat in zip(self.started, self.latencies, strict=True):
            buckets.setdefault(int(t // step), []).append(lat * 1000)
        out = [f"{self.name}: second  calls  p50 ms  p99 ms  max ms"]
        for b in sorted(buckets):
            data = sorted(buckets[b])
            out.append(f"{'':>{len(self.name) + 2}}{b * step:>6.0f} {len(data):>6} {data[len(data) // 2]:>7.1f} "
                       f"{data[min(len(data) - 1, int(0.99 * len(data)))]:>7.1f} {data[-1]:>7.1f}")
        return "\n".join(out)

    def line(self) -> str:
        mean = statistics.fmean(self.latencies) * 1000 if self.latencies else float("nan")
        return (f"{self.name:<34} {self.rps:>9.0f} {self.pct(0.5):>8.1f} {self.pct(0.99):>8.1f} {mean:>8.1f} "
                f"{len(self.latencies):>8} {self.errors:>6}")


async def drive(name: str, *, concurrency: int, duration: float, warmup: float,
                make_worker: Callable[[int], Awaitable[Call]], result: Result | None = None,
                during: Callable[[], None] | None = None) -> Result:
    """Run `concurrency` closed-loop clients for warmup + duration seconds; record only after warm-up. `during`
    is called once, when the warm-up ends (every client connected)."""
    result = result or Result(name)
    started = time.perf_counter()
    record_from, stop_at = started + warmup, started + warmup + duration

    async def client(i: int) -> None:
        rng = random.Random(i)
        call = await make_worker(i)
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            try:
                ok = await call(rng)
            except Exception:
                ok = False
            t1 = time.perf_counter()
            if t0 >= record_from:
                if ok:
                    result.latencies.append(t1 - t0)
                    result.started.append(t0 - record_from)
                else:
                    result.errors += 1

    async def observe() -> None:
        if during is not None:
            await asyncio.sleep(warmup)
            await asyncio.to_thread(during)

    await asyncio.gather(observe(), *(client(i) for i in range(concurrency)))
    result.seconds = duration
    return result


def process_cpu_seconds(pid: int) -> float:
    """CPU time of a local process: schedstat (ns) when the kernel keeps it, else utime + stime in clock ticks;
    0 for a process that is gone."""
    # no schedstat on this kernel (or the process is gone): the coarser /proc/PID/stat below
    with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its children (a server's workers), from /proc (a local server only)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += process_cpu_seconds(p)
        with contextlib.suppress(OSError), open(f"/proc/{p}/task/{p}/children") as f:  # gone: no children
            todo += [int(c) for c in f.read().split()]
    return total


def connections_per_worker(port: int) -> list[int]:
    """How many established connections each server process holds on `port`, busiest first (`ss`, local server):
    whether the workers share the clients evenly."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"], capture_output=True,
                         text=True, check=False).stdout
    counts: dict[str, int] = {}
    for pid in re.findall(r"pid=(\d+)", out):
        counts[pid] = counts.get(pid, 0) + 1
    return sorted(counts.values(), reverse=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(db_url: str, port: int, workers: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`parkgrid serve` on its own port and database, once /healthz answers on every worker."""
    full = {**os.environ, "PARKGRID_DATABASE_URL": db_url, "PARKGRID_RATE_LIMITS": "off",
            "PARKGRID_LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT), **env}
    proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", str(workers)], cwd=ROOT, env=full, start_new_session=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as res:
                if res.status == 200:
                    time.sleep(1.0)  # let the second worker finish starting
                    return proc
        except OSError:
            time.sleep(0.2)
    stop_server(proc)
    raise SystemExit("server did not start")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


async def asgi_call(app: Any, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """One request straight into the ASGI app (no HTTP client or server in the way), as uvicorn would call it:
    the answer's status and body. `path` may carry a query string."""
    path, _, query = path.partition("?")
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if body:
        raw += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
             "raw_path": path.encode(), "query_string": query.encode(), "root_path": "", "scheme": "http", "headers": raw,
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80)}
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": body, "more_body": False},
                                      {"type": "http.disconnect"}]
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if len(messages) > 1 else messages[0]

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)
