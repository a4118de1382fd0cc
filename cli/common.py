"""Helpers shared by CLI commands: settings, an async runner, JSON output."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from core.context import AppContext, build_context
from core.settings import Settings, SettingsError, load_settings

T = TypeVar("T")


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        print(exc.code, file=sys.stderr)
        raise SystemExit(2) from None


def run_with_context(job: Callable[[AppContext], Awaitable[T]]) -> T:
    """Build a context from the environment, run `job`, close the context."""
    settings = settings_or_exit()

    async def runner() -> T:
        ctx = build_context(settings)
        try:
            return await job(ctx)
        finally:
            await ctx.aclose()

    return asyncio.run(runner())


def emit(obj: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, default=str))
    else:
        for key, value in obj.items():
            print(f"{key}: {value}")
