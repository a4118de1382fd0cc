"""A local Redis Cluster for tests and benchmarks: 3 masters + 3 replicas of the machine's redis-server,
joined by `redis-cli --cluster create`."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.procs import wait_port

NODE_TIMEOUT_MS = 1000  # how long a silent master is given before a replica takes over


@dataclass
class LocalCluster:
    ports: list[int]
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    workdir: Path | None = None

    @property
    def url(self) -> str:
        alive = [p for p in self.ports if self.procs[p].poll() is None]
        return f"redis://127.0.0.1:{alive[0]}/0"

    def masters(self) -> list[int]:
        """Ports of the nodes that are masters now and not failed (asked of a live node)."""
        nodes = self._node(self.live()[0]).execute_command("CLUSTER NODES")  # parsed: {"host:port@bus": {...}}
        return sorted(int(addr.split("@")[0].rsplit(":", 1)[1]) for addr, node in nodes.items()
                      if "master" in node["flags"] and "fail" not in node["flags"])

    def master_of(self, key: str) -> int:
        """Port of the master serving `key`'s slot now."""
        slot = self._node(self.live()[0]).execute_command("CLUSTER KEYSLOT", key)
        for lo, hi, master, *_ in self._node(self.live()[0]).execute_command("CLUSTER SLOTS"):
            if lo <= slot <= hi:
                return int(master[1])
        raise LookupError(key)

    def live(self) -> list[int]:
        return [p for p in self.ports if self.procs[p].poll() is None]

    def kill(self, port: int) -> None:
        self.procs[port].kill()
        self.procs[port].wait(timeout=10)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node says the cluster is ok and every slot has a live master."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if all(self._state(p) == "ok" for p in self.live()):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise TimeoutError("the cluster did not become ok")

    def wait_failover(self, victim: int, timeout: float = 30.0) -> None:
        """Until the dead master is marked failed, a replica serves its slots and the cluster is ok."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if victim not in self.masters() and len(self.masters()) == 3:
                    self.wait_ok(max(0.1, deadline - time.monotonic()))
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"no replica took over from {victim}")

    def _state(self, port: int) -> str:
        info = self._node(port).execute_command("CLUSTER INFO")  # redis-py parses it into a dict
        if isinstance(info, dict):
            return str(info.get("cluster_state", ""))
        return "ok" if b"cluster_state:ok" in info else ""

    def _node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too: both must stay below 65536."""
    while True:
        port = random.randint(20_000, 55_000)
        try:
            for p in (port, port + 10_000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port


def start_cluster() -> LocalCluster:
    """Six fresh redis-servers in cluster mode, three of them masters with one replica each."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
    workdir = Path(tempfile.mkdtemp(prefix="pgcluster-"))
    cluster = LocalCluster(ports=[cluster_port() for _ in range(6)], workdir=workdir)
    try:
        for port in cluster.ports:
            cluster.procs[port] = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", f"nodes-{port}.conf", "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                 "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port in cluster.ports:
            wait_port(port)
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in cluster.ports),
                        "--cluster-replicas", "1", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        cluster.wait_ok()
        # every replica has finished its first sync before a test may kill its master
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            infos = [cluster._node(p).info("replication") for p in cluster.ports]
            if sum(1 for i in infos if i.get("role") == "slave" and i.get("master_link_status") == "up") == 3:
                break
            time.sleep(0.1)
    except BaseException:
        cluster.stop()
        raise
    return cluster
