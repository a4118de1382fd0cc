"""Broker reachability, for readiness checks (Redis or RabbitMQ, by URL)."""

from __future__ import annotations

import asyncio

from kombu import Connection


def _check(url: str, timeout: float) -> None:
    with Connection(url, connect_timeout=timeout, transport_options={"socket_timeout": timeout,
                                                                     "socket_connect_timeout": timeout}) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)


async def check_broker(url: str, *, timeout: float = 1.0) -> None:  # noqa: ASYNC109 - also the socket timeout
    """Raise if the broker does not accept a connection within `timeout` seconds."""
    await asyncio.wait_for(asyncio.to_thread(_check, url, timeout), timeout=timeout * 3)
