"""The Redis client after a Redis restart: a pooled connection that Redis dropped is reconnected and the command
sent again, so a restart does not count as Redis being down (core.redis.create_redis)."""

import asyncio
import subprocess
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from core.redis import create_redis
from tests.conftest import make_settings
from tests.procs import kill, start_redis


@dataclass
class Restarted:
    ok: int
    failed: int


async def _gets_after_restart(client: aioredis.Redis, port: int, proc: subprocess.Popen[bytes]) -> Restarted:
    await asyncio.gather(*(client.set(f"k{i}", i) for i in range(8)))  # eight pooled connections
    kill(proc)
    restarted = start_redis(port)
    try:
        results = await asyncio.gather(*(client.get(f"k{i}") for i in range(8)), return_exceptions=True)
    finally:
        kill(restarted)
    failed = sum(isinstance(r, RedisConnectionError) for r in results)
    return Restarted(len(results) - failed, failed)


async def test_a_restart_costs_no_failed_command(private_redis: tuple[int, subprocess.Popen[bytes]]) -> None:
    port, proc = private_redis
    client = create_redis(make_settings(redis_url=f"redis://127.0.0.1:{port}/0"))
    try:
        assert await _gets_after_restart(client, port, proc) == Restarted(ok=8, failed=0)
        with pytest.raises(RedisConnectionError):  # a Redis that is really down still fails at once
            await client.get("k0")
    finally:
        await client.aclose()


async def test_negative_control_without_the_retry_every_stale_connection_fails_once(
        private_redis: tuple[int, subprocess.Popen[bytes]]) -> None:
    port, proc = private_redis
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=0.25, retry=None,
                                     health_check_interval=0)
    try:
        assert (await _gets_after_restart(client, port, proc)).failed > 0
    finally:
        await client.aclose()
