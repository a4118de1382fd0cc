"""The Celery app factory and the per-worker-process context tasks run in."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from celery import Celery

from core.context import AppContext, build_context
from core.settings import Settings, load_settings

T = TypeVar("T")


def create_celery(settings: Settings, *, task_modules: Iterable[str] = (),
                  beat_schedule: dict[str, dict[str, Any]] | None = None) -> Celery:
    """A Celery app on the configured broker; tasks are acked late so a crashed worker loses none."""
    app = Celery("parkgrid", broker=settings.broker_url, include=list(task_modules))
    app.conf.update(
        task_default_queue=settings.celery_queue,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule=beat_schedule or {},
    )
    return app


_worker: dict[str, Any] = {}


def worker_context() -> tuple[AppContext, asyncio.AbstractEventLoop]:
    """This process's context and event loop, built on first use (after the worker forks)."""
    if "ctx" not in _worker:
        loop = asyncio.new_event_loop()
        _worker["loop"] = loop
        _worker["ctx"] = build_context(load_settings())
    return _worker["ctx"], _worker["loop"]


def run_in_worker(job: Callable[[AppContext], Awaitable[T]]) -> T:
    """Run an async domain job on this worker process's loop and context."""
    ctx, loop = worker_context()
    return loop.run_until_complete(job(ctx))
