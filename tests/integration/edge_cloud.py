"""The cloud process for the edge agent tests: the real ParkGrid app on the real PostgreSQL and Redis.

Run: python -m tests.integration.edge_cloud --port P   (PARKGRID_* settings from the environment)
`EDGE_CLOUD_DELAY_MS` adds network latency to every gate call (an ASGI wrapper, not a change to any
logic) so a test can kill the agent in the middle of a sync.
"""

from __future__ import annotations

import asyncio
import os
import sys

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from api.app import create_app
from core.settings import load_settings


class SlowGateLink:
    """Delays gate event requests, like a slow uplink from the lot."""

    def __init__(self, app: ASGIApp, delay_s: float) -> None:
        self.app = app
        self.delay_s = delay_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "/gates/" in scope.get("path", ""):
            await asyncio.sleep(self.delay_s)
        await self.app(scope, receive, send)


def main() -> None:
    port = int(sys.argv[sys.argv.index("--port") + 1])
    app: ASGIApp = create_app(load_settings())
    delay = float(os.environ.get("EDGE_CLOUD_DELAY_MS", "0")) / 1000
    if delay:
        app = SlowGateLink(app, delay)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")


if __name__ == "__main__":
    main()
