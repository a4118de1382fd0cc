"""`parkgrid mqtt init|broker`: the project's own Mosquitto broker, where each device has its own credentials."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import typer
from aiomqtt import MqttError

from cli.common import emit
from controllers import mqtt_identity

app = typer.Typer(no_args_is_help=True)

DIR = typer.Option(Path("var/mosquitto"), "--dir", help="where the config, the plugin's file and credentials live")
PORT = typer.Option(mqtt_identity.DEFAULT_PORT, "--port", help="the broker's port (the machine's may use 1883)")


def _detached(directory: Path, port: int) -> mqtt_identity.BrokerConfig:
    """This checkout's broker, running in the background: already running (it accepts our admin), or started on
    `port`, or, when another broker holds `port` (another checkout's, say), on a free port kept in `directory`."""
    kept = directory / "port"
    if kept.exists():
        port = int(kept.read_text())
    config = mqtt_identity.init_broker(directory, port=port)
    if _listening(port):
        try:
            asyncio.run(mqtt_identity.ensure_ingest(config))
            return config
        except MqttError:  # someone else's broker: ours goes elsewhere
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            kept.write_text(str(port))
            config = mqtt_identity.init_broker(directory, port=port)
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    subprocess.run([binary, "-d", "-c", str(config.conf)], check=True, timeout=30)  # noqa: S603
    _wait(port, None)
    asyncio.run(mqtt_identity.ensure_ingest(config))
    return config


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def _wait(port: int, proc: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + 15
    while not _listening(port):
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            raise SystemExit("mosquitto did not start (see its log above)")
        time.sleep(0.05)


@app.command("init")
def init(directory: Path = DIR, port: int = PORT, json: bool = typer.Option(False, "--json")) -> None:
    """Write the broker's configuration (kept if present): no anonymous clients, dynamic security plugin. Prints
    the URLs to export as PARKGRID_MQTT_URL (the ingest consumer) and PARKGRID_MQTT_ADMIN_URL."""
    emit(mqtt_identity.init_broker(directory, port=port).as_json(), as_json=json)


@app.command("broker")
def broker(directory: Path = DIR, port: int = PORT,
           detach: bool = typer.Option(False, "--detach", help="start it in the background and return"),
           json: bool = typer.Option(False, "--json")) -> None:
    """Run the project's broker (init first if needed) and make sure the ingest consumer's client exists."""
    if detach:
        config = _detached(directory, port)
        emit(config.as_json(), as_json=json)
        return
    config = mqtt_identity.init_broker(directory, port=port)
    proc = mqtt_identity.start_broker(config)
    _wait(port, proc)
    asyncio.run(mqtt_identity.ensure_ingest(config))
    emit(config.as_json(), as_json=json)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=10)
