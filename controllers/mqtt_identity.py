"""Device identity over MQTT: the project's own Mosquitto broker with the dynamic security plugin.

Each device connects with its own credentials (username: its device id, password: its device key) and may publish
only under its own lot's topics (`parkgrid/lots/{lot_id}/#`, through a role per lot); the ingest consumer has its
own client, allowed to subscribe to every lot's sensor and gate topics; the broker admits no anonymous client.
Clients and roles are managed over the plugin's control topic (`$CONTROL/dynamic-security/v1`, the JSON commands
`mosquitto_ctrl dynsec` sends) by `parkgrid devices create/revoke`; `parkgrid mqtt init` writes the broker's
configuration under var/mosquitto (the plugin's file made by `mosquitto_ctrl dynsec init`) and `parkgrid mqtt
broker` runs it (docs/adr/0016, docs/features/lanes-and-identity.md).
"""

from __future__ import annotations

import asyncio
import getpass
import glob
import json
import secrets
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import aiomqtt

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
ADMIN_USER = "parkgrid-admin"
INGEST_USER = "parkgrid-ingest"
INGEST_ROLE = "parkgrid-ingest"
DEFAULT_PORT = 1884
#: errors a repeated command answers (creating what exists, deleting what is gone): not failures
_IDEMPOTENT = ("already exists", "not found")
PLUGIN_GLOBS = ("/usr/lib/*/mosquitto_dynamic_security.so", "/usr/lib/mosquitto_dynamic_security.so",
                "/usr/local/lib/mosquitto_dynamic_security.so")


class DynsecError(RuntimeError):
    """The broker refused a dynamic security command."""


def lot_role(lot_id: uuid.UUID | str) -> str:
    return f"lot-{lot_id}"


def lot_topics(lot_id: uuid.UUID | str) -> str:
    return f"parkgrid/lots/{lot_id}/#"


async def dynsec(admin_url: str, commands: list[dict[str, Any]], *, answer_within: float = 10.0) -> list[dict[str, Any]]:
    """Send dynamic security commands as the admin client; their responses, in order. A command answering an
    error raises DynsecError, except creating what already exists and deleting what is already gone."""
    u = urlparse(admin_url)
    async with aiomqtt.Client(hostname=u.hostname or "127.0.0.1", port=u.port or DEFAULT_PORT, username=u.username,
                              password=u.password, identifier=f"parkgrid-admin-{uuid.uuid4().hex[:8]}") as client:
        await client.subscribe(RESPONSE_TOPIC, qos=1)
        await client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
        async with asyncio.timeout(answer_within):
            async for message in client.messages:
                responses: list[dict[str, Any]] = json.loads(bytes(message.payload))["responses"]  # type: ignore[arg-type]
                break
    for response in responses:
        error = response.get("error")
        if error and not any(s in str(error).lower() for s in _IDEMPOTENT):
            raise DynsecError(f"{response.get('command')}: {error}")
    return responses


def device_commands(*, device_id: uuid.UUID | str, lot_id: uuid.UUID | str, password: str) -> list[dict[str, Any]]:
    """The lot's role (publish under the lot's topics only) and the device's client in it."""
    role = lot_role(lot_id)
    return [
        {"command": "createRole", "rolename": role},
        {"command": "addRoleACL", "rolename": role, "acltype": "publishClientSend", "topic": lot_topics(lot_id),
         "priority": 0, "allow": True},
        {"command": "createClient", "username": str(device_id), "password": password,
         "textname": f"device of lot {lot_id}", "roles": [{"rolename": role}]},
        # granting again (a new key for the same device) replaces the password; a device stays in its one lot's role
        {"command": "setClientPassword", "username": str(device_id), "password": password},
    ]


async def grant_device(*, admin_url: str, device_id: uuid.UUID | str, lot_id: uuid.UUID | str, password: str) -> None:
    """Let a device connect (username: its id, password: its key) and publish under its lot's topics only."""
    await dynsec(admin_url, device_commands(device_id=device_id, lot_id=lot_id, password=password))


async def revoke_device(*, admin_url: str, device_id: uuid.UUID | str) -> None:
    """Delete a device's client: the broker disconnects it and refuses its credentials from then on."""
    await dynsec(admin_url, [{"command": "deleteClient", "username": str(device_id)}])


