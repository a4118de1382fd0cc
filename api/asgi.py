"""ASGI entry point for uvicorn workers: settings are read when a worker starts, not at import."""

from __future__ import annotations

from fastapi import FastAPI

from api.app import create_app
from core.settings import load_settings


def factory() -> FastAPI:
    # preload: the search index is loaded at start-up, then the start-up heap is frozen (api.app.freeze_heap)
    return create_app(load_settings(), preload=True)
