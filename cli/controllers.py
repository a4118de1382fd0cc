"""`parkgrid ingest` (MQTT controller topics) and `parkgrid edge run` (the edge agent)."""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from datetime import datetime
from pathlib import Path

import typer

from cli.common import settings_or_exit
from controllers.gates import decide_mqtt, gate_deps
from controllers.messages import GateEventIn

edge = typer.Typer(no_args_is_help=True, help="The edge agent beside a lot's gates.")


def register(app: typer.Typer) -> None:
    @app.command()
    def ingest(client_id: str = typer.Option("parkgrid-ingest", help="MQTT client id (persistent session)"),
               flush_ms: int = typer.Option(50, min=1, help="batch window for sensor events")) -> None:
        """Consume MQTT sensor and gate topics into the system."""
        from controllers.mqtt_ingest import Ingestor, run_ingest
        from controllers.occupancy import counters_for
        from core.context import build_context
        from core.logging import configure_logging

        settings = settings_or_exit()
        configure_logging(settings.log_level)

        async def main() -> None:
            ctx = build_context(settings)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            gates = gate_deps(ctx)

            async def decide_gate(lot_id: uuid.UUID, gate_id: uuid.UUID, body: GateEventIn, now: datetime) -> None:
                await decide_mqtt(deps=gates, lot_id=lot_id, gate_id=gate_id, body=body, now=now)

            ingestor = Ingestor(engine=ctx.engine, pg=await ctx.pg(), counters=counters_for(ctx), clock=ctx.clock,
                                flush_every=flush_ms / 1000, gate_decider=decide_gate)
            ready = asyncio.Event()

            async def announce() -> None:
                await ready.wait()
                print(f"parkgrid ingest: subscribed on {settings.mqtt_url}", flush=True)

            announcer = asyncio.create_task(announce())
            try:
                await run_ingest(ingestor=ingestor, mqtt_url=settings.mqtt_url, client_id=client_id, stop=stop,
                                 ready=ready)
            finally:
                announcer.cancel()
                await ctx.aclose()

        asyncio.run(main())

    app.add_typer(edge, name="edge")


@edge.command("run")
def edge_run(lot: str = typer.Option(..., help="the lot's id"),
             device_key: str = typer.Option(..., envvar="PARKGRID_EDGE_DEVICE_KEY", help="the lot's device key"),
             cloud: str = typer.Option(..., help="cloud base URL, e.g. https://api.parkgrid.example"),
             listen: str = typer.Option("127.0.0.1:8081", help="HOST:PORT the gates talk to"),
             data_dir: Path = typer.Option(Path("var/edge"), help="where the SQLite copy and outbox live"),
             timeout: float = typer.Option(1.0, min=0.05, help="seconds the cloud has to answer a gate event"),
             snapshot_every: float = typer.Option(30.0, min=1.0, help="seconds between copies of the lot")) -> None:
    """Run the edge agent: serves POST /api/v1/gates/{gate_id}/events and decides locally while offline."""
    import uvicorn

    from api.edge_app import create_edge_app
    from controllers.edge.agent import EdgeAgent, EdgeConfig
    from controllers.edge.store import EdgeStore
    from core.clock import SystemClock

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise typer.BadParameter("--listen must be HOST:PORT")
    logging.basicConfig(level=logging.WARNING)

    async def main() -> None:
        store = await EdgeStore.open(data_dir / f"edge-{lot}.sqlite3")
        agent = EdgeAgent(config=EdgeConfig(lot_id=lot, device_key=device_key, cloud_url=cloud, timeout=timeout,
                                            snapshot_every=snapshot_every), store=store, clock=SystemClock())
        server = uvicorn.Server(uvicorn.Config(create_edge_app(agent), host=host, port=int(port), access_log=False,
                                               log_level="warning", lifespan="on"))
        try:
            await server.serve()
        finally:
            await store.close()

    asyncio.run(main())