def ingest_commands(password: str) -> list[dict[str, Any]]:
    """The ingest consumer's client: may subscribe to every lot's sensor and gate topics, publish nothing."""
    acls = [("subscribePattern", "parkgrid/lots/+/sensors/+"), ("subscribePattern", "parkgrid/lots/+/gates/+/events")]
    return [
        {"command": "createRole", "rolename": INGEST_ROLE},
        *({"command": "addRoleACL", "rolename": INGEST_ROLE, "acltype": kind, "topic": topic, "priority": 0,
           "allow": True} for kind, topic in acls),
        {"command": "createClient", "username": INGEST_USER, "password": password,
         "roles": [{"rolename": INGEST_ROLE}]},
    ]


def plugin_path() -> Path:
    """Where Debian's mosquitto installs the dynamic security plugin."""
    for pattern in PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return Path(found[0])
    raise FileNotFoundError("mosquitto_dynamic_security.so not found (apt-get install mosquitto)")


@dataclass(frozen=True)
class BrokerConfig:
    """A broker configured by `init_broker`: its config file and the URLs of its admin and ingest clients."""

    directory: Path
    port: int
    admin_password: str
    ingest_password: str
    host: str = "127.0.0.1"

    @property
    def conf(self) -> Path:
        return self.directory / "mosquitto.conf"

    def url(self, user: str, password: str) -> str:
        return f"mqtt://{quote(user, safe='')}:{quote(password, safe='')}@{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return self.url(ADMIN_USER, self.admin_password)

    @property
    def ingest_url(self) -> str:
        return self.url(INGEST_USER, self.ingest_password)

    def as_json(self) -> dict[str, Any]:
        return {"config": str(self.conf), "port": self.port, "mqtt_url": self.ingest_url,
                "mqtt_admin_url": self.admin_url}


def init_broker(directory: Path, *, port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> BrokerConfig:
    """Write a broker configuration under `directory` (kept if it exists: the plugin's file holds every device):
    a listener on host:port, no anonymous clients, the dynamic security plugin with an admin client made by
    `mosquitto_ctrl dynsec init`. The ingest client is created once the broker runs (`ensure_ingest`)."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    secrets_file = directory / "credentials.json"
    if secrets_file.exists():
        saved = json.loads(secrets_file.read_text())
    else:
        saved = {"admin_password": secrets.token_urlsafe(24), "ingest_password": secrets.token_urlsafe(24)}
        secrets_file.touch(mode=0o600)
        secrets_file.write_text(json.dumps(saved))
    dynsec_file = directory / "dynamic-security.json"
    if not dynsec_file.exists():
        ctrl = shutil.which("mosquitto_ctrl") or "/usr/bin/mosquitto_ctrl"
        subprocess.run([ctrl, "dynsec", "init", str(dynsec_file), ADMIN_USER, saved["admin_password"]],  # noqa: S603 (our arguments)
                       check=True,
                       capture_output=True, timeout=30)
    config = BrokerConfig(directory, port, saved["admin_password"], saved["ingest_password"], host)
    config.conf.write_text(
        "# written by `parkgrid mqtt init`: ParkGrid's own broker (docs/features/lanes-and-identity.md)\n"
        "per_listener_settings false\n"
        f"user {getpass.getuser()}\n"  # started by root, mosquitto would switch to `mosquitto`: files here are ours
        f"listener {port} {host}\n"
        "allow_anonymous false\n"
        f"plugin {plugin_path()}\n"
        f"plugin_opt_config_file {dynsec_file}\n"
        f"pid_file {directory}/mosquitto.pid\n"
        "persistence true\n"
        f"persistence_location {directory}/\n"
        "log_dest stderr\n"
        "log_type error\nlog_type warning\n")
    return config


async def ensure_ingest(config: BrokerConfig) -> None:
    """Create the ingest consumer's client and role on the running broker (idempotent)."""
    await dynsec(config.admin_url, ingest_commands(config.ingest_password))


def start_broker(config: BrokerConfig, *, quiet: bool = False) -> subprocess.Popen[bytes]:
    """Run mosquitto with the configuration (the caller stops it); its log goes to our stderr unless `quiet`."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    return subprocess.Popen([binary, "-c", str(config.conf)],  # noqa: S603 (our config file)
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL if quiet else None)
