"""The Redis client: short timeouts, because a slow Redis must fall back, not stall requests."""

from __future__ import annotations

from typing import cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from core.settings import Settings


def create_redis(settings: Settings) -> aioredis.Redis:
    """A pooled asyncio client that gives up after settings.redis_timeout_ms (a cluster client when
    settings.redis_cluster)."""
    timeout = settings.redis_timeout_ms / 1000
    if settings.redis_cluster:
        return create_cluster(settings)
    return aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry_on_timeout=False,
        # A pooled connection that Redis dropped (a restart) fails once on its next use: reconnect and send
        # again, once and at once, instead of counting Redis as down (the holds' breaker would send every
        # hold of that worker to the PostgreSQL-only path for its cooldown, once per stale connection). A
        # Redis that is really down refuses the reconnect at once. The scripts a reset can re-run after they
        # ran (hold, release) are idempotent; a sensor counter could count one batch twice until rebuilt.
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[RedisConnectionError],
        health_check_interval=0,
        max_connections=256,
        decode_responses=False,
    )


def create_cluster(settings: Settings) -> aioredis.Redis:
    """redis-py's cluster client from any node's URL. It follows MOVED/ASK redirections and, after a failover,
    reloads the slot map from the nodes it knows. Every command and script ParkGrid sends names keys of one lot
    (one hash tag, one slot) or one global key, so the cluster client is a drop-in for the calls we make; the
    cast says so to the type checker (RedisCluster is not a subclass of Redis)."""
    timeout = settings.redis_timeout_ms / 1000
    cluster = RedisCluster.from_url(
        settings.redis_url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # after a master dies its slots answer nothing until a replica is promoted (cluster-node-timeout):
        # a few quick attempts (each reloads the slot map), then the breaker sends holds to the PostgreSQL-only
        # path as for a single Redis
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 3),
        max_connections=256,
        decode_responses=False,
    )
    return cast(aioredis.Redis, cluster)
