"""Pure ASGI middleware: request id, body size cap, Prometheus request metrics."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.logging import get_logger, request_id_var

log = get_logger("parkgrid.http")


class HttpMetrics:
    """Request counters and latency histograms in the app's own registry (one per app, tests too)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("parkgrid_http_requests_total", "HTTP requests", ["method", "route", "status"],
                                registry=registry)
        self.latency = Histogram("parkgrid_http_request_seconds", "HTTP request latency", ["method", "route"],
                                 registry=registry,
                                 buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))


#: answers a request of one path ahead of routing (returns None), or leaves it to the app, having sent nothing:
#: returns the `Receive` the app reads the request from (the one it was given, or one replaying a body it read)
Shortcut = Callable[[Scope, Receive, Send], Awaitable[Receive | None]]


async def read_body(receive: Receive) -> tuple[bytes | None, Receive]:
    """For a shortcut that reads the body before deciding: the whole body (None when the client left before
    sending it all), and a `Receive` that hands the messages read on again, then reads on from `receive`."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    whole = message["type"] == "http.request"
    body = b"".join(m.get("body", b"") for m in messages) if whole else None

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return body, replay


class _BodyTooLarge(Exception):
    pass


class RequestContextMiddleware:
    """Assigns X-Request-ID, caps the request body, records metrics and logs one line per request. `shortcuts`
    answer the hottest paths ahead of routing (by exact path; see `Shortcut`)."""

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics, max_body_bytes: int,
                 shortcuts: dict[str, Shortcut] | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.shortcuts = shortcuts if shortcuts is not None else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")[:64]
        rid = incoming if incoming and incoming.replace("-", "").isalnum() else uuid.uuid4().hex
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status_holder = {"status": 500}
        declared = headers.get(b"content-length")
        try:
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                await _send_too_large(scope, send, rid, self.max_body_bytes)
                status_holder["status"] = 413
                return
            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body_bytes:
                        raise _BodyTooLarge
                return message

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status_holder["status"] = message["status"]
                    message.setdefault("headers", [])
                    message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
                await send(message)

            try:
                shortcut = self.shortcuts.get(scope["path"])
                passed_on: Receive | None = limited_receive
                if shortcut is not None:
                    passed_on = await shortcut(scope, limited_receive, send_with_id)
                if passed_on is not None:
                    await self.app(scope, passed_on, send_with_id)
            except _BodyTooLarge:
                status_holder["status"] = 413
                await _send_too_large(scope, send, rid, self.max_body_bytes)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method, template, str(status_holder["status"])).inc()
            self.metrics.latency.labels(method, template).observe(elapsed)
            if status_holder["status"] >= 500:
                log.warning("request", method=method, path=scope.get("path"), status=status_holder["status"],
                            ms=round(elapsed * 1000, 2))
            request_id_var.reset(token)


async def _send_too_large(scope: Scope, send: Send, rid: str, limit: int) -> None:
    body: dict[str, Any] = {
        "type": "https://parkgrid.dev/problems/payload-too-large",
        "title": "Payload too large",
        "status": 413,
        "detail": f"request body exceeds {limit} bytes",
        "instance": scope.get("path", ""),
    }
    raw = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/problem+json"), (b"content-length", str(len(raw)).encode()),
                            (b"x-request-id", rid.encode())]})
    await send({"type": "http.response.body", "body": raw})
