"""The CLI works where the server works: with only `make setup` behind it (var/secret_key written, no
PARKGRID_SECRET_KEY exported) a local run reads the file; production without the variable stops with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT),
           "PARKGRID_DATABASE_URL": settings.database_url, "PARKGRID_REDIS_URL": settings.redis_url,
           "PARKGRID_REDIS_PREFIX": settings.redis_prefix, "PARKGRID_BROKER_URL": settings.broker_url, **extra}
    assert "PARKGRID_SECRET_KEY" not in env
    return env


def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def test_local_cli_reads_the_secret_make_setup_wrote(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "secret_key").write_text("s" * 64 + "\n")
    args = ("users", "create-operator", "--email", "op-local@example.com", "--password", "correct horse battery",
            "--json")
    # PARKGRID_SECRET_KEY_FILE names a file that is not there: the control that shows the file is what was read
    missing = _cli(_env(settings, PARKGRID_SECRET_KEY_FILE=str(tmp_path / "absent")), tmp_path, *args)
    assert missing.returncode == 2 and "PARKGRID_SECRET_KEY is required" in missing.stderr
    done = _cli(_env(settings), tmp_path, *args)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["email"] == "op-local@example.com"


def test_production_without_the_secret_stops_with_one_line(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "secret_key").write_text("s" * 64 + "\n")  # present, and never read in production
    proc = _cli(_env(settings, PARKGRID_ENVIRONMENT="production"), tmp_path, "users", "create-operator",
                "--email", "op-prod@example.com", "--password", "correct horse battery", "--json")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["configuration error: PARKGRID_SECRET_KEY is required but not set"]
