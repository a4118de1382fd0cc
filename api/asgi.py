"""ASGI entry point for uvicorn workers: settings are read when a worker starts, not at import."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from api.app import create_app
from core.settings import load_settings

#: young-generation threshold of the serving process (CPython's default is 700): a request allocates
#: thousands of short-lived objects, and every collection also walks what survived the last ones
GC_GEN0_THRESHOLD = 20_000


def factory() -> FastAPI:
    # preload: the search index is loaded at start-up, then the start-up heap is frozen (api.app.freeze_heap)
    app = create_app(load_settings(), preload=True)
    # and collections come less often: with the booking bench's holds in process (loadtests.profile_hold, timed
    # by gc.callbacks in a one-off run), GC CPU 0.63 -> 0.24 s per 5,000 holds with the freeze (docs/adr/0013)
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 10)
    return app
