"""`parkgrid serve` with several workers: each worker listens on a socket of its own (SO_REUSEPORT).

uvicorn's own multi-worker mode shares one listening socket: the worker that happens to be awake accepts a
whole burst of connections, so long-lived keep-alive clients end up unevenly spread (64 benchmark connections
were split 44/20) and the busier worker's clients wait about twice as long. With one SO_REUSEPORT socket per
worker the kernel spreads connections by their address hash. The supervisor here is deliberately small:
start the workers, restart one that dies (on its own socket), stop them all on SIGINT or SIGTERM.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import time
from typing import Any

#: uvicorn.Config arguments of every worker (the app is read from settings when each worker starts)
APP_CONFIG: dict[str, Any] = {"app": "api.asgi:factory", "factory": True, "access_log": False,
                              "log_level": "warning", "lifespan": "on",
                              # OCPP chargers' WebSockets (api/ocpp.py): the websockets library's current
                              # implementation, not its deprecated legacy one that "auto" picks
                              "ws": "websockets-sansio"}


def reuse_port_available() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def _listening_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def _worker(sock: socket.socket, config: dict[str, Any]) -> None:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(**config))
    server.run(sockets=[sock])


def serve_reuse_port(*, host: str, port: int, workers: int) -> None:
    """Run `workers` uvicorn workers, one SO_REUSEPORT socket each, until SIGINT or SIGTERM."""
    spawn = multiprocessing.get_context("spawn")
    sockets = [_listening_socket(host, port) for _ in range(workers)]
    config = {**APP_CONFIG, "host": host, "port": port}
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    def start(i: int) -> multiprocessing.process.BaseProcess:
        proc = spawn.Process(target=_worker, args=(sockets[i], config), name=f"parkgrid-api-{i}")
        proc.start()
        return proc

    procs = [start(i) for i in range(workers)]
    started = [time.monotonic()] * workers
    while not stopping:
        time.sleep(0.5)
        for i, proc in enumerate(procs):
            if not proc.is_alive() and not stopping:
                if time.monotonic() - started[i] < 5:  # died while starting: the app or its settings are broken
                    stopping = True
                    break
                procs[i], started[i] = start(i), time.monotonic()
    for proc in procs:
        if proc.is_alive() and proc.pid is not None:
            proc.terminate()
    for proc in procs:
        proc.join(timeout=15)
        if proc.is_alive():
            proc.kill()
    for sock in sockets:
        sock.close()
