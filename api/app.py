"""The application factory: everything is built from the Settings passed in, nothing at import."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from api import ocpp
from api.allow import install_allow_header
from api.middleware import HttpMetrics, RequestContextMiddleware, Shortcut
from api.openapi import install_openapi
from api.problems import install_problem_handlers
from api.routers import (
    auth,
    chargers,
    dashboard,
    destinations,
    displays,
    exports,
    forecasts,
    gates,
    health,
    lots,
    me,
    me_passes,
    ogc,
    open_data,
    passes,
    payments,
    payments_local,
    rates,
    reservations,
    search,
    sensor_registry,
    sensors,
    sessions,
    zones,
)
from api.ui import install_pages
from core.clock import Clock
from core.context import AppContext, build_context, migration_head
from core.logging import configure_logging
from core.settings import Settings
from geo.lotindex import lot_index

API_PREFIX = "/api/v1"


def freeze_heap() -> None:
    """Move what a worker holds after start-up (modules, the app and its schemas, the search index: ~280,000
    objects plus ~1 per lot) out of the cyclic garbage collector's reach. They live as long as the worker (the
    index until lots change), yet every full collection walked them: a 120 ms pause of the event loop every few
    thousand searches with 20,000 lots, 370 ms with 100,000, and 13-38 us of collector time per search on
    average. Frozen objects are still freed by reference counting; garbage is collected first so none is frozen."""
    gc.collect()
    gc.freeze()


def create_app(settings: Settings, *, clock: Clock | None = None, context: AppContext | None = None,
               preload: bool = False) -> FastAPI:
    """Build a ParkGrid API app; tests pass their own settings, clock or context. With `preload` (server
    workers), start-up loads the search index before the first request instead of during it, then freezes the
    heap (`freeze_heap`)."""
    configure_logging(settings.log_level)
    ctx = context or build_context(settings, clock=clock)
    ctx.extras.setdefault("migration_head", migration_head())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            if preload:
                await lot_index(ctx).preload()
                freeze_heap()
            yield
        finally:
            if context is None:  # a context handed in belongs to the caller
                await ctx.aclose()

    app = FastAPI(
        title="ParkGrid API",
        version="0.1.0",
        description="City-scale parking discovery and booking.",
        lifespan=lifespan,
        docs_url=None,  # served by api.ui from local assets (no CDN)
        redoc_url=None,  # likewise
    )
    app.state.ctx = ctx
    app.state.settings = settings
    registry = CollectorRegistry()
    app.state.registry = registry
    # plain searches and holds are answered ahead of routing (api.routers.search.shortcut, reservations')
    shortcuts: dict[str, Shortcut] = {API_PREFIX + "/lots/search": search.shortcut(),
                                      API_PREFIX + "/reservations": reservations.hold_shortcut()}
    shortcuts.update(open_data.shortcuts())  # conditional feed polls (304)
    app.add_middleware(RequestContextMiddleware, metrics=HttpMetrics(registry), max_body_bytes=settings.max_body_bytes,
                       shortcuts=shortcuts)
    install_problem_handlers(app)
    install_openapi(app)
    install_allow_header(app)

    # Every request walks the included routers in this order until one matches (tens of microseconds per
    # router passed), so the hot paths come first: search (drivers' most frequent request; a single route, so
    # the others pay one failed match for it), holds, gate and sensor events.
    app.include_router(health.router)
    app.include_router(search.router, prefix=API_PREFIX)  # before lots: /lots/search is not a lot id
    app.include_router(reservations.router)
    app.include_router(gates.router, prefix=API_PREFIX)
    app.include_router(sensors.router, prefix=API_PREFIX)
    app.include_router(lots.router, prefix=API_PREFIX)
    app.include_router(zones.router, prefix=API_PREFIX)
    app.include_router(destinations.router, prefix=API_PREFIX)
    app.include_router(auth.router)
    app.include_router(me.router)
    app.include_router(me_passes.router)
    app.include_router(open_data.router)
    app.include_router(sessions.router, prefix=API_PREFIX)
    app.include_router(displays.router, prefix=API_PREFIX)
    app.include_router(rates.router, prefix=API_PREFIX)
    app.include_router(passes.router, prefix=API_PREFIX)
    app.include_router(payments.router)
    app.include_router(exports.router)
    app.include_router(ogc.router)
    app.include_router(dashboard.router, prefix=API_PREFIX)
    install_pages(app)
    app.include_router(payments_local.router)
    app.include_router(sensor_registry.router, prefix=API_PREFIX)
    app.include_router(ocpp.router)  # WebSocket /ocpp/{charge_point_id}
    app.include_router(chargers.router, prefix=API_PREFIX)
    app.include_router(forecasts.router, prefix=API_PREFIX)
    return app
