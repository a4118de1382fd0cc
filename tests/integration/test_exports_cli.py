"""`parkgrid exports run`: the same export from the command line, with a progress bar; bad options exit 2 naming
the option and leave no file."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from cli.app import app as cli_app
from core.context import AppContext
from core.settings import Settings
from tests.conftest import ROOT, TEST_SECRET
from tests.exports_world import BUSY_DATE, DAY_FROM, DAY_TO, build_export_world, leaks
from tests.factories import UserFactory


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PARKGRID_DATABASE_URL": settings.database_url, "PARKGRID_SECRET_KEY": TEST_SECRET,
           "PARKGRID_REDIS_URL": settings.redis_url, "PARKGRID_LOG_LEVEL": "warning", "COLUMNS": "100"}
    return subprocess.run([sys.executable, "-m", "cli", "exports", "run", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


async def test_cli_export_with_a_progress_bar_and_bad_options_named(
        settings: Settings, ctx: AppContext, users: UserFactory, tmp_path: Path) -> None:
    op_a, op_b = await users.create("operator"), await users.create("operator")
    assert op_a.organisation_id and op_b.organisation_id
    world = await build_export_world(ctx, org_a=op_a.organisation_id, org_b=op_b.organisation_id)
    out = tmp_path / "occupancy.csv"
    common = ["--from", DAY_FROM, "--to", DAY_TO, "--group-by", "lot"]
    res = _cli(settings, "--kind", "occupancy", *common, "--format", "csv", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "exporting" in res.stderr and "100%" in res.stderr  # the progress bar
    assert "rows: 192" in res.stdout and "suppressed: 188" in res.stdout
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 192
    published = {(r["curb_place_id"], r["metric_type"]): r["value"] for r in rows if r["suppressed"] == "false"}
    assert published[(str(world.lot_a), "total_sessions")] == "11"
    assert {r["date"] for r in rows} == {BUSY_DATE}

    # an organisation's lots only, sessions as GeoJSON, threshold lowered to lot B's 9 sessions
    out2 = tmp_path / "sessions.geojson"
    res = _cli(settings, "--kind", "sessions", *common, "--format", "geojson", "--out", str(out2), "--org",
               str(op_b.organisation_id), "--min-sessions", "9", "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["rows"] == 9 and summary["suppressed"] == 0 and summary["places"] == 1
    assert leaks(out2.read_bytes(), "geojson", world.plates + world.secrets) == []



def test_bad_options_exit_2_naming_the_option_and_write_nothing(tmp_path: Path) -> None:
    # refused before any database work (the same model and checks as the HTTP body), so in process
    runner = CliRunner()
    out = tmp_path / "bad.csv"
    for bad, option in ((["--group-by", "h3", "--h3-res", "11"], "--h3-res"), (["--format", "xlsx"], "--format"),
                        (["--to", DAY_FROM], "--from"), (["--kind", "revenue"], "--kind"),
                        (["--from", "2025-01-01T00:00:00Z", "--to", "2026-01-03T00:00:00Z"], "--to"),
                        (["--bbox", "1,2,3"], "--bbox"), (["--from", "2026-01-06T00:00:00"], "--from")):
        args = {"--kind": "occupancy", "--from": DAY_FROM, "--to": DAY_TO, "--group-by": "lot", "--format": "csv"}
        args.update(dict(zip(bad[::2], bad[1::2], strict=True)))
        res = runner.invoke(cli_app, ["exports", "run", *[x for kv in args.items() for x in kv], "--out", str(out)])
        assert res.exit_code == 2 and f"error: {option}:" in res.stderr, (bad, res.output)
        assert not out.exists() and not (tmp_path / "bad.csv.part").exists()
