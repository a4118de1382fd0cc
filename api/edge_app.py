"""The edge agent's HTTP surface: the same gate-events endpoint the cloud serves, for the lot's gates."""

from __future__ import annotations

import asyncio
import hmac
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Header, Path
from fastapi.responses import JSONResponse

from api.problems import install_problem_handlers
from controllers.edge.agent import EdgeAgent
from controllers.messages import GateEventIn  # the cloud route's model: one verdict per event


def _problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse({"type": f"https://parkgrid.dev/problems/{title.lower().replace(' ', '-')}", "title": title,
                         "status": status, "detail": detail}, status_code=status, media_type="application/problem+json")


def create_edge_app(agent: EdgeAgent, *, run_background: bool = True) -> FastAPI:
    """An ASGI app around one EdgeAgent; its lifespan runs the sync loop."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await agent.start()
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop)) if run_background else None
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task
            await agent.aclose()

    app = FastAPI(title="ParkGrid edge agent", lifespan=lifespan)
    # the cloud's problem+json for every error (a refused body names its fields and never echoes the input,
    # which may hold what JSON cannot write back, NaN for one)
    install_problem_handlers(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/edge/status")
    async def status() -> dict[str, Any]:
        return await agent.status()

    @app.post("/api/v1/gates/{gate_id}/events", response_model=None)
    async def gate_event(gate_id: Annotated[uuid.UUID, Path()], body: GateEventIn,
                         x_device_key: Annotated[str | None, Header(alias="X-Device-Key", max_length=200)] = None
                         ) -> dict[str, Any] | JSONResponse:
        if not x_device_key or not hmac.compare_digest(x_device_key, agent.config.device_key):
            return _problem(401, "Unauthorized", "unknown device key")
        if not agent.knows_gate(str(gate_id)):
            return _problem(404, "Not found", f"gate {gate_id} not found")
        return await agent.handle_gate_event(gate_id=str(gate_id), body=body.model_dump(mode="json", exclude_unset=True))

    return app
